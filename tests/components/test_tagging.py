"""The project tag on every resource that can carry one, in every stack of every example config:
the execution policies and the boundaries scope by it (policies/execution_policy.py)."""

from __future__ import annotations

from typing import Any

from aws_cdk import App, Aspects, CfnResource, CfnTag, Stack
from aws_cdk import aws_iam as iam

from components.tagging import TagRawResources
from policies.deploy_check import read_stacks
from policies.execution_policy import PROJECT_TAG, tagging_of

from ..conftest import Synthesized


def _tag(resource: dict[str, Any]) -> str | None:
    tags = resource.get("Properties", {}).get("Tags")
    if isinstance(tags, list):
        return next((t["Value"] for t in tags if t.get("Key") == PROJECT_TAG), None)
    if isinstance(tags, dict):  # the few types whose schema keeps tags as a map
        value = tags.get(PROJECT_TAG)
        return value if isinstance(value, str) else None
    return None


def test_every_taggable_resource_carries_the_project_tag(each_example_synth: Synthesized) -> None:
    project = each_example_synth.config.pipeline.project
    untagged = []
    checked = 0
    for stack in read_stacks(each_example_synth.outdir):
        for logical_id, resource in stack.template["Resources"].items():
            kind = resource["Type"]
            if not tagging_of(kind).get("taggable"):
                continue
            checked += 1
            if _tag(resource) != project:
                untagged.append(f"{stack.name} {logical_id} ({kind}): {_tag(resource)!r}")
    assert checked > 50
    assert untagged == []


def test_raw_roles_and_functions_get_the_tag_and_typed_ones_keep_theirs() -> None:
    """CDK's custom resource providers write roles and functions as raw CfnResources, which
    `Tags.of` does not reach; the aspect tags those and leaves constructs with tag support to
    `Tags.of`."""
    app = App()
    stack = Stack(app, "S")
    CfnResource(stack, "Raw", type="AWS::IAM::Role", properties={"AssumeRolePolicyDocument": {}})
    CfnResource(stack, "Other", type="AWS::SNS::Topic", properties={})
    team = CfnTag(key="team", value="x")
    iam.CfnRole(stack, "Typed", assume_role_policy_document={}, tags=[team])
    Aspects.of(stack).add(TagRawResources(PROJECT_TAG, "webapp"))
    resources = app.synth().get_stack_by_name("S").template["Resources"]
    assert resources["Raw"]["Properties"]["Tags"] == [{"Key": PROJECT_TAG, "Value": "webapp"}]
    assert "Tags" not in resources["Other"].get("Properties", {})
    assert resources["Typed"]["Properties"]["Tags"] == [{"Key": "team", "Value": "x"}]
