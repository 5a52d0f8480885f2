"""What the policies scope a stage's resources by (policies/execution_policy.py): the project tag
on resources CDK writes as raw CloudFormation (the roles and functions of its custom resource
providers), which `Tags.of` does not reach, and the project's IAM path on every role."""

from __future__ import annotations

import jsii
from aws_cdk import CfnResource, IAspect, TagManager
from constructs import IConstruct

RAW_TAGGABLE = frozenset({"AWS::IAM::Role", "AWS::Lambda::Function"})


@jsii.implements(IAspect)
class TagRawResources:
    def __init__(self, key: str, value: str) -> None:
        self.key = key
        self.value = value

    def visit(self, node: IConstruct) -> None:
        if (
            isinstance(node, CfnResource)
            and node.cfn_resource_type in RAW_TAGGABLE
            and not TagManager.is_taggable(node)
        ):
            node.add_property_override("Tags", [{"Key": self.key, "Value": self.value}])


@jsii.implements(IAspect)
class RolePath:
    """Every role of a stage under the IAM path `/<project>/`: the execution policies manage and
    pass only roles on that path, so a role made by hand (`/`), whatever its name, stays out of
    reach, and so do the roles of a project whose name extends this one's.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-friendly-names"""

    def __init__(self, path: str) -> None:
        self.path = path

    def visit(self, node: IConstruct) -> None:
        if isinstance(node, CfnResource) and node.cfn_resource_type == "AWS::IAM::Role":
            node.add_property_override("Path", self.path)
