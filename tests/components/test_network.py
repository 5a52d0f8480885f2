"""The network of every stage: a VPC across the configured zones, from config alone, in the
stage's one stack."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match, Template

from ..conftest import Synthesized

ZONES = {
    "staging": ["eu-west-1a", "eu-west-1b"],
    "prod": ["eu-west-1a", "eu-west-1b", "eu-west-1c"],
}
NATS = {"staging": 1, "prod": 3}
CIDRS = {"staging": "10.10.0.0/16", "prod": "10.20.0.0/16"}


@pytest.fixture(scope="module")
def templates(default_synth: Synthesized) -> dict[str, Template]:
    result = {}
    for stage in default_synth.stack.stages:
        assert stage.service.network is not None
        result[stage.stage_name] = Template.from_stack(stage.service)
    return result


@pytest.mark.parametrize("stage", ZONES)
def test_vpc_spans_exactly_the_configured_zones(templates: dict[str, Template], stage: str) -> None:
    template = templates[stage]
    template.has_resource_properties("AWS::EC2::VPC", {"CidrBlock": CIDRS[stage]})
    zones = sorted(
        {
            s["Properties"]["AvailabilityZone"]
            for s in template.find_resources("AWS::EC2::Subnet").values()
        }
    )
    assert zones == ZONES[stage]
    template.resource_count_is("AWS::EC2::Subnet", 2 * len(ZONES[stage]))
    template.resource_count_is("AWS::EC2::NatGateway", NATS[stage])


@pytest.mark.parametrize("stage", ZONES)
def test_no_subnet_assigns_public_ips(templates: dict[str, Template], stage: str) -> None:
    for subnet in templates[stage].find_resources("AWS::EC2::Subnet").values():
        assert subnet["Properties"]["MapPublicIpOnLaunch"] is False


@pytest.mark.parametrize("stage", ZONES)
def test_flow_logs_go_to_an_encrypted_log_group(templates: dict[str, Template], stage: str) -> None:
    templates[stage].has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "ALL"})
    templates[stage].has_resource_properties(
        "AWS::Logs::LogGroup", {"KmsKeyId": Match.any_value(), "RetentionInDays": 90}
    )


@pytest.mark.parametrize("stage", ZONES)
def test_default_security_group_is_locked_down(templates: dict[str, Template], stage: str) -> None:
    # CDK removes the default group's rules with a custom resource.
    templates[stage].resource_count_is("Custom::VpcRestrictDefaultSG", 1)


def test_synthesis_needed_no_context_lookup(default_synth: Synthesized) -> None:
    import json

    for path in default_synth.outdir.rglob("manifest.json"):
        assert "missing" not in json.loads(path.read_text()), f"{path} asks for a context lookup"
