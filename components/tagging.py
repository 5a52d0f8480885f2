"""The project tag on resources CDK writes as raw CloudFormation (the roles and functions of its
custom resource providers), which `Tags.of` does not reach: the execution policies only pass
roles that carry the tag (policies/execution_policy.py)."""

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
