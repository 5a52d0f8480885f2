"""The target accounts' CloudFormation execution policies: least privilege, and complete for every
resource type the stages deploy."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from aws_cdk.assertions import Template

from policies.execution_policy import (
    PERMISSIONS_BOUNDARY,
    actions_of,
    allowed,
    load_policies,
    missing,
    render,
    stage_resource_types,
)

from ..conftest import FIXTURES, Synthesized


@pytest.fixture(scope="module")
def all_synths(
    default_synth: Synthesized, imported_synth: Synthesized, synth: Callable[..., Synthesized]
) -> list[Synthesized]:
    return [default_synth, imported_synth, synth(FIXTURES / "five-stages.toml", suffix="-blue")]


def test_policies_cover_every_resource_type_the_stages_deploy(
    all_synths: list[Synthesized],
) -> None:
    for synthesized in all_synths:
        types = stage_resource_types(synthesized.outdir)
        assert {"AWS::ECS::Service", "AWS::IAM::Role"} <= types
        assert missing(types, load_policies()) == {}, (
            "run `make policies` and review the diff of policies/cloudformation-execution-policies.json"
        )


def test_coverage_check_fails_for_a_new_kind_of_resource(default_synth: Synthesized) -> None:
    types = stage_resource_types(default_synth.outdir) | {"AWS::DynamoDB::Table"}
    gaps = missing(types, load_policies())
    assert set(gaps) == {"AWS::DynamoDB::Table"}
    assert "dynamodb:CreateTable" in gaps["AWS::DynamoDB::Table"]


def test_no_administrator_access_and_no_star_on_star() -> None:
    text = json.dumps(load_policies())
    assert "AdministratorAccess" not in text
    for policy in load_policies():
        for statement in policy["document"]["Statement"]:
            actions = actions_of(statement)
            assert "*" not in actions
            assert not any(action.endswith(":*") for action in actions), statement["Sid"]


def test_roles_are_created_only_with_the_boundary_and_under_the_project_prefix() -> None:
    statements = [s for p in load_policies() for s in p["document"]["Statement"]]
    create = next(s for s in statements if "iam:CreateRole" in s["Action"])
    assert create["Resource"] == "arn:{partition}:iam::{account}:role/{project}-*"
    assert create["Condition"] == {
        "StringEquals": {
            "iam:PermissionsBoundary": "arn:{partition}:iam::{account}:policy/{project}-permissions-boundary"
        }
    }
    for statement in statements:
        if (
            any(a.startswith("iam:") for a in statement["Action"])
            and statement["Effect"] == "Allow"
        ):
            assert statement["Resource"] != "*", statement["Sid"]
    assert not allowed("iam:DeleteRolePermissionsBoundary", load_policies())
    assert not allowed("iam:CreateUser", load_policies())


def test_rendered_policies_fit_iam_size_limit() -> None:
    for policy in load_policies():
        document = render(
            policy["document"], partition="aws-us-gov", account="123456789012", project="p" * 20
        )
        assert len(json.dumps(document, separators=(",", ":"))) <= 6144


@pytest.mark.parametrize("stage", ["staging", "prod"])
def test_every_stage_role_carries_the_permissions_boundary(
    default_synth: Synthesized, stage: str
) -> None:
    deployment = default_synth.stage(stage)
    account = deployment.account
    roles = 0
    for stack in deployment.stacks:
        for role in Template.from_stack(stack).find_resources("AWS::IAM::Role").values():
            roles += 1
            assert (
                role["Properties"]["PermissionsBoundary"]
                == f"arn:aws:iam::{account}:policy/webapp-permissions-boundary"
            )
    assert roles >= 4


def test_boundary_denies_identity_changes() -> None:
    boundary = json.loads(PERMISSIONS_BOUNDARY.read_text())
    deny = next(s for s in boundary["document"]["Statement"] if s["Effect"] == "Deny")
    assert "iam:*" in deny["Action"] and deny["Resource"] == "*"
    allows = [
        a for s in boundary["document"]["Statement"] if s["Effect"] == "Allow" for a in s["Action"]
    ]
    assert not any(a == "*" or a.endswith(":*") for a in allows)


def _stage_role_actions(synthesized: Synthesized) -> set[str]:
    """Every action the stages' own policies grant to their roles (inline and role policies)."""
    actions: set[str] = set()
    for stage in synthesized.stack.stages:
        for stack in stage.stacks:
            template = Template.from_stack(stack)
            documents = [
                p["Properties"]["PolicyDocument"]
                for p in template.find_resources("AWS::IAM::Policy").values()
            ]
            for role in template.find_resources("AWS::IAM::Role").values():
                documents += [p["PolicyDocument"] for p in role["Properties"].get("Policies", [])]
            for document in documents:
                for statement in document["Statement"]:
                    if statement["Effect"] == "Allow":
                        names = actions_of(statement)
                        actions.update(names)
    return actions


def test_the_boundary_lets_every_stage_role_do_what_its_policies_grant(
    default_synth: Synthesized, imported_synth: Synthesized
) -> None:
    boundary = json.loads(PERMISSIONS_BOUNDARY.read_text())
    as_policies = [{"document": boundary["document"]}]
    for synthesized in (default_synth, imported_synth):
        actions = _stage_role_actions(synthesized)
        assert "lambda:InvokeFunction" in actions  # the ECS hook role
        blocked = sorted(a for a in actions if not allowed(a, as_policies))
        assert blocked == [], f"the permissions boundary would deny: {blocked}"
