"""The deploy-permission check: every call CloudFormation makes for every synthesized resource,
evaluated by an IAM policy evaluator against the execution policies `make bootstrap` creates."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from configuration import load_config
from policies import deploy_check
from policies.deploy_check import (
    CheckError,
    Report,
    StackTemplate,
    check,
    policy_sets,
    read_stacks,
    stack_calls,
)
from policies.execution_policy import service_of

from ..conftest import DEFAULT_CONFIG, ROOT, Synthesized, record_figure

SECURITY_GUIDE = ROOT / "docs" / "security.md"


@pytest.fixture(scope="module")
def default_stacks(default_synth: Synthesized) -> list[StackTemplate]:
    """The stack the planted-policy tests need: staging's, which has Lambda functions, keys,
    roles passed to ECS tasks and everything else a stage deploys (one stack, to keep the
    evaluator's work, about a second per thousand calls, small)."""
    return [s for s in read_stacks(default_synth.outdir) if s.name == "webapp-staging-service"]


_REPORTS: dict[Path, Report] = {}


def _report(synthesized: Synthesized) -> Report:
    """The check of a synthesized config with the real policies, computed once per module."""
    if synthesized.outdir not in _REPORTS:
        _REPORTS[synthesized.outdir] = check(synthesized.config, read_stacks(synthesized.outdir))
    return _REPORTS[synthesized.outdir]


def _without(policies: dict[str, list[dict[str, Any]]], sid: str) -> dict[str, Any]:
    planted = copy.deepcopy(policies)
    for documents in planted.values():
        for document in documents:
            statements = document["policy"]["Statement"]
            statements[:] = [s for s in statements if s.get("Sid") != sid]
    return planted


def test_the_first_deploy_is_allowed_in_every_account(each_example_synth: Synthesized) -> None:
    stacks = read_stacks(each_example_synth.outdir)
    accounts = {s.account for s in stacks}
    assert each_example_synth.config.pipeline.account in accounts
    assert {stage.account for stage in each_example_synth.config.stages} <= accounts
    report = _report(each_example_synth)
    name = each_example_synth.outdir.name.split("cdk.out-")[-1].rstrip("0123456789")
    figure = f"deploy-permission check ({name}): {report.summary()}"
    record_figure(figure)
    assert report.ok, report.describe()
    if name == "default":
        # The security guide shows these figures; they change with the stacks.
        shown = figure.split(";")[0]
        assert shown in SECURITY_GUIDE.read_text(), f"update docs/security.md's figures: {figure}"
    assert len(set(report.calls)) > 1000
    # Every Lambda function's code object in the project's asset bucket was evaluated.
    qualifier = each_example_synth.config.pipeline.qualifier
    code_reads = {c.resource for c in report.calls if c.action == "s3:GetObject"}
    assert any(f":::cdk-{qualifier}-assets-" in arn for arn in code_reads), code_reads


def test_an_execution_policy_without_the_asset_read_fails(
    default_synth: Synthesized, default_stacks: list[StackTemplate]
) -> None:
    planted = _without(policy_sets(default_synth.config), "ReadCdkAssets")
    report = check(default_synth.config, default_stacks, planted)
    denied = {(c.stack, c.action, c.resource.split("/")[0]) for c, _, _ in report.denials}
    assert (
        "webapp-staging-service",
        "s3:GetObject",
        "arn:aws:s3:::cdk-webapp-assets-222222222222-eu-west-1",
    ) in denied
    assert {c.action for c, _, _ in report.denials} == {"s3:GetObject", "s3:GetObjectVersion"}
    text = report.describe()
    assert "CustomVpcRestrictDefaultSGCustomResourceProviderHandler" in text
    assert "S3ProjectBuckets: resource does not match" in text


def test_a_role_passed_to_a_service_the_policy_does_not_name_is_denied(
    default_synth: Synthesized, default_stacks: list[StackTemplate]
) -> None:
    planted = copy.deepcopy(policy_sets(default_synth.config))
    for documents in planted.values():
        for document in documents:
            for statement in document["policy"]["Statement"]:
                if statement.get("Sid") == "PassProjectRoles":
                    services = statement["Condition"]["StringEquals"]["iam:PassedToService"]
                    if "ecs-tasks.amazonaws.com" in services:
                        services.remove("ecs-tasks.amazonaws.com")
    report = check(default_synth.config, default_stacks, planted)
    denied = {(c.action, dict(c.context).get("iam:PassedToService")) for c, _, _ in report.denials}
    assert denied == {("iam:PassRole", "ecs-tasks.amazonaws.com")}


def test_the_policies_of_another_qualifier_do_not_reach_our_assets(
    default_synth: Synthesized, default_stacks: list[StackTemplate]
) -> None:
    other = default_synth.config.model_copy(
        update={
            "pipeline": default_synth.config.pipeline.model_copy(update={"qualifier": "hnb659fds"})
        }
    )
    report = check(default_synth.config, default_stacks, policy_sets(other))
    assert report.denials
    assert {c.action for c, _, _ in report.denials} >= {"s3:GetObject", "ssm:GetParameters"}


def _stack(resources: dict[str, Any], account: str = "222222222222") -> StackTemplate:
    return StackTemplate("webapp-staging-service", account, "eu-west-1", {"Resources": resources})


def _evaluate(stack: StackTemplate) -> Report:
    config = load_config(DEFAULT_CONFIG)
    return check(config, [stack])


def test_a_key_whose_policy_shuts_out_the_account_cannot_be_managed() -> None:
    shut_out = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "logs.amazonaws.com"},
                "Action": "kms:Decrypt",
                "Resource": "*",
            }
        ],
    }
    tagged = {"KeyPolicy": shut_out, "Tags": [{"Key": "project", "Value": "webapp"}]}
    report = _evaluate(_stack({"Key": {"Type": "AWS::KMS::Key", "Properties": tagged}}))
    denied = {c.action for c, _, _ in report.denials}
    assert {"kms:PutKeyPolicy", "kms:ScheduleKeyDeletion"} <= denied
    assert "kms:CreateKey" not in denied
    assert any("resource policy does not allow" in " ".join(why) for _, _, why in report.denials)


@pytest.mark.parametrize("tags", [[], [{"Key": "project", "Value": "billing"}]])
def test_a_key_without_the_project_tag_cannot_be_created(tags: list[dict[str, str]]) -> None:
    """KMS's handler passes the template's tags in CreateKey (TAGS_IN_CREATE_CALL): a key that
    would not carry the project's tag is refused at its creation."""
    key = {"Type": "AWS::KMS::Key", "Properties": {"Tags": tags}}
    denied = {c.action for c, _, _ in _evaluate(_stack({"Key": key})).denials}
    assert "kms:CreateKey" in denied


def test_roles_outside_the_project_prefix_cannot_be_created() -> None:
    role = {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": "someone-elses-role",
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": []},
            "PermissionsBoundary": "arn:aws:iam::222222222222:policy/webapp-permissions-boundary",
        },
    }
    report = _evaluate(_stack({"Role": role}))
    assert "iam:CreateRole" in {c.action for c, _, _ in report.denials}


def test_a_role_without_the_boundary_cannot_be_created() -> None:
    role = {
        "Type": "AWS::IAM::Role",
        "Properties": {"AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": []}},
    }
    report = _evaluate(_stack({"Role": role}))
    denials = {c.action: why for c, _, why in report.denials}
    assert "iam:CreateRole" in denials
    assert "condition fails" in " ".join(denials["iam:CreateRole"])


def test_arns_are_formed_as_aws_forms_them() -> None:
    stack = _stack(
        {
            "Bucket": {"Type": "AWS::S3::Bucket"},
            "Handler": {
                "Type": "AWS::Lambda::Function",
                "Properties": {
                    "Code": {
                        "S3Bucket": {
                            "Fn::Sub": "cdk-webapp-assets-${AWS::AccountId}-${AWS::Region}"
                        },
                        "S3Key": "abc.zip",
                    },
                    "Role": {"Fn::GetAtt": ["Role", "Arn"]},
                },
            },
            "Role": {"Type": "AWS::IAM::Role", "Properties": {}},
        }
    )
    calls, _, _ = stack_calls(stack, "webapp")
    resources = {(c.logical_id, c.action): c.resource for c in calls}
    bucket = resources[("Bucket", "s3:CreateBucket")]
    # CloudFormation's generated bucket name: stack name, logical id, random; lower case.
    assert bucket.startswith("arn:aws:s3:::webapp-staging-service-bucket-")
    assert bucket == bucket.lower()
    assert resources[("Handler", "s3:GetObject")] == (
        "arn:aws:s3:::cdk-webapp-assets-222222222222-eu-west-1/abc.zip"
    )
    assert resources[("Handler", "lambda:CreateFunction")].startswith(
        "arn:aws:lambda:eu-west-1:222222222222:function:webapp-staging-service-Handler-"
    )
    passed = next(c for c in calls if c.action == "iam:PassRole")
    assert passed.resource.startswith("arn:aws:iam::222222222222:role/webapp-staging-service-Role-")
    assert dict(passed.context)["iam:PassedToService"] == "lambda.amazonaws.com"


def test_a_resource_type_nobody_has_described_stops_the_check() -> None:
    with pytest.raises(CheckError, match="AWS::SQS::Queue is not in"):
        stack_calls(_stack({"Queue": {"Type": "AWS::SQS::Queue"}}), "webapp")


def test_a_malformed_action_in_a_policy_makes_every_call_fail(
    default_synth: Synthesized, default_stacks: list[StackTemplate]
) -> None:
    planted = copy.deepcopy(policy_sets(default_synth.config))
    for documents in planted.values():
        documents[0]["policy"]["Statement"][0]["Action"].append("s3:REST.PUT.OBJECT")
    report = check(default_synth.config, default_stacks[:1], planted)
    assert report.denials and all(d == "Error" for _, d, _ in report.denials)
    assert "Action can only contain" in report.describe()


def test_the_command_line_names_each_denial_and_exits_non_zero(
    default_synth: Synthesized, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = deploy_check.policy_sets
    monkeypatch.setattr(
        deploy_check, "policy_sets", lambda config: _without(real(config), "ReadCdkAssets")
    )
    code = deploy_check.main([str(DEFAULT_CONFIG), str(default_synth.outdir)])
    err = capsys.readouterr().err
    assert code == 1
    assert (
        "webapp-staging-service" in err and "s3:GetObject on arn:aws:s3:::cdk-webapp-assets-" in err
    )
    assert "run `make policies`" in err


def test_the_command_line_refuses_a_missing_cloud_assembly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": {}}))
    assert deploy_check.main([str(DEFAULT_CONFIG), str(tmp_path)]) == 2
    assert "no stacks" in capsys.readouterr().err


def test_calls_carry_the_forward_access_session_keys_cloudformation_sets(
    default_synth: Synthesized, default_stacks: list[StackTemplate]
) -> None:
    """AWS's own example: a Deny on aws:ViaAWSService stops CloudFormation creating a key even
    with a service role, because every resource operation is a forward access session."""
    planted = copy.deepcopy(policy_sets(default_synth.config))
    for documents in planted.values():
        documents[0]["policy"]["Statement"].append(
            {
                "Sid": "NoKeysThroughServices",
                "Effect": "Deny",
                "Action": "kms:CreateKey",
                "Resource": "*",
                "Condition": {"Bool": {"aws:ViaAWSService": "true"}},
            }
        )
    report = check(default_synth.config, default_stacks, planted)
    assert {c.action for c, _, _ in report.denials} == {"kms:CreateKey"}
    assert any("NoKeysThroughServices" in " ".join(why) for _, _, why in report.denials)


def test_every_resource_is_evaluated_with_calls_of_its_own_service(
    each_example_synth: Synthesized,
) -> None:
    """A resource whose own calls were filtered out (a wrong service prefix) would be allowed by
    default: each resource type gets calls of its own service, the notification rule included."""
    report = _report(each_example_synth)
    evaluated = {(c.stack, c.logical_id, c.action.split(":")[0]) for c in report.calls}
    kinds: dict[str, set[tuple[str, str]]] = {}
    for stack in read_stacks(each_example_synth.outdir):
        for logical_id, resource in stack.template["Resources"].items():
            kinds.setdefault(resource["Type"], set()).add((stack.name, logical_id))
    for kind, resources in kinds.items():
        if kind.startswith("Custom::") or kind == "AWS::CDK::Metadata":
            continue
        own = service_of(kind)
        assert any((stack, logical_id, own) in evaluated for stack, logical_id in resources), (
            f"{kind}: no call of service {own} evaluated"
        )


def test_the_source_connection_is_passed_and_the_token_secret_resolved(
    default_synth: Synthesized, imported_synth: Synthesized
) -> None:
    default = _report(default_synth)
    passed = {c.resource for c in default.calls if c.action.endswith(":PassConnection")}
    connection = str(default_synth.config.pipeline.source.connection_arn)
    # CodePipeline's schema names the old prefix: the same connection under that name.
    assert connection.replace(":codeconnections:", ":codestar-connections:") in passed
    imported = _report(imported_synth)
    secret_reads = [c for c in imported.calls if c.action == "secretsmanager:GetSecretValue"]
    assert [c.logical_id for c in secret_reads] == ["DynamicReference"]
    assert ":secret:github/shop-token-" in secret_reads[0].resource
    # Without the policy `make bootstrap` adds for a token source, CloudFormation cannot read it.
    planted = policy_sets(imported_synth.config)
    account = imported_synth.config.pipeline.account
    planted[account] = [p for p in planted[account] if "source-secret" not in p["name"]]
    pipeline = [s for s in read_stacks(imported_synth.outdir) if s.account == account]
    report = check(imported_synth.config, pipeline, planted)
    assert {c.action for c, _, _ in report.denials} == {"secretsmanager:GetSecretValue"}
