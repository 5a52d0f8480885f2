"""Releases: ECS native blue/green (or canary, linear) with a smoke-tested green, rollback alarms
and listener rules that routine releases never touch."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

import service.infrastructure
from service.listener_guard import Verdict, check, read_record, rendered_rules

from ..conftest import DEFAULT_CONFIG, FIXTURES, Synthesized, synthesize


def _service_template(synthesized: Synthesized, name: str) -> Template:
    return Template.from_stack(synthesized.stage(name).service)


def _ecs_service(template: Template) -> dict[str, Any]:
    [service] = template.find_resources("AWS::ECS::Service").values()
    return service["Properties"]


@pytest.fixture(scope="module")
def all_strategies(
    default_synth: Synthesized, imported_synth: Synthesized, synth: Callable[..., Synthesized]
) -> dict[str, Template]:
    return {
        "blue_green": _service_template(default_synth, "prod"),
        "canary": _service_template(imported_synth, "prod"),
        "linear": _service_template(synth(FIXTURES / "five-stages.toml", suffix="-blue"), "prod"),
    }


def test_each_strategy_is_configured_with_its_shift_and_bake_time(
    all_strategies: dict[str, Template],
) -> None:
    blue_green = _ecs_service(all_strategies["blue_green"])["DeploymentConfiguration"]
    assert blue_green["Strategy"] == "BLUE_GREEN"
    assert blue_green["BakeTimeInMinutes"] == 10
    canary = _ecs_service(all_strategies["canary"])["DeploymentConfiguration"]
    assert canary["Strategy"] == "CANARY"
    assert canary["BakeTimeInMinutes"] == 15
    assert canary["CanaryConfiguration"] == {"CanaryPercent": 10, "CanaryBakeTimeInMinutes": 3}
    linear = _ecs_service(all_strategies["linear"])["DeploymentConfiguration"]
    assert linear["Strategy"] == "LINEAR"
    assert linear["LinearConfiguration"] == {"StepPercent": 20, "StepBakeTimeInMinutes": 1}


@pytest.mark.parametrize("strategy", ["blue_green", "canary", "linear"])
def test_rollback_on_alarms_and_circuit_breaker(
    all_strategies: dict[str, Template], strategy: str
) -> None:
    template = all_strategies[strategy]
    deployment = _ecs_service(template)["DeploymentConfiguration"]
    assert deployment["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert deployment["Alarms"]["Enable"] is True and deployment["Alarms"]["Rollback"] is True
    alarm_ids = {ref["Ref"] for ref in deployment["Alarms"]["AlarmNames"]}
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    assert alarm_ids == set(alarms), "every alarm of the service rolls a release back"
    metrics = json.dumps([alarm["Properties"] for alarm in alarms.values()])
    for metric in ("HTTPCode_Target_5XX_Count", "UnHealthyHostCount", "TargetResponseTime"):
        assert metric in metrics
    for alarm in alarms.values():
        properties = alarm["Properties"]
        # Two one-minute periods: well inside the shortest bake time (3 minutes).
        assert properties["EvaluationPeriods"] == 2 and properties["DatapointsToAlarm"] == 2
        assert properties["AlarmActions"] and properties["OKActions"]


def test_alarm_thresholds_come_from_the_config(default_synth: Synthesized) -> None:
    staging = _service_template(default_synth, "staging")
    thresholds = {
        key.split("Monitoring")[1].split("Alarm")[0]: alarm["Properties"]["Threshold"]
        for key, alarm in staging.find_resources("AWS::CloudWatch::Alarm").items()
    }
    assert thresholds == {"ErrorRate": 2, "UnhealthyTargets": 1, "Latency": 1.5}


@pytest.mark.parametrize("stage", ["staging", "prod"])
def test_blue_green_target_groups_and_listener_rules_wired_to_the_alternate_target(
    default_synth: Synthesized, stage: str
) -> None:
    template = _service_template(default_synth, stage)
    [load_balancer] = _ecs_service(template)["LoadBalancers"]
    advanced = load_balancer["AdvancedConfiguration"]
    assert load_balancer["TargetGroupArn"]["Ref"].startswith("WebBlueTargetGroup")
    assert advanced["AlternateTargetGroupArn"]["Ref"].startswith("WebGreenTargetGroup")
    assert advanced["ProductionListenerRule"]["Ref"].startswith("WebProductionRule")
    assert advanced["TestListenerRule"]["Ref"].startswith("WebTestRule")
    rules = template.find_resources("AWS::ElasticLoadBalancingV2::ListenerRule")
    for rule in rules.values():
        [action] = rule["Properties"]["Actions"]
        weights = {
            t["TargetGroupArn"]["Ref"][:14]: t["Weight"]
            for t in action["ForwardConfig"]["TargetGroups"]
        }
        assert weights == {"WebBlueTargetG": 100, "WebGreenTarget": 0}
    assert rules[advanced["ProductionListenerRule"]["Ref"]]["Properties"]["ListenerArn"][
        "Ref"
    ].startswith("WebLoadBalancerHttpsListener")
    assert rules[advanced["TestListenerRule"]["Ref"]]["Properties"]["ListenerArn"][
        "Ref"
    ].startswith("WebLoadBalancerTestListener")


@pytest.mark.parametrize("stage", ["staging", "prod"])
def test_test_listener_is_reachable_only_from_the_nat_addresses(
    default_synth: Synthesized, stage: str
) -> None:
    template = _service_template(default_synth, stage)
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::Listener", {"Port": 9443, "Protocol": "HTTPS"}
    )
    ingress = [
        rule["Properties"]
        for rule in template.find_resources("AWS::EC2::SecurityGroupIngress").values()
        if rule["Properties"].get("FromPort") == 9443
    ]
    assert len(ingress) == 1 and "SourcePrefixListId" in ingress[0] and "CidrIp" not in ingress[0]
    [prefix_list] = template.find_resources("AWS::EC2::PrefixList").values()
    entries = prefix_list["Properties"]["Entries"]
    nats = {"staging": 1, "prod": 3}[stage]
    assert len(entries) == nats
    # Each entry is one NAT gateway's public address (same stack, no export), as a /32.
    for entry in entries:
        [address, suffix] = entry["Cidr"]["Fn::Join"][1]
        assert suffix == "/32"
        [eip, attribute] = address["Fn::GetAtt"]
        assert "EIP" in eip and attribute == "PublicIp"
    # No rule opens the test port to the world.
    groups = template.find_resources("AWS::EC2::SecurityGroup")
    for group in groups.values():
        for rule in group["Properties"].get("SecurityGroupIngress", []):
            assert not (rule.get("FromPort") == 9443 and rule.get("CidrIp") == "0.0.0.0/0")


def test_configured_test_networks_are_allowed_for_an_imported_vpc(
    imported_synth: Synthesized,
) -> None:
    [prefix_list] = (
        _service_template(imported_synth, "prod").find_resources("AWS::EC2::PrefixList").values()
    )
    assert [entry["Cidr"] for entry in prefix_list["Properties"]["Entries"]] == [
        "203.0.113.10/32",
        "203.0.113.11/32",
    ]


def test_fast_health_checks_and_draining(default_synth: Synthesized) -> None:
    template = _service_template(default_synth, "prod")
    groups = template.find_resources("AWS::ElasticLoadBalancingV2::TargetGroup")
    assert len(groups) == 2
    for group in groups.values():
        properties = group["Properties"]
        assert properties["HealthCheckPath"] == "/healthz"
        assert properties["HealthCheckIntervalSeconds"] == 5
        assert properties["HealthyThresholdCount"] == 2
        attributes = {a["Key"]: a["Value"] for a in properties["TargetGroupAttributes"]}
        assert attributes["deregistration_delay.timeout_seconds"] == "10"
    assert _ecs_service(template)["HealthCheckGracePeriodSeconds"] == 15


@pytest.mark.parametrize("stage", ["staging", "prod"])
def test_smoke_test_hook_runs_after_test_traffic_shift_with_least_privilege(
    default_synth: Synthesized, stage: str
) -> None:
    template = _service_template(default_synth, stage)
    [hook] = _ecs_service(template)["DeploymentConfiguration"]["LifecycleHooks"]
    assert hook["LifecycleStages"] == ["POST_TEST_TRAFFIC_SHIFT"]
    function_id = hook["HookTargetArn"]["Fn::GetAtt"][0]
    function = template.find_resources("AWS::Lambda::Function")[function_id]["Properties"]
    assert function["Handler"] == "hook.handler"
    assert function["VpcConfig"]["SubnetIds"]
    env = function["Environment"]["Variables"]
    version = default_synth.stage(stage).service.web.version
    assert env["EXPECTED_VERSION"] == version
    assert env["TEST_PORT"] == "9443" and env["TEST_SCHEME"] == "https"
    assert (
        env["SERVER_NAME"]
        == {"staging": "staging.webapp.example.com", "prod": "webapp.example.com"}[stage]
    )
    # The invoke role may call this function and nothing else.
    invoke_role = hook["RoleArn"]["Fn::GetAtt"][0]
    policies = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": invoke_role} in p["Properties"]["Roles"]
    ]
    assert [[s["Action"] for s in statements] for statements in policies] == [
        ["lambda:InvokeFunction"]
    ]
    # Its own security group lets it out to the test port only.
    template.has_resource_properties(
        "AWS::EC2::SecurityGroup",
        {
            "GroupDescription": Match.string_like_regexp("smoke test"),
            "SecurityGroupEgress": [
                Match.object_like({"FromPort": 9443, "ToPort": 9443, "IpProtocol": "tcp"})
            ],
        },
    )


@pytest.mark.parametrize("stage", ["staging", "prod"])
def test_dashboard_and_encrypted_alarm_topic(default_synth: Synthesized, stage: str) -> None:
    template = _service_template(default_synth, stage)
    [dashboard] = template.find_resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for title in (
        "Requests",
        "Target 5xx",
        "Response time",
        "Healthy targets",
        "CPU and memory",
        "Running tasks",
    ):
        assert title in body
    for metric in (
        "RequestCount",
        "HTTPCode_Target_5XX_Count",
        "p50",
        "p99",
        "HealthyHostCount",
        "CPUUtilization",
        "MemoryUtilization",
    ):
        assert metric in body
    template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})


def _listener_resources(synthesized: Synthesized) -> dict[str, Any]:
    result = {}
    for stage in synthesized.stack.stages:
        template = Template.from_stack(stage.service)
        for kind in (
            "AWS::ElasticLoadBalancingV2::ListenerRule",
            "AWS::ElasticLoadBalancingV2::Listener",
        ):
            for logical_id, resource in template.find_resources(kind).items():
                result[f"{stage.stage_name}/{logical_id}"] = resource
    return result


def test_routine_releases_never_change_the_listener_rules(
    default_synth: Synthesized, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aws/aws-cdk#36649: after a release, ECS owns the rules' weights; a CloudFormation update of
    a rule would send traffic back to a target group without tasks. A new image, task size,
    desired count and environment must leave the rules' (and listeners') templates as they are."""
    runtime = tmp_path / "runtime"
    shutil.copytree(service.infrastructure.RUNTIME_DIR, runtime)
    (runtime / "server.py").write_text((runtime / "server.py").read_text() + "\n# a new release\n")
    monkeypatch.setattr(service.infrastructure, "RUNTIME_DIR", runtime)
    config = tmp_path / "release.toml"
    config.write_text(
        DEFAULT_CONFIG.read_text()
        .replace(
            "cpu = 512\nmemory = 1024\ndesired_count = 3",
            'cpu = 1024\nmemory = 2048\ndesired_count = 5\nenvironment = { FEATURE_FLAG = "on" }',
        )
        .replace(
            "cpu = 256\nmemory = 512\ndesired_count = 2",
            "cpu = 512\nmemory = 1024\ndesired_count = 4",
        )
    )
    release = synthesize(config, tmp_path / "cdk.out")

    before, after = _listener_resources(default_synth), _listener_resources(release)
    assert len(before) == 10  # per stage: production, redirect and test listener; two rules
    assert before == after
    # ...and so the listener-rule guard lets the release through (service/listener_guard.py).
    assert check(rendered_rules(release.outdir), read_record()) == Verdict()
    # ...while the release itself did change what it should.
    old, new = default_synth.stage("prod").service, release.stage("prod").service
    assert old.web.version != new.web.version
    old_task = Template.from_stack(old).find_resources("AWS::ECS::TaskDefinition")
    new_task = Template.from_stack(new).find_resources("AWS::ECS::TaskDefinition")
    assert old_task != new_task
    assert _ecs_service(Template.from_stack(new))["DesiredCount"] == 5


def test_the_hook_is_packaged_from_its_two_modules_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tool cache left in service/smoke (mypy's, say) must not reach the function: it would
    change the asset hash and redeploy the function on every pipeline run."""
    import aws_cdk as cdk
    from aws_cdk import aws_ec2 as ec2

    import service.smoke_hook
    from configuration import ReleaseConfig

    smoke = tmp_path / "smoke"
    shutil.copytree(service.smoke_hook.SMOKE_DIR, smoke)
    (smoke / ".mypy_cache").mkdir(exist_ok=True)
    (smoke / ".mypy_cache" / "cache.db").write_text("stray")
    monkeypatch.setattr(service.smoke_hook, "SMOKE_DIR", smoke)
    app = cdk.App(outdir=str(tmp_path / "out"))
    stack = cdk.Stack(app, "Hook", env=cdk.Environment(account="123456789012", region="eu-west-1"))
    vpc = ec2.Vpc(stack, "Vpc", availability_zones=["eu-west-1a", "eu-west-1b"])
    service.smoke_hook.SmokeHook(
        stack,
        "SmokeHook",
        vpc=vpc,
        host="lb.example.com",
        scheme="https",
        server_name=None,
        expected_version="v1",
        release=ReleaseConfig(),
        log_key=cdk.aws_kms.Key(stack, "Key"),
        removal_policy=cdk.RemovalPolicy.DESTROY,
    )
    assembly = app.synth()
    [asset] = [p for p in Path(assembly.directory).glob("asset.*") if p.is_dir()]
    assert sorted(p.name for p in asset.iterdir()) == ["hook.py", "probe.py"]
