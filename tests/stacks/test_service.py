"""The service stack of every stage: cluster, Fargate service, load balancer, WAF, logs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from ..conftest import Synthesized

STAGES = ["staging", "prod"]


@pytest.fixture(scope="module")
def templates(default_synth: Synthesized) -> dict[str, Template]:
    return {name: Template.from_stack(default_synth.stage(name).service) for name in STAGES}


def _one(template: Template, kind: str) -> dict[str, Any]:
    found = template.find_resources(kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return next(iter(found.values()))


@pytest.mark.parametrize("stage", STAGES)
def test_fargate_service_runs_privately_with_rollback(
    templates: dict[str, Template], stage: str
) -> None:
    templates[stage].has_resource_properties(
        "AWS::ECS::Service",
        {
            "LaunchType": "FARGATE",
            "NetworkConfiguration": {
                "AwsvpcConfiguration": Match.object_like({"AssignPublicIp": "DISABLED"})
            },
            "DeploymentConfiguration": Match.object_like(
                {"DeploymentCircuitBreaker": {"Enable": True, "Rollback": True}}
            ),
            "LoadBalancers": Match.any_value(),
        },
    )


@pytest.mark.parametrize(
    ("stage", "cpu", "memory", "count"),
    [("staging", "256", "512", 2), ("prod", "512", "1024", 3)],
)
def test_service_is_sized_from_the_config(
    templates: dict[str, Template], stage: str, cpu: str, memory: str, count: int
) -> None:
    templates[stage].has_resource_properties(
        "AWS::ECS::TaskDefinition", {"Cpu": cpu, "Memory": memory}
    )
    templates[stage].has_resource_properties("AWS::ECS::Service", {"DesiredCount": count})


@pytest.mark.parametrize("stage", STAGES)
def test_container_is_the_repos_image_non_root_and_read_only(
    templates: dict[str, Template], stage: str
) -> None:
    container = _one(templates[stage], "AWS::ECS::TaskDefinition")["Properties"][
        "ContainerDefinitions"
    ][0]
    assert container["User"] == "10001:10001"
    assert container["ReadonlyRootFilesystem"] is True
    assert "cdk-webapp-container-assets" in json.dumps(container["Image"])
    env = {item["Name"]: item["Value"] for item in container["Environment"]}
    assert len(env["SERVICE_VERSION"]) == 12
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"


@pytest.mark.parametrize("stage", STAGES)
def test_load_balancer_is_public_logged_and_protected_by_waf(
    templates: dict[str, Template], stage: str
) -> None:
    attributes = _one(templates[stage], "AWS::ElasticLoadBalancingV2::LoadBalancer")["Properties"][
        "LoadBalancerAttributes"
    ]
    values = {item["Key"]: item["Value"] for item in attributes}
    assert values["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert values["access_logs.s3.enabled"] == "true"
    assert values["deletion_protection.enabled"] == ("true" if stage == "prod" else "false")
    templates[stage].resource_count_is("AWS::WAFv2::WebACLAssociation", 1)
    templates[stage].has_resource_properties(
        "AWS::WAFv2::LoggingConfiguration", {"LogDestinationConfigs": Match.any_value()}
    )
    [waf_logs] = [
        group["Properties"]["LogGroupName"]
        for group in templates[stage].find_resources("AWS::Logs::LogGroup").values()
        if "LogGroupName" in group["Properties"]
    ]
    # WAF's required prefix, the stack name, then the unique part of the stack id.
    prefix, unique = waf_logs["Fn::Join"][1]
    assert prefix == f"aws-waf-logs-webapp-{stage}-service-"
    assert unique == {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}


CERTIFICATES = {
    "staging": "arn:aws:acm:eu-west-1:222222222222:certificate/00000000-0000-4000-8000-000000000004",
    "prod": "arn:aws:acm:eu-west-1:333333333333:certificate/00000000-0000-4000-8000-000000000001",
}


@pytest.mark.parametrize("stage", STAGES)
def test_https_with_the_stage_certificate_and_http_redirects(
    templates: dict[str, Template], stage: str
) -> None:
    templates[stage].has_resource_properties(
        "AWS::ElasticLoadBalancingV2::Listener",
        {
            "Port": 443,
            "Protocol": "HTTPS",
            "Certificates": [{"CertificateArn": CERTIFICATES[stage]}],
            "SslPolicy": Match.string_like_regexp("TLS13|TLS-1-2"),
        },
    )
    templates[stage].has_resource_properties(
        "AWS::ElasticLoadBalancingV2::Listener",
        {
            "Port": 80,
            "DefaultActions": [
                Match.object_like(
                    {"Type": "redirect", "RedirectConfig": Match.object_like({"Port": "443"})}
                )
            ],
        },
    )


def test_plain_http_only_where_the_config_says_why(imported_synth: Synthesized) -> None:
    template = Template.from_stack(imported_synth.stage("staging").service)
    listeners = template.find_resources("AWS::ElasticLoadBalancingV2::Listener")
    ports = {
        item["Properties"]["Port"]: item["Properties"]["Protocol"] for item in listeners.values()
    }
    assert ports == {80: "HTTP", 9443: "HTTP"}  # production and test listener, no redirect


@pytest.mark.parametrize("stage", STAGES)
def test_logs_are_encrypted_with_a_key_logs_may_use(
    templates: dict[str, Template], stage: str
) -> None:
    for group in templates[stage].find_resources("AWS::Logs::LogGroup").values():
        assert "KmsKeyId" in group["Properties"]
        assert "RetentionInDays" in group["Properties"]
    templates[stage].has_resource_properties(
        "AWS::KMS::Key",
        {
            "EnableKeyRotation": True,
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [Match.object_like({"Principal": {"Service": "logs.eu-west-1.amazonaws.com"}})]
                )
            },
        },
    )


@pytest.mark.parametrize("stage", STAGES)
def test_only_the_load_balancer_reaches_the_tasks_and_they_speak_only_https(
    templates: dict[str, Template], stage: str
) -> None:
    ingress = [
        rule
        for rule in templates[stage].find_resources("AWS::EC2::SecurityGroupIngress").values()
        if "TaskSecurityGroup" in json.dumps(rule["Properties"]["GroupId"])
    ]
    assert ingress, "the tasks' security group has an ingress rule"
    for rule in ingress:
        assert "LoadBalancerSecurityGroup" in json.dumps(
            rule["Properties"]["SourceSecurityGroupId"]
        )
        assert rule["Properties"]["FromPort"] == 8080
    templates[stage].has_resource_properties(
        "AWS::EC2::SecurityGroup",
        {
            "GroupDescription": Match.string_like_regexp("tasks"),
            "SecurityGroupEgress": [
                {
                    "CidrIp": "0.0.0.0/0",
                    "IpProtocol": "tcp",
                    "FromPort": 443,
                    "ToPort": 443,
                    "Description": Match.any_value(),
                }
            ],
        },
    )


def test_prod_keeps_state_and_staging_cleans_up(templates: dict[str, Template]) -> None:
    for kind in ("AWS::Logs::LogGroup", "AWS::KMS::Key", "AWS::S3::Bucket"):
        for resource in templates["prod"].find_resources(kind).values():
            assert resource["DeletionPolicy"] == "Retain", kind
        for resource in templates["staging"].find_resources(kind).values():
            assert resource["DeletionPolicy"] == "Delete", kind


def test_service_url_is_a_stack_output(templates: dict[str, Template]) -> None:
    templates["prod"].has_output("ServiceUrl", {"Value": Match.any_value()})


def test_imported_cluster_uses_its_name_and_vpc(imported_synth: Synthesized) -> None:
    stage = imported_synth.stage("prod")
    assert stage.service.network is None, "no VPC of its own when the VPC is imported"
    template = Template.from_stack(stage.service)
    template.resource_count_is("AWS::ECS::Cluster", 0)
    template.resource_count_is("AWS::EC2::VPC", 0)
    service = _one(template, "AWS::ECS::Service")["Properties"]
    assert service["Cluster"] == "shared-services", "the name derived from the ARN, not the ARN"
    subnets = service["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"]
    assert subnets == ["subnet-00000000000000003", "subnet-00000000000000004"], "private subnets"
    template.has_resource_properties("AWS::EC2::SecurityGroup", {"VpcId": "vpc-0123456789abcdef0"})


def test_created_cluster_has_container_insights(templates: dict[str, Template]) -> None:
    templates["staging"].has_resource_properties(
        "AWS::ECS::Cluster",
        {
            "ClusterSettings": [
                {"Name": "containerInsights", "Value": Match.string_like_regexp("enabled|enhanced")}
            ]
        },
    )
