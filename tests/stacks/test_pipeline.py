"""The pipeline: V2, self-mutating, triggered by pushes to the branch, stages in config order."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from policies.execution_policy import actions_of

from ..conftest import FIXTURES, ROOT, Synthesized


def _pipeline(template: Template) -> dict[str, Any]:
    pipelines = template.find_resources("AWS::CodePipeline::Pipeline")
    assert len(pipelines) == 1
    return next(iter(pipelines.values()))["Properties"]


def _stage_names(props: dict[str, Any]) -> list[str]:
    return [stage["Name"] for stage in props["Stages"]]


@pytest.fixture(scope="module")
def template(default_synth: Synthesized) -> Template:
    return Template.from_stack(default_synth.stack)


def test_pipeline_is_v2_with_rotating_cross_account_key(template: Template) -> None:
    template.has_resource_properties(
        "AWS::CodePipeline::Pipeline", {"PipelineType": "V2", "Name": "webapp"}
    )
    # The artifact bucket's key, the one CDK Pipelines creates for cross-account deploys.
    [key] = [
        resource
        for logical_id, resource in template.find_resources("AWS::KMS::Key").items()
        if logical_id.startswith("PipelineArtifactsBucketEncryptionKey")
    ]
    assert key["Properties"]["EnableKeyRotation"] is True


def test_pipeline_updates_itself_before_deploying(template: Template) -> None:
    names = _stage_names(_pipeline(template))
    assert names[:3] == ["Source", "Build", "UpdatePipeline"]
    assert names.index("UpdatePipeline") < names.index("staging") < names.index("prod")


def test_push_to_the_configured_branch_triggers_the_pipeline(template: Template) -> None:
    triggers = _pipeline(template)["Triggers"]
    assert triggers == [
        {
            "ProviderType": "CodeStarSourceConnection",
            "GitConfiguration": {
                "SourceActionName": "example-org_webapp-delivery",
                "Push": [{"Branches": {"Includes": ["main"]}}],
            },
        }
    ]
    source = _pipeline(template)["Stages"][0]["Actions"][0]
    assert source["Configuration"]["BranchName"] == "main"
    assert source["Configuration"]["FullRepositoryId"] == "example-org/webapp-delivery"
    assert source["Configuration"]["ConnectionArn"].startswith("arn:aws:codeconnections:")


def test_manual_approval_precedes_only_the_stages_that_ask(template: Template) -> None:
    stages = {stage["Name"]: stage for stage in _pipeline(template)["Stages"]}

    def approvals(name: str) -> list[dict[str, Any]]:
        return [
            action
            for action in stages[name]["Actions"]
            if action["ActionTypeId"]["Category"] == "Approval"
        ]

    assert approvals("staging") == []
    [approval] = approvals("prod")
    first_deploy = min(
        action["RunOrder"]
        for action in stages["prod"]["Actions"]
        if action["ActionTypeId"]["Category"] == "Deploy"
    )
    assert approval["RunOrder"] < first_deploy


@pytest.mark.parametrize(
    ("stage", "account", "region"),
    [("staging", "222222222222", "eu-west-1"), ("prod", "333333333333", "eu-west-1")],
)
def test_each_stage_deploys_into_its_own_account(
    template: Template, stage: str, account: str, region: str
) -> None:
    stages = {s["Name"]: s for s in _pipeline(template)["Stages"]}
    deploys = [
        action
        for action in stages[stage]["Actions"]
        if action["ActionTypeId"]["Category"] == "Deploy"
    ]
    assert {action["Configuration"]["StackName"] for action in deploys} == {
        f"webapp-{stage}-service",
    }
    for action in deploys:
        # CodePipeline omits Region for actions in the pipeline's own region.
        assert action.get("Region", "eu-west-1") == region
        role = json.dumps(action["RoleArn"])
        assert f"cdk-webapp-deploy-role-{account}-{region}" in role
        execution_role = json.dumps(action["Configuration"]["RoleArn"])
        assert f"cdk-webapp-cfn-exec-role-{account}-{region}" in execution_role


def test_cli_version_comes_from_package_json(template: Template) -> None:
    version = json.loads((ROOT / "package.json").read_text())["dependencies"]["aws-cdk"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), "the CLI must be pinned to one version"
    projects = template.find_resources("AWS::CodeBuild::Project")
    self_mutation = [
        p for p in projects.values() if "cdk -a . deploy" in p["Properties"]["Source"]["BuildSpec"]
    ]
    assert self_mutation, "no self-mutation project"
    assert (
        f"npm install -g aws-cdk@{version}" in self_mutation[0]["Properties"]["Source"]["BuildSpec"]
    )


def test_synth_step_tests_then_synthesizes_the_same_config(template: Template) -> None:
    template.has_resource_properties(
        "AWS::CodeBuild::Project",
        {
            "Source": {
                "BuildSpec": Match.serialized_json(
                    Match.object_like(
                        {
                            "phases": Match.object_like(
                                {
                                    "build": {
                                        "commands": [
                                            "make test",
                                            "make synth CONFIG=config/default.toml",
                                        ]
                                    }
                                }
                            )
                        }
                    )
                )
            }
        },
    )


def test_pipeline_artifacts_are_versioned_and_logged(template: Template) -> None:
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "VersioningConfiguration": {"Status": "Enabled"},
            "LoggingConfiguration": Match.object_like({"LogFilePrefix": "pipeline-artifacts/"}),
        },
    )


def test_five_stages_in_order_with_suffix(synth: Callable[..., Synthesized]) -> None:
    result = synth(FIXTURES / "five-stages.toml", suffix="-blue")
    assert result.stack.stack_name == "fleet-pipeline-blue"
    template = Template.from_stack(result.stack)
    props = _pipeline(template)
    assert props["Name"] == "fleet-blue"
    names = _stage_names(props)
    assert [n for n in names if n in {"dev", "qa", "staging", "perf", "prod"}] == [
        "dev",
        "qa",
        "staging",
        "perf",
        "prod",
    ]
    stacks = {stack.stack_name for stage in result.stack.stages for stack in stage.stacks}
    assert "fleet-perf-blue-service" in stacks and "fleet-dev-blue-service" in stacks
    build_spec = json.dumps(template.find_resources("AWS::CodeBuild::Project"))
    assert "make synth CONFIG=tests/fixtures/five-stages.toml SUFFIX=blue" in build_spec


def test_github_token_source_uses_the_secret_and_a_webhook(imported_synth: Synthesized) -> None:
    props = _pipeline(Template.from_stack(imported_synth.stack))
    source = props["Stages"][0]["Actions"][0]
    assert source["ActionTypeId"]["Provider"] == "GitHub"
    assert source["Configuration"]["Branch"] == "release"
    assert "{{resolve:secretsmanager:github/shop-token" in json.dumps(
        source["Configuration"]["OAuthToken"]
    )
    assert "Triggers" not in props


def _actions(template: Template, stage: str) -> list[dict[str, Any]]:
    stages = {s["Name"]: s for s in _pipeline(template)["Stages"]}
    return list(stages[stage]["Actions"])


def test_security_scan_gates_the_first_deployment(template: Template) -> None:
    names = _stage_names(_pipeline(template))
    # In the Assets stage, in parallel with publishing: that stage fails, and no stage after it
    # runs, unless the scan passes.
    assert names.index("Assets") < names.index("staging")
    [scan] = [a for a in _actions(template, "Assets") if a["Name"] == "SecurityScan"]
    assert scan["RunOrder"] == 1
    assert scan["ActionTypeId"]["Provider"] == "CodeBuild"
    assert [a["Name"] for a in scan["InputArtifacts"]] == [
        "example_org_webapp_delivery_Source",
        "Synth_Output",
    ]
    assert [a["Name"] for a in scan["OutputArtifacts"]] == ["SecurityScan_Output"]


def _scan_project(template: Template) -> dict[str, Any]:
    for project in template.find_resources("AWS::CodeBuild::Project").values():
        if "make scan-pipeline" in project["Properties"]["Source"]["BuildSpec"]:
            return project
    raise AssertionError("no security scan project")


def test_security_scan_runs_the_shared_script_keeps_reports_and_caches_the_database(
    template: Template,
) -> None:
    project = _scan_project(template)
    spec = json.loads(project["Properties"]["Source"]["BuildSpec"])
    # The synth output is the action's second input: CodeBuild mounts it as a secondary source
    # named after the artifact, which the spec links to where the Makefile expects cdk.out.
    assert spec["phases"]["build"]["commands"] == [
        'ln -s -- "$CODEBUILD_SRC_DIR_Synth_Output" cdk.out',
        "make scan-pipeline",
    ]
    assert spec["artifacts"]["base-directory"] == "scan-reports"
    assert spec["cache"]["paths"] == ["/root/.cache/trivy/**/*"]
    assert project["Properties"]["Environment"]["PrivilegedMode"] is True
    assert project["Properties"]["Cache"]["Type"] == "S3"
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("scan-pipeline:", 1)[1].split("\n\n", 1)[0]
    # The recipe verifies the pinned binary (ops.scan) and builds and scans the image with an SBOM.
    assert "-m ops.scan --image" in recipe and "--reports scan-reports" in recipe


def test_security_scan_role_reads_what_it_scans_and_nothing_else(template: Template) -> None:
    project = _scan_project(template)
    role_id = project["Properties"]["ServiceRole"]["Fn::GetAtt"][0]
    policies = [
        p
        for p in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    actions = {
        action
        for policy in policies
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        for action in actions_of(statement)
    }
    services = {action.split(":")[0] for action in actions}
    assert services <= {"s3", "kms", "logs", "codebuild"}, services


def test_production_stacks_get_termination_protection_after_deploy(template: Template) -> None:
    # CodePipeline's CloudFormation action ignores termination protection (aws/aws-cdk#17871).
    prod = _actions(template, "prod")
    protect = [a for a in prod if a["Name"] == "ProtectStacks"]
    assert len(protect) == 1
    last_deploy = max(a["RunOrder"] for a in prod if a["ActionTypeId"]["Category"] == "Deploy")
    assert protect[0]["RunOrder"] > last_deploy
    assert not [a for a in _actions(template, "staging") if a["Name"] == "ProtectStacks"]
    spec = next(
        p["Properties"]["Source"]["BuildSpec"]
        for p in template.find_resources("AWS::CodeBuild::Project").values()
        if "update-termination-protection" in p["Properties"]["Source"]["BuildSpec"]
    )
    assert "--stack-name webapp-prod-service" in spec
    template.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        {
                            "Action": "sts:AssumeRole",
                            "Effect": "Allow",
                            "Resource": "arn:aws:iam::333333333333:role/cdk-webapp-deploy-role-333333333333-eu-west-1",
                        }
                    ]
                )
            }
        },
    )


def test_source_role_may_use_the_connection_under_both_service_prefixes(template: Template) -> None:
    arn = "arn:aws:codeconnections:eu-west-1:111111111111:connection/00000000-0000-4000-8000-000000000000"
    template.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        {
                            "Action": [
                                "codeconnections:UseConnection",
                                "codestar-connections:UseConnection",
                            ],
                            "Effect": "Allow",
                            "Resource": arn,
                        }
                    ]
                )
            }
        },
    )


@pytest.mark.parametrize("stage", ["staging", "prod"])
def test_each_stage_is_smoke_tested_from_outside_before_the_pipeline_goes_on(
    template: Template, stage: str
) -> None:
    actions = _actions(template, stage)
    [smoke] = [a for a in actions if a["Name"] == "SmokeTest"]
    last_deploy = max(a["RunOrder"] for a in actions if a["ActionTypeId"]["Category"] == "Deploy")
    assert smoke["RunOrder"] > last_deploy
    env = json.loads(smoke["Configuration"]["EnvironmentVariables"])
    assert {e["name"] for e in env} == {"SERVICE_HOST", "SERVICE_VERSION"}
    project = next(
        p
        for p in template.find_resources("AWS::CodeBuild::Project").values()
        if "service/smoke/probe.py" in p["Properties"]["Source"]["BuildSpec"]
        and ("staging.webapp" in p["Properties"]["Source"]["BuildSpec"]) == (stage == "staging")
    )
    spec = project["Properties"]["Source"]["BuildSpec"]
    assert "--expected-version" in spec and "--attempts 6 --backoff 5" in spec
    assert "--port 443 --scheme https" in spec


def test_pipeline_notifies_failures_successes_and_waiting_approvals(template: Template) -> None:
    template.has_resource_properties(
        "AWS::CodeStarNotifications::NotificationRule",
        {
            "EventTypeIds": Match.array_with(
                [
                    "codepipeline-pipeline-pipeline-execution-failed",
                    "codepipeline-pipeline-pipeline-execution-succeeded",
                    "codepipeline-pipeline-manual-approval-needed",
                ]
            ),
        },
    )
    template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})


def test_notification_emails_are_subscribed(imported_synth: Synthesized) -> None:
    Template.from_stack(imported_synth.stack).has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "platform-team@example.com"}
    )


def test_synth_step_has_room_for_the_parallel_test_suite(template: Template) -> None:
    project = next(
        p
        for p in template.find_resources("AWS::CodeBuild::Project").values()
        if "make synth CONFIG=" in p["Properties"]["Source"]["BuildSpec"]
    )
    assert project["Properties"]["Environment"]["ComputeType"] == "BUILD_GENERAL1_MEDIUM"
    assert project["Properties"]["Environment"]["Image"] == "aws/codebuild/standard:7.0"
