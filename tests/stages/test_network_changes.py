"""Day two: changing a stage's network (NAT gateways, zones, CIDR) must never leave CloudFormation
unable to update a stack because another stack still imports a value that changes.

CloudFormation refuses to update or delete an export while another stack imports it ("Cannot
update export ... as it is in use by ..."):
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-stack-exports.html
The check below reads every template of two synthesized cloud assemblies, finds each export that
some stack imports, and reports it when the second assembly removes it or changes its value. A
value counts as changed when its expression changes, or when a resource it refers to changes its
properties (a replaced VPC keeps `Ref: Vpc` but gets a new id): deliberately cautious.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2

from components.cloud_assembly import read_stacks
from service.listener_guard import check, read_record, rendered_rules

from ..conftest import DEFAULT_CONFIG, Synthesized, synthesize

Templates = dict[str, dict[str, Any]]  # "account/region/stack name" -> template


def _templates(assembly: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for stack in read_stacks(assembly):
        yield f"{stack.account}/{stack.region}/{stack.name}", stack.template


def _references(value: Any) -> set[str]:
    """The logical ids an expression refers to (Ref, Fn::GetAtt)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                found.add(inner[0] if isinstance(inner, list) else str(inner).split(".")[0])
            else:
                found |= _references(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= _references(inner)
    return found


def _imports(value: Any) -> set[str]:
    if isinstance(value, dict):
        found = {json.dumps(value["Fn::ImportValue"])} if "Fn::ImportValue" in value else set()
        for inner in value.values():
            found |= _imports(inner)
        return found
    if isinstance(value, list):
        return set().union(*(_imports(inner) for inner in value)) if value else set()
    return set()


def _exports(templates: Templates) -> dict[str, str]:
    """Export (environment and name) -> its value with the properties of what it refers to."""
    exports: dict[str, str] = {}
    for key, template in templates.items():
        environment = key.rsplit("/", 1)[0]
        resources = template.get("Resources", {})
        for output in template.get("Outputs", {}).values():
            if "Export" not in output:
                continue
            value = output["Value"]
            referred = {
                logical_id: resources[logical_id].get("Properties")
                for logical_id in sorted(_references(value))
                if logical_id in resources
            }
            name = json.dumps(output["Export"]["Name"])
            exports[f"{environment}/{name}"] = json.dumps([value, referred], sort_keys=True)
    return exports


def wedging_changes(before: Path, after: Path) -> list[str]:
    """Each export imported by another stack in `before` that `after` removes or changes."""
    old, new = dict(_templates(before)), dict(_templates(after))
    old_exports, new_exports = _exports(old), _exports(new)
    problems = []
    for key, template in old.items():
        environment = key.rsplit("/", 1)[0]
        for name in sorted(_imports(template)):
            export = f"{environment}/{name}"
            if export not in new_exports:
                problems.append(f"{key} imports {name}, which the new templates no longer export")
            elif old_exports.get(export) != new_exports[export]:
                problems.append(f"{key} imports {name}, whose value the new templates change")
    return problems


def _network_changed(tmp_path: Path) -> Synthesized:
    """The default config with every stage's NAT gateways, zones and CIDR changed."""
    text = DEFAULT_CONFIG.read_text()
    three, two = '"eu-west-1a", "eu-west-1b", "eu-west-1c"]', '"eu-west-1a", "eu-west-1b"]'
    for old, new in [
        (f"{two}\napproval = false", f"{three}\napproval = false"),
        (f"{three}\napproval = true", f"{two}\napproval = true"),
        ('cidr = "10.10.0.0/16"\nnat_gateways = 1', 'cidr = "10.11.0.0/16"\nnat_gateways = 3'),
        ('cidr = "10.20.0.0/16"\nnat_gateways = 3', 'cidr = "10.21.0.0/16"\nnat_gateways = 1'),
    ]:
        assert old in text, old
        text = text.replace(old, new, 1)
    config = tmp_path / "network.toml"
    config.write_text(text)
    return synthesize(config, tmp_path / "cdk.out")


def test_network_changes_leave_no_export_in_use_changed(
    default_synth: Synthesized, tmp_path: Path
) -> None:
    changed = _network_changed(tmp_path)
    # The change really changes every stage's network...
    for old, new in zip(default_synth.config.stages, changed.config.stages, strict=True):
        assert old.network.cidr != new.network.cidr
        assert old.network.nat_gateways != new.network.nat_gateways
        assert old.availability_zones != new.availability_zones
    # ...and no stack imports a value that it removes or changes.
    assert wedging_changes(default_synth.outdir, changed.outdir) == []
    for key, template in _templates(changed.outdir):
        assert not _imports(template), f"{key} imports an export"
    # NAT gateways and zones change in place; only the new CIDR, which replaces the VPC and so the
    # target groups in it, would make CloudFormation rewrite the listener rules (refused at synth).
    verdict = check(rendered_rules(changed.outdir), read_record())
    assert verdict.changed and all("CidrBlock" in line for line in verdict.changed)


ENVIRONMENT = cdk.Environment(account="111111111111", region="eu-west-1")


class _Producer(cdk.Stack):
    def __init__(self, scope: cdk.App, *, cidr: str, nat_gateways: int, zones: list[str]) -> None:
        super().__init__(scope, "Producer", env=ENVIRONMENT)
        self._zones = zones
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(cidr),
            max_azs=len(zones),
            nat_gateways=nat_gateways,
        )

    @property
    def availability_zones(self) -> list[str]:
        return self._zones


def _split_stacks(outdir: Path, **network: Any) -> Path:
    """The design this project moved away from: the VPC in one stack, its user in another."""
    app = cdk.App(outdir=str(outdir))
    producer = _Producer(app, **network)
    consumer = cdk.Stack(app, "Consumer", env=ENVIRONMENT)
    ec2.SecurityGroup(consumer, "Tasks", vpc=producer.vpc)
    for index, subnet in enumerate(producer.vpc.private_subnets):
        cdk.CfnOutput(consumer, f"Subnet{index}", value=subnet.subnet_id)
    app.synth()
    return outdir


def test_the_check_catches_exports_that_a_network_change_breaks(tmp_path: Path) -> None:
    base = {"cidr": "10.0.0.0/16", "nat_gateways": 1, "zones": ["eu-west-1a", "eu-west-1b"]}
    before = _split_stacks(tmp_path / "before", **base)
    same = _split_stacks(tmp_path / "same", **base)
    assert wedging_changes(before, same) == []
    fewer_zones = _split_stacks(tmp_path / "zones", **{**base, "zones": ["eu-west-1a"]})
    assert any("no longer export" in p for p in wedging_changes(before, fewer_zones))
    new_cidr = _split_stacks(tmp_path / "cidr", **{**base, "cidr": "10.1.0.0/16"})
    assert any("change" in p for p in wedging_changes(before, new_cidr))
