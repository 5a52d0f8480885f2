"""No retained resource has a name that a stack created again would reuse.

A resource with `DeletionPolicy: Retain` outlives its stack. If it has a fixed physical name, the
same stack created again (a stage torn down and rebuilt, `make destroy` then a push) fails on
"already exists". So every retained resource in every template either lets CloudFormation
generate its name or derives it from the stack id, which is new for every stack created.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import Synthesized

RETAINING = {"Retain", "RetainExceptOnCreate", "Snapshot"}
# Properties that are descriptions of something else, not the resource's own physical name.
NOT_A_NAME = {"MetricName", "DisplayName", "KeyName", "SubjectAlternativeNames"}
# The one known exception, by logical id prefix: CDK Pipelines' replication bucket in a stage's
# other region. CDK names it when it synthesizes (the pipeline in its own region must know the
# name), so it cannot carry a stack id, and it keeps pipeline artifacts, so deleting it with its
# stack would fail while it holds objects. docs/operations.md ("Remove a stage") says to delete it by hand
# before a pipeline of the same name is created again.
KNOWN = ("CrossRegionCodePipelineReplicationBucket",)


def _name_properties(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value
        for key, value in properties.items()
        if (key == "Name" or key.endswith("Name")) and key not in NOT_A_NAME
    }


def fixed_names(template: dict[str, Any]) -> list[str]:
    """'logical id.Property' for each retained resource whose name does not involve the stack id."""
    found = []
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("DeletionPolicy") not in RETAINING or logical_id.startswith(KNOWN):
            continue
        for key, value in _name_properties(resource.get("Properties", {})).items():
            if "AWS::StackId" not in json.dumps(value):
                found.append(f"{logical_id}.{key}")
    return found


def test_the_check_catches_a_retained_resource_with_a_fixed_name() -> None:
    template = {
        "Resources": {
            "Kept": {
                "Type": "AWS::Logs::LogGroup",
                "DeletionPolicy": "Retain",
                "Properties": {"LogGroupName": "aws-waf-logs-webapp-prod-service"},
            },
            "Generated": {"Type": "AWS::S3::Bucket", "DeletionPolicy": "Retain"},
            "Deleted": {
                "Type": "AWS::Logs::LogGroup",
                "DeletionPolicy": "Delete",
                "Properties": {"LogGroupName": "fixed"},
            },
            "Unique": {
                "Type": "AWS::Logs::LogGroup",
                "DeletionPolicy": "Retain",
                "Properties": {"LogGroupName": {"Fn::Join": ["", ["x-", {"Ref": "AWS::StackId"}]]}},
            },
        }
    }
    assert fixed_names(template) == ["Kept.LogGroupName"]


@pytest.mark.parametrize("which", ["default", "imported"])
def test_no_retained_resource_has_a_fixed_name(
    which: str, default_synth: Synthesized, imported_synth: Synthesized
) -> None:
    outdir = (default_synth if which == "default" else imported_synth).outdir
    templates = sorted(Path(outdir).rglob("*.template.json"))
    retained = 0
    for path in templates:
        template = json.loads(path.read_text())
        resources = template.get("Resources", {}).values()
        retained += sum(1 for r in resources if r.get("DeletionPolicy") in RETAINING)
        assert fixed_names(template) == [], path.name
    assert retained > 0, "production and the pipeline keep resources: the check saw none"
