"""The pipeline: V2, self-mutating, triggered by pushes to the branch, stages in config order."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from aws_cdk import pipelines
from aws_cdk.assertions import Match, Template

from policies.execution_policy import actions_of

from ..conftest import FIXTURES, ROOT, Synthesized
from ..simulate import simulate


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


def test_security_scan_is_a_cdk_pipelines_step_of_the_first_stage(
    default_synth: Synthesized,
) -> None:
    # Defined through CDK Pipelines (a `pre` step of the first stage), not added to the built
    # pipeline afterwards.
    stack = default_synth.stack

    def pre(wave: pipelines.Wave) -> list[str]:
        # A wave's own `pre`, and (for a stage added on its own) the stage deployment's.
        return [step.id for step in [*wave.pre, *(s for d in wave.stages for s in d.pre)]]

    first, *later = stack.pipeline.waves
    assert first.id == "staging"
    assert pre(first) == ["SecurityScan"]
    assert all("SecurityScan" not in pre(wave) for wave in later)


def test_security_scan_runs_after_publishing_and_before_the_first_deploy(
    template: Template,
) -> None:
    names = _stage_names(_pipeline(template))
    # CDK Pipelines publishes every asset, to every target, in the Assets stage; the next stage
    # starts only once it has succeeded.
    assert names.index("Assets") + 1 == names.index("staging")
    assert {a["Name"] for a in _actions(template, "Assets")} == {"DockerAssets", "FileAssets"}
    staging = _actions(template, "staging")
    [scan] = [a for a in staging if a["Name"] == "SecurityScan"]
    deploys = [a["RunOrder"] for a in staging if a["ActionTypeId"]["Category"] == "Deploy"]
    assert scan["RunOrder"] == 1 < min(deploys)
    # The only action before the deploys, so the critical path grows by exactly one action.
    assert [a["Name"] for a in staging if a["RunOrder"] < min(deploys)] == ["SecurityScan"]
    assert scan["ActionTypeId"]["Provider"] == "CodeBuild"
    assert [a["Name"] for a in scan["InputArtifacts"]] == [
        "example_org_webapp_delivery_Source",
        "Synth_Output",
    ]
    assert [a["Name"] for a in scan["OutputArtifacts"]] == ["SecurityScan_Output"]
    assert not [a for a in _actions(template, "prod") if a["Name"] == "SecurityScan"]


def _scan_project(template: Template) -> dict[str, Any]:
    for project in template.find_resources("AWS::CodeBuild::Project").values():
        if "make scan-pipeline" in project["Properties"]["Source"]["BuildSpec"]:
            return project
    raise AssertionError("no security scan project")


def test_security_scan_reads_the_published_image_by_digest_without_a_docker_daemon(
    template: Template,
) -> None:
    project = _scan_project(template)
    spec = json.loads(project["Properties"]["Source"]["BuildSpec"])
    # CDK Pipelines links the synth output (the asset manifests, the templates) to cdk.out.
    assert 'ln -s -- "$CODEBUILD_SRC_DIR_Synth_Output" "cdk.out"' in " ".join(
        spec["phases"]["install"]["commands"]
    )
    assert spec["phases"]["build"]["commands"] == ["make scan-pipeline"]
    assert spec["artifacts"]["base-directory"] == "scan-reports"
    assert spec["cache"]["paths"] == ["/root/.cache/trivy/**/*"]
    environment = project["Properties"]["Environment"]
    assert environment["PrivilegedMode"] is False
    assert {"Name": "TRIVY_CACHE_DIR", "Type": "PLAINTEXT", "Value": "/root/.cache/trivy"} in (
        environment["EnvironmentVariables"]
    )
    assert project["Properties"]["Cache"]["Type"] == "S3"
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("scan-pipeline:", 1)[1].split("\n\n", 1)[0]
    # The recipe verifies the pinned binary (ops.scan), then checks and scans the published
    # image by digest (--image) besides the offline scans, and writes the reports and SBOM.
    assert "-m ops.scan --image" in recipe and "--reports scan-reports" in recipe
    # That the image is read from the registry (`--image-src remote`) is checked on the real
    # command line in tests/ops/test_scan.py.


def _scan_statements(template: Template) -> list[dict[str, Any]]:
    project = _scan_project(template)
    role_id = project["Properties"]["ServiceRole"]["Fn::GetAtt"][0]
    return [
        statement
        for policy in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _repository(account: str, region: str, qualifier: str = "webapp") -> str:
    return (
        f"arn:aws:ecr:{region}:{account}:repository/"
        f"cdk-{qualifier}-container-assets-{account}-{region}"
    )


def _ecr_grants(statements: list[dict[str, Any]]) -> dict[str, set[str]]:
    grants: dict[str, set[str]] = {}
    for statement in statements:
        resources = statement["Resource"]
        resources = resources if isinstance(resources, list) else [resources]
        for action in actions_of(statement):
            if action.startswith("ecr:"):
                grants.setdefault(action, set()).update(resources)
    return grants


def test_security_scan_may_read_only_the_targets_asset_repositories(template: Template) -> None:
    statements = _scan_statements(template)
    services = {action.split(":")[0] for s in statements for action in actions_of(s)}
    assert services <= {"s3", "kms", "logs", "codebuild", "ecr"}, services
    repositories = {
        _repository("222222222222", "eu-west-1"),
        _repository("333333333333", "eu-west-1"),
    }
    assert _ecr_grants(statements) == {
        # No resource-level permissions exist for this action (AWS docs, cited in the stack).
        "ecr:GetAuthorizationToken": {"*"},
        "ecr:BatchGetImage": repositories,
        "ecr:DescribeImages": repositories,
        "ecr:GetDownloadUrlForLayer": repositories,
    }
    assert all(s["Effect"] == "Allow" and "Condition" not in s for s in statements)


def test_in_a_fleet_the_scan_leads_the_first_wave_and_reads_every_targets_repository(
    synth: Callable[..., Synthesized],
) -> None:
    result = synth(FIXTURES / "five-stages.toml", suffix="-blue")
    template = Template.from_stack(result.stack)
    names = _stage_names(_pipeline(template))
    assert names[names.index("Assets") + 1] == "dev"
    [scan] = [a for a in _actions(template, "dev") if a["Name"] == "SecurityScan"]
    assert scan["RunOrder"] == 1
    accounts = ["444444444444", "555555555555", "222222222222", "666666666666", "333333333333"]
    repositories = {_repository(account, "eu-central-1", "fleet") for account in accounts}
    assert _ecr_grants(_scan_statements(template))["ecr:BatchGetImage"] == repositories


def test_an_approval_in_the_first_stage_waits_for_the_scan(
    synth: Callable[..., Synthesized], tmp_path_factory: pytest.TempPathFactory
) -> None:
    config = tmp_path_factory.mktemp("approve-first") / "approve-first.toml"
    text = (ROOT / "config" / "default.toml").read_text()
    first = text.index("[[stages]]")
    config.write_text(text[:first] + text[first:].replace("approval = false", "approval = true", 1))
    template = Template.from_stack(synth(config).stack)
    staging = {a["Name"]: a["RunOrder"] for a in _actions(template, "staging")}
    assert (
        staging["SecurityScan"]
        < staging["Approve-staging"]
        < staging["webapp-staging-service.Deploy"]
    )


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


def _project_arn(logical_id: str) -> str:
    return f"arn:aws:codebuild:eu-west-1:111111111111:project/{logical_id}"


def _with_project_arns(value: Any, projects: set[str]) -> Any:
    """`value` with each `Fn::GetAtt [<project>, Arn]` as the project's ARN."""
    if isinstance(value, list):
        return [_with_project_arns(v, projects) for v in value]
    if isinstance(value, dict):
        target = value.get("Fn::GetAtt")
        if target and target[0] in projects and target[1] == "Arn":
            return _project_arn(target[0])
        return {k: _with_project_arns(v, projects) for k, v in value.items()}
    return value


@pytest.mark.parametrize("config", ["default", "five-stages", "slow-layout"])
def test_asset_publishing_roles_run_only_their_own_projects(
    config: str, synth: Callable[..., Synthesized], tmp_path: Any
) -> None:
    """CDK Pipelines grants its asset roles codebuild:StartBuild on every project; each may now
    start (stop, read) only the publishing projects that run as it: not ProtectStacks (which
    assumes the production deploy role), not synth, not another project of the account."""
    if config == "slow-layout":  # CDK Pipelines' default layout: one project per asset
        from aws_cdk import App

        from app import CDK_CLI_CONTEXT, pipeline_stack
        from configuration import load_config

        from ..conftest import DEFAULT_CONFIG

        app = App(context=CDK_CLI_CONTEXT, outdir=str(tmp_path))
        stack = pipeline_stack(
            app, load_config(DEFAULT_CONFIG), config_path="config/default.toml", fast_layout=False
        )
    else:
        stack = (
            synth() if config == "default" else synth(FIXTURES / "five-stages.toml", suffix="-blue")
        ).stack
    template = Template.from_stack(stack).to_json()
    resources = template["Resources"]
    projects = {k for k, r in resources.items() if r["Type"] == "AWS::CodeBuild::Project"}
    roles = {
        k
        for k, r in resources.items()
        if r["Type"] == "AWS::IAM::Role" and re.match(r"PipelineAssets(File|Docker)Role", k)
    }
    assert len(roles) == 2
    protect = [p for p in projects if "ProtectStacks" in p]
    assert protect  # production's ProtectStacks project is among those refused
    for role in roles:
        own = {
            p
            for p in projects
            if resources[p]["Properties"]["ServiceRole"] == {"Fn::GetAtt": [role, "Arn"]}
        }
        assert own and all("PipelineAssets" in p for p in own)
        (policy,) = [
            r["Properties"]["PolicyDocument"]
            for r in resources.values()
            if r["Type"] == "AWS::IAM::Policy" and r["Properties"]["Roles"] == [{"Ref": role}]
        ]
        # The evaluator sees the statements that can grant CodeBuild build actions.
        granting = [
            s
            for s in policy["Statement"]
            if any(a in ("*", "codebuild:*") or a.startswith("codebuild:") for a in actions_of(s))
            and not str(s["Resource"]).count("report-group")
        ]
        document = {"Version": "2012-10-17", "Statement": _with_project_arns(granting, projects)}
        others = [*sorted(projects - own), "SomeoneElsesProject"]
        calls = [
            {
                "set": "asset",
                "principal": f"arn:aws:iam::111111111111:role/webapp-pipeline-{role}-X",
                "action": action,
                "resource": _project_arn(project),
            }
            for project in sorted(own) + others
            for action in (
                "codebuild:StartBuild",
                "codebuild:StopBuild",
                "codebuild:BatchGetBuilds",
            )
        ]
        decisions = simulate(calls, {"asset": [{"name": "default", "policy": document}]})
        allowed = {c["resource"] for c, d in zip(calls, decisions, strict=True) if d == "Allowed"}
        assert allowed == {_project_arn(p) for p in own}
        assert not {_project_arn(p) for p in protect} & allowed


@pytest.mark.parametrize("name", ["default_synth", "five_stage_synth"])
def test_the_roles_that_reach_the_targets_match_the_targets_trust(
    name: str, request: pytest.FixtureRequest
) -> None:
    """The targets trust `<project>-pipeline-*` of the pipeline account (ops/bootstrap_template):
    every pipeline role whose policy assumes a target's CDK role, and the scan role, must get a
    name CloudFormation generates from the stack name, which starts so."""
    from ops.bootstrap import pipeline_trust

    synthesized: Synthesized = request.getfixturevalue(name)
    stack = synthesized.stack
    (pattern,) = pipeline_trust(synthesized.config).principal_patterns
    prefix = pattern.rsplit("/", 1)[1].rstrip("*")
    assert f"{stack.stack_name}-".startswith(prefix)
    assert len(stack.stack_name) <= 42  # leaves room in IAM's 64 for the logical id and suffix
    resources = Template.from_stack(stack).to_json()["Resources"]
    targets = {s.account for s in synthesized.config.stages} - {synthesized.config.pipeline.account}
    reaching: set[str] = set()
    for resource in resources.values():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            text = json.dumps(statement["Resource"])
            if "sts:AssumeRole" in actions_of(statement) and any(t in text for t in targets):
                reaching |= {role["Ref"] for role in resource["Properties"]["Roles"]}
    reaching.add(next(k for k in resources if k.startswith("SecurityScanRole")))
    assert {re.sub(r"[0-9A-F]{8}$", "", r) for r in reaching} >= {
        "PipelineRole",
        "PipelineAssetsFileRole",
        "PipelineAssetsDockerRole",
    }
    assert any("ProtectStacksRole" in r for r in reaching)
    for role in reaching:
        assert "RoleName" not in resources[role]["Properties"], role
        assert "Path" not in resources[role]["Properties"], role
