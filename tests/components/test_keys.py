"""Grants to AWS services in key and topic policies: every one, in every synthesized template,
names the account the service may act for (aws:SourceAccount or aws:SourceArn), with the
documented exception of CloudWatch Logs' encryption-context condition."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms

from components.keys import confine_service_grants, service_grant_problem
from policies.deploy_check import read_stacks

from ..conftest import Synthesized

POLICIES = {"AWS::KMS::Key": "KeyPolicy", "AWS::SNS::TopicPolicy": "PolicyDocument"}


def _service_statements(synthesized: Synthesized) -> list[tuple[str, dict[str, Any], str, str]]:
    found = []
    for stack in read_stacks(synthesized.outdir):
        for logical_id, resource in stack.template["Resources"].items():
            prop = POLICIES.get(resource["Type"])
            if prop is None:
                continue
            for statement in resource["Properties"][prop]["Statement"]:
                if (
                    isinstance(statement.get("Principal"), dict)
                    and "Service" in statement["Principal"]
                ):
                    found.append(
                        (f"{stack.name} {logical_id}", statement, stack.account, stack.region)
                    )
    return found


@pytest.mark.parametrize("name", ["default_synth", "five_stage_synth", "imported_synth"])
def test_every_service_grant_on_keys_and_topics_names_the_account(
    name: str, request: pytest.FixtureRequest
) -> None:
    synthesized: Synthesized = request.getfixturevalue(name)
    statements = _service_statements(synthesized)
    services = {s for _, st, _, _ in statements for s in [st["Principal"]["Service"]]}
    # The walk sees the grants it is about: CDK's to CodeStar Notifications (pipeline), the
    # alarms' topic key, the log keys.
    assert "codestar-notifications.amazonaws.com" in services
    assert "cloudwatch.amazonaws.com" in services
    assert any(str(s).startswith("logs.") for s in services)
    problems = [
        f"{where}: {problem}"
        for where, statement, account, region in statements
        if (problem := service_grant_problem(statement, account, region))
    ]
    assert problems == []


def _grant(service: str, condition: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
        "Resource": "*",
        **({"Condition": condition} if condition else {}),
    }


@pytest.mark.parametrize(
    ("statement", "verdict"),
    [
        (_grant("codestar-notifications.amazonaws.com"), "without aws:SourceAccount"),
        (
            _grant(
                "cloudwatch.amazonaws.com",
                {"StringEquals": {"aws:SourceAccount": "999999999999"}},
            ),
            "is not 111111111111",
        ),
        (
            _grant(
                "logs.eu-west-1.amazonaws.com",
                {
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": "arn:aws:logs:eu-west-1:999999999999:log-group:*"
                    }
                },
            ),
            "without aws:SourceAccount",
        ),
        (_grant("logs.eu-west-1.amazonaws.com"), "without aws:SourceAccount"),
        (
            _grant(
                "cloudwatch.amazonaws.com",
                {"StringEquals": {"aws:SourceAccount": "111111111111"}},
            ),
            None,
        ),
        (
            _grant(
                "events.amazonaws.com",
                {"ArnEquals": {"aws:SourceArn": "arn:aws:events:eu-west-1:111111111111:rule/r"}},
            ),
            None,
        ),
        (
            _grant(
                "logs.eu-west-1.amazonaws.com",
                {
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": "arn:aws:logs:eu-west-1:111111111111:log-group:*"
                    }
                },
            ),
            None,
        ),
    ],
)
def test_a_planted_unconfined_grant_is_found(
    statement: dict[str, Any], verdict: str | None
) -> None:
    problem = service_grant_problem(statement, "111111111111", "eu-west-1")
    assert (problem is None) if verdict is None else (verdict in str(problem))


def _stack_with_grant(service: str) -> tuple[Stack, kms.Key]:
    stack = Stack(App(), "S", env={"account": "444444444444", "region": "eu-west-1"})
    key = kms.Key(stack, "Key")
    key.grant(iam.ServicePrincipal(service), "kms:Decrypt")
    return stack, key


def test_a_known_services_grant_gets_the_stacks_account() -> None:
    stack, key = _stack_with_grant("codestar-notifications.amazonaws.com")
    confine_service_grants(stack)
    document = stack.resolve(key.node.default_child.key_policy)  # type: ignore[union-attr]
    (grant,) = [s for s in document["Statement"] if "Service" in s["Principal"]]
    assert grant["Condition"] == {"StringEquals": {"aws:SourceAccount": "444444444444"}}


def test_an_unknown_services_unconditioned_grant_fails_the_synth() -> None:
    stack, _ = _stack_with_grant("foo.amazonaws.com")
    with pytest.raises(ValueError, match=r"foo\.amazonaws\.com has no aws:SourceAccount"):
        confine_service_grants(stack)
