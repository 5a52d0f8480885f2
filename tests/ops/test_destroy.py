"""`make destroy`: a dry run offline from cdk.out, production refused unless confirmed, the
deletion itself against moto (and botocore's Stubber for the production path, whose termination
protection call moto does not implement)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from ops import destroy
from ops.destroy import Plan

from ..conftest import DEFAULT_CONFIG, Synthesized

STAGING_ACCOUNT = "222222222222"
REGION = "eu-west-1"


def _run(default_synth: Synthesized, *args: str, session_for: Any = None) -> int:
    argv = [str(DEFAULT_CONFIG), "--cdk-out", str(default_synth.outdir), "--wait-delay", "1"]
    if session_for is None:
        return destroy.main([*argv, *args])
    return destroy.main([*argv, *args], session_for=session_for)


def test_dry_run_needs_no_credentials_and_deletes_nothing(
    default_synth: Synthesized, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_aws(profile: str | None, region: str) -> Any:
        raise AssertionError("a dry run must not call AWS")

    assert _run(default_synth, "--stage", "staging", session_for=no_aws) == 0
    out = capsys.readouterr().out
    assert "stack webapp-staging-service in account 222222222222, eu-west-1." in out
    assert "Nothing is kept" in out and "Dry run: nothing was deleted" in out


def test_production_is_refused_unless_confirmed_and_lists_what_is_kept(
    default_synth: Synthesized, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(default_synth, "--stage", "prod", "--apply") == 2
    captured = capsys.readouterr()
    assert "'prod' is a production stage: refusing to delete it" in captured.err
    assert "CONFIRM=prod" in captured.err
    for kind in ("AWS::KMS::Key", "AWS::Logs::LogGroup", "AWS::S3::Bucket"):
        assert kind in captured.out, f"production keeps its {kind}"
    # The wrong stage name is no confirmation; the right one allows the dry run.
    assert _run(default_synth, "--stage", "prod", "--confirm-production", "staging") == 2
    assert _run(default_synth, "--stage", "prod", "--confirm-production", "prod") == 0
    assert "(production)" in capsys.readouterr().out


def test_an_unknown_stage_or_a_missing_synth_is_refused(
    default_synth: Synthesized, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(default_synth, "--stage", "qa") == 2
    assert "no stage 'qa'; expected one of staging, prod" in capsys.readouterr().err
    argv = [str(DEFAULT_CONFIG), "--cdk-out", str(tmp_path), "--stage", "staging"]
    assert destroy.main(argv) == 2
    assert "synthesize the same config first" in capsys.readouterr().err


STACK_TEMPLATE = {
    "Resources": {
        "Topic": {"Type": "AWS::SNS::Topic"},
        "KeptLogs": {"Type": "AWS::Logs::LogGroup", "DeletionPolicy": "Retain"},
    }
}


@pytest.fixture
def staging_account(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MOTO_ACCOUNT_ID", STAGING_ACCOUNT)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


def _session(profile: str | None, region: str) -> Any:
    return boto3.Session(region_name=region)


def test_apply_deletes_the_stack_and_names_what_is_left(
    staging_account: None, capsys: pytest.CaptureFixture[str]
) -> None:
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    cloudformation.create_stack(
        StackName="webapp-staging-service", TemplateBody=json.dumps(STACK_TEMPLATE)
    )
    the_plan = Plan(
        stage="staging",
        stack_name="webapp-staging-service",
        account=STAGING_ACCOUNT,
        region=REGION,
        profile=None,
        production=False,
        resources=2,
        retained=(("KeptLogs", "AWS::Logs::LogGroup"),),
        load_balancers=(),
    )
    [left] = destroy.destroy(the_plan, _session(None, REGION), wait_delay=1)
    assert left.startswith("KeptLogs: ")
    stacks = cloudformation.list_stacks(StackStatusFilter=["DELETE_COMPLETE"])["StackSummaries"]
    assert [s["StackName"] for s in stacks] == ["webapp-staging-service"]
    # Again: nothing to delete.
    assert destroy.destroy(the_plan, _session(None, REGION), wait_delay=1) == []
    assert "does not exist: nothing to delete" in capsys.readouterr().out


def test_make_destroy_apply_through_main(
    staging_account: None, default_synth: Synthesized, capsys: pytest.CaptureFixture[str]
) -> None:
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    cloudformation.create_stack(
        StackName="webapp-staging-service", TemplateBody=json.dumps(STACK_TEMPLATE)
    )
    assert _run(default_synth, "--stage", "staging", "--apply", session_for=_session) == 0
    assert "Deleted webapp-staging-service." in capsys.readouterr().out
    assert cloudformation.list_stacks(StackStatusFilter=["CREATE_COMPLETE"])["StackSummaries"] == []


def test_credentials_of_another_account_are_refused(
    default_synth: Synthesized, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MOTO_ACCOUNT_ID", "999999999999")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        assert _run(default_synth, "--stage", "staging", "--apply", session_for=_session) == 2
    assert "credentials are for account 999999999999" in capsys.readouterr().err


class _StubbedSession:
    """A session whose clients are botocore-stubbed, as moto lacks UpdateTerminationProtection."""

    def __init__(self, account: str) -> None:
        session = boto3.Session(
            aws_access_key_id="x",
            aws_secret_access_key="x",  # noqa: S106 - stubbed clients never send it
            region_name=REGION,
        )
        self.clients = {
            name: session.client(name, region_name=REGION)
            for name in ("sts", "cloudformation", "elbv2")
        }
        self.stubs = {name: Stubber(client) for name, client in self.clients.items()}
        self.stubs["sts"].add_response(
            "get_caller_identity",
            {"Account": account, "Arn": "arn:aws:iam::1:user/x", "UserId": "x"},
        )

    def client(self, name: str, region_name: str | None = None) -> Any:
        return self.clients[name]


def test_production_with_confirmation_lifts_both_protections_first(
    default_synth: Synthesized, capsys: pytest.CaptureFixture[str]
) -> None:
    the_plan = destroy.plan(default_synth.outdir, DEFAULT_CONFIG, "prod")
    assert the_plan.production and len(the_plan.load_balancers) == 1
    session = _StubbedSession("333333333333")
    stack = {
        "StackName": the_plan.stack_name,
        "CreationTime": "2026-01-01T00:00:00Z",
        "StackStatus": "UPDATE_COMPLETE",
        "EnableTerminationProtection": True,
    }
    lb_arn = "arn:aws:elasticloadbalancing:eu-west-1:333333333333:loadbalancer/app/x/1"
    resources = [
        {
            "LogicalResourceId": logical_id,
            "PhysicalResourceId": f"physical-{logical_id}",
            "ResourceType": kind,
            "Timestamp": "2026-01-01T00:00:00Z",
            "ResourceStatus": "UPDATE_COMPLETE",
        }
        for logical_id, kind in the_plan.retained
    ] + [
        {
            "LogicalResourceId": the_plan.load_balancers[0],
            "PhysicalResourceId": lb_arn,
            "ResourceType": "AWS::ElasticLoadBalancingV2::LoadBalancer",
            "Timestamp": "2026-01-01T00:00:00Z",
            "ResourceStatus": "UPDATE_COMPLETE",
        }
    ]
    cfn, elb = session.stubs["cloudformation"], session.stubs["elbv2"]
    cfn.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": the_plan.stack_name})
    cfn.add_response("describe_stack_resources", {"StackResources": resources}, {"StackName": ANY})
    elb.add_response(
        "modify_load_balancer_attributes",
        {},
        {
            "LoadBalancerArn": lb_arn,
            "Attributes": [{"Key": "deletion_protection.enabled", "Value": "false"}],
        },
    )
    cfn.add_response(
        "update_termination_protection",
        {},
        {"EnableTerminationProtection": False, "StackName": the_plan.stack_name},
    )
    cfn.add_response("delete_stack", {}, {"StackName": the_plan.stack_name})
    cfn.add_client_error(
        "describe_stacks", "ValidationError", f"Stack with id {the_plan.stack_name} does not exist"
    )
    for stub in session.stubs.values():
        stub.activate()
    left = destroy.destroy(the_plan, session, wait_delay=1)
    for stub in session.stubs.values():
        stub.assert_no_pending_responses()
    assert len(left) == len(the_plan.retained) > 0
    assert all(": physical-" in line for line in left)
