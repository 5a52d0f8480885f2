"""`make bootstrap`: the plan for a config, and idempotent policy management against moto."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

import ops.bootstrap
from configuration import load_config
from ops.bootstrap import (
    MAX_POLICY_VERSIONS,
    Account,
    BootstrapError,
    ManagedPolicy,
    Plan,
    apply,
    check_account,
    check_qualifier_is_ours,
    describe,
    ensure_policy,
    main,
    plan,
)
from policies.execution_policy import load_policies

from ..conftest import DEFAULT_CONFIG, FIXTURES

MOTO_ACCOUNT = "123456789012"
BUILD = Path("build/bootstrap")


def test_default_plan_prints_exact_bootstrap_commands() -> None:
    result = plan(load_config(DEFAULT_CONFIG))
    commands = [" ".join(argv) for _, argv in result.commands]

    def execution(account: str, kind: str = "") -> str:
        count = len(load_policies("pipeline" if kind else "target"))
        return ",".join(
            f"arn:aws:iam::{account}:policy/webapp-{kind}cfn-execution-{n}"
            for n in range(1, count + 1)
        )

    own = "--qualifier webapp --toolkit-stack-name CDKToolkit-webapp"
    assert commands == [
        f"cdk bootstrap aws://111111111111/eu-west-1 {own} "
        f"--cloudformation-execution-policies {execution('111111111111', 'pipeline-')} "
        "--termination-protection",
        f"cdk bootstrap aws://222222222222/eu-west-1 {own} "
        "--template build/bootstrap/bootstrap-template.yaml --trust 111111111111 "
        f"--cloudformation-execution-policies {execution('222222222222')} --termination-protection",
        f"cdk bootstrap aws://333333333333/eu-west-1 {own} "
        "--template build/bootstrap/bootstrap-template.yaml --trust 111111111111 "
        f"--cloudformation-execution-policies {execution('333333333333')} --termination-protection",
    ]
    assert "AdministratorAccess" not in " ".join(commands)
    assert "# Qualifier webapp (toolkit stack CDKToolkit-webapp)" in describe(result, BUILD)


def test_lookup_trust_only_for_non_production_targets_that_import_a_vpc(tmp_path: Path) -> None:
    """Synth is offline: lookups only serve a developer's first synth of an imported VPC, and
    production's are done with production's own credentials."""
    assert not any(
        "--trust-for-lookup" in argv for _, argv in plan(load_config(DEFAULT_CONFIG)).commands
    )
    imported = plan(load_config(FIXTURES / "imported.toml"))  # only prod imports a VPC
    assert not any("--trust-for-lookup" in argv for _, argv in imported.commands)
    text = (FIXTURES / "imported.toml").read_text()
    text = text.replace("production = true", "production = false")
    (tmp_path / "config.toml").write_text(text)
    lookups = [
        argv[2]
        for _, argv in plan(load_config(tmp_path / "config.toml")).commands
        if "--trust-for-lookup" in argv
    ]
    assert lookups == ["aws://333333333333/us-west-2"]


def test_a_configured_qualifier_is_used_everywhere(tmp_path: Path) -> None:
    text = DEFAULT_CONFIG.read_text().replace(
        'project = "webapp"', 'project = "webapp"\nqualifier = "team7"'
    )
    (tmp_path / "config.toml").write_text(text)
    result = plan(load_config(tmp_path / "config.toml"))
    for _, argv in result.commands:
        assert argv[argv.index("--qualifier") + 1] == "team7"
        assert argv[argv.index("--toolkit-stack-name") + 1] == "CDKToolkit-team7"
    documents = json.dumps([p.document for a in result.accounts for p in a.policies])
    assert "cdk-team7-assets-" in documents and "cdk-webapp-assets-" not in documents


def test_the_pipeline_account_gets_its_own_boundary_and_execution_policies() -> None:
    result = plan(load_config(DEFAULT_CONFIG))
    pipeline = next(a for a in result.accounts if a.role == "pipeline")
    count = len(load_policies("pipeline"))
    assert [p.name for p in pipeline.policies] == [
        "webapp-pipeline-permissions-boundary",
        *(f"webapp-pipeline-cfn-execution-{n}" for n in range(1, count + 1)),
    ]
    text = json.dumps([p.document for p in pipeline.policies])
    assert "codepipeline:CreatePipeline" in text and "{" + "account}" not in text


def test_targets_get_the_boundary_and_execution_policies() -> None:
    result = plan(load_config(DEFAULT_CONFIG))
    targets = [a for a in result.accounts if a.role == "target"]
    assert [a.account for a in targets] == ["222222222222", "333333333333"]
    for account in targets:
        names = [p.name for p in account.policies]
        assert names == [
            "webapp-permissions-boundary",
            *(f"webapp-cfn-execution-{n}" for n in range(1, len(load_policies()) + 1)),
        ]
        text = json.dumps([p.document for p in account.policies])
        assert "{" + "account}" not in text and account.account in text


def test_pipeline_account_is_bootstrapped_in_every_stage_region() -> None:
    result = plan(load_config(FIXTURES / "imported.toml"))
    pipeline = [argv[2] for account, argv in result.commands if account == "111111111111"]
    assert pipeline == ["aws://111111111111/us-east-1", "aws://111111111111/us-west-2"]
    # The environments (what `make doctor` checks) follow the commands one for one.
    assert [f"aws://{e.account}/{e.region}" for e in result.environments] == [
        argv[2] for _, argv in result.commands
    ]
    assert {e.trusted for e in result.environments if e.account == "111111111111"} == {None}
    assert {e.trusted for e in result.environments if e.account != "111111111111"} == {
        "111111111111"
    }


def test_dry_run_prints_and_calls_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ops.bootstrap, "BUILD_DIR", tmp_path)
    assert main([str(DEFAULT_CONFIG)]) == 0
    assert any(tmp_path.glob("*/*.json"))  # the policy documents, for review
    out = capsys.readouterr().out
    assert "dry run" in out
    assert (
        "cdk bootstrap aws://333333333333/eu-west-1 --qualifier webapp "
        "--toolkit-stack-name CDKToolkit-webapp --template " in out
    )
    assert "--trust 111111111111" in out
    # The targets' template, written for review and for `cdk bootstrap --template`.
    template = (tmp_path / "bootstrap-template.yaml").read_text()
    assert "TrustedAccountsReadImages" in template
    assert "arn:aws:iam::111111111111:role/webapp-pipeline-*" in template


def test_bad_config_is_refused_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config/nope.toml"]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_config_outside_the_repository_is_refused_as_synth_refuses_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    outside = tmp_path / "mine.toml"
    outside.write_text(DEFAULT_CONFIG.read_text())
    assert main([str(outside)]) == 2
    assert "must be inside the repository" in capsys.readouterr().err


@pytest.fixture
def aws() -> Iterator[Any]:
    with mock_aws():
        yield boto3.Session(region_name="us-east-1")


def _policy(document_sid: str = "One") -> ManagedPolicy:
    document = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": document_sid, "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}
        ],
    }
    return ManagedPolicy(MOTO_ACCOUNT, "webapp-cfn-execution-1", "test", document, "aws")


def test_policy_is_created_then_left_alone_then_updated(aws: Any) -> None:
    iam = aws.client("iam")
    assert ensure_policy(iam, _policy()) == "created"
    assert ensure_policy(iam, _policy()) == "unchanged"
    assert ensure_policy(iam, _policy("Two")) == "updated"
    arn = _policy().arn
    default = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=arn, VersionId=default)["PolicyVersion"]["Document"]
    assert document["Statement"][0]["Sid"] == "Two"


def test_oldest_version_is_removed_at_the_iam_limit(aws: Any) -> None:
    iam = aws.client("iam")
    for index in range(MAX_POLICY_VERSIONS + 2):
        ensure_policy(iam, _policy(f"V{index}"))
    versions = iam.list_policy_versions(PolicyArn=_policy().arn)["Versions"]
    assert len(versions) == MAX_POLICY_VERSIONS


def test_credentials_of_the_wrong_account_are_refused(aws: Any) -> None:
    with pytest.raises(
        BootstrapError, match=f"belong to account {MOTO_ACCOUNT}, not to 222222222222"
    ):
        check_account(aws, Account("222222222222", None, "target"))


def test_apply_creates_policies_then_runs_commands_and_stops_at_a_failure(aws: Any) -> None:
    result = Plan(
        accounts=[Account(MOTO_ACCOUNT, None, "target", (_policy(),))],
        commands=[
            (MOTO_ACCOUNT, ["cdk", "bootstrap", "one"]),
            (MOTO_ACCOUNT, ["cdk", "bootstrap", "two"]),
            (MOTO_ACCOUNT, ["cdk", "bootstrap", "three"]),
        ],
    )
    ran: list[str] = []

    def run(argv: Sequence[str]) -> int:
        ran.append(argv[-1])
        return 1 if argv[-1] == "two" else 0

    lines: list[str] = []
    with pytest.raises(BootstrapError, match="exited with 1"):
        apply(result, lambda profile: aws, run, lines.append)
    assert ran == ["one", "two"]
    assert lines[0] == f"{MOTO_ACCOUNT}: webapp-cfn-execution-1: created"
    # Re-running is safe: the policy is left as it is.
    lines.clear()
    with pytest.raises(BootstrapError):
        apply(result, lambda profile: aws, run, lines.append)
    assert lines[0].endswith(": unchanged")


def test_apply_without_credentials_says_what_to_do_next(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Real botocore, with no credentials anywhere it looks."""
    monkeypatch.setattr(ops.bootstrap, "BUILD_DIR", tmp_path)
    for name in [key for key in os.environ if key.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert main([str(DEFAULT_CONFIG), "--apply"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: bootstrap failed: NoCredentialsError: ")
    assert "set `profile` for it in the config" in err
    assert "run `make bootstrap APPLY=1` again" in err


@pytest.mark.usefixtures("aws")
def test_a_qualifier_another_app_bootstrapped_is_refused() -> None:
    config = load_config(DEFAULT_CONFIG)
    result = plan(config)
    target = next(a for a in result.accounts if a.account == "222222222222")
    iam = boto3.client("iam", region_name="eu-west-1")
    role = "cdk-webapp-cfn-exec-role-222222222222-eu-west-1"
    iam.create_role(RoleName=role, AssumeRolePolicyDocument="{}")
    check_qualifier_is_ours(iam, target, "eu-west-1", "webapp")  # ours, nothing attached yet
    arn = iam.create_policy(
        PolicyName="other-app-deploy", PolicyDocument=json.dumps(_policy().document)
    )["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=role, PolicyArn=arn)
    with pytest.raises(BootstrapError, match=r"other-app-deploy.*another app uses that qualifier"):
        check_qualifier_is_ours(iam, target, "eu-west-1", "webapp")
