"""Refuse, at synth, any change that would make CloudFormation rewrite a listener rule.

After a blue/green release ECS has rewritten each listener rule's forward to its own weights. If
CloudFormation later updates such a rule it writes the template's weights back (blue 100, green
0), and blue may have no tasks: production traffic goes to an empty target group
(aws/aws-cdk#36649). CloudFormation updates a rule when the rule's own properties change, and when
a resource it refers to is replaced, since the reference then resolves to a new ARN (a
container-port change replaces both target groups).

So the rules are fingerprinted: their properties, with every reference to a target group, a
listener, a load balancer or a VPC expanded into that resource's properties whose change requires
replacement (CloudFormation's "Update requires: Replacement", per resource reference page). The
fingerprints of deployed stacks are committed in `service/listener-rules.json`; `make synth`
refuses a config whose rules no longer match them. An intended change is accepted explicitly with
`make accept-listener-rules` (docs/releases.md, "Changing the listener rules").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.cloud_assembly import read_stacks

RECORD = Path(__file__).resolve().parent / "listener-rules.json"
LISTENER_RULE = "AWS::ElasticLoadBalancingV2::ListenerRule"
# The properties whose change replaces the resource, for the types a rule refers to directly or
# through them. Sources (each property's "Update requires: Replacement"):
# https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-elasticloadbalancingv2-targetgroup.html
# https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-elasticloadbalancingv2-listener.html
# https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-elasticloadbalancingv2-loadbalancer.html
# https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-ec2-vpc.html
REPLACED_BY: dict[str, frozenset[str]] = {
    "AWS::ElasticLoadBalancingV2::TargetGroup": frozenset(
        {"Name", "Port", "Protocol", "ProtocolVersion", "TargetType", "VpcId", "IpAddressType"}
    ),
    "AWS::ElasticLoadBalancingV2::Listener": frozenset({"LoadBalancerArn"}),
    "AWS::ElasticLoadBalancingV2::LoadBalancer": frozenset({"Name", "Scheme", "Type"}),
    "AWS::EC2::VPC": frozenset(
        {"CidrBlock", "InstanceTenancy", "Ipv4IpamPoolId", "Ipv4NetmaskLength"}
    ),
}


def _expand(value: Any, resources: dict[str, Any]) -> Any:
    """`value` with each Ref / Fn::GetAtt of a resource in REPLACED_BY replaced by that
    resource's type, logical id and replacement properties (themselves expanded)."""
    if isinstance(value, list):
        return [_expand(item, resources) for item in value]
    if not isinstance(value, dict):
        return value
    target = None
    if isinstance(value.get("Ref"), str):
        target = value["Ref"]
    elif "Fn::GetAtt" in value and isinstance(value["Fn::GetAtt"], list):
        target = value["Fn::GetAtt"][0]
    resource = resources.get(target) if target else None
    if resource is not None and resource["Type"] in REPLACED_BY:
        properties = resource.get("Properties", {})
        kept = {k: v for k, v in properties.items() if k in REPLACED_BY[resource["Type"]]}
        return {
            "Resource": target,
            "Type": resource["Type"],
            "Reference": value,
            "ReplacedBy": _expand(kept, resources),
        }
    return {key: _expand(inner, resources) for key, inner in value.items()}


def fingerprints(template: dict[str, Any]) -> dict[str, Any]:
    """Logical id -> fingerprint of every listener rule in `template`."""
    resources = template.get("Resources", {})
    return {
        logical_id: _expand(resource.get("Properties", {}), resources)
        for logical_id, resource in sorted(resources.items())
        if resource["Type"] == LISTENER_RULE
    }


def rendered_rules(cloud_assembly: Path) -> dict[str, dict[str, Any]]:
    """Stack name -> its rules' fingerprints, for every stack with listener rules in the assembly
    (the stages are nested assemblies)."""
    found: dict[str, dict[str, Any]] = {}
    for stack in read_stacks(cloud_assembly):
        rules = fingerprints(stack.template)
        if rules:
            found[stack.name] = rules
    return found


def read_record(path: Path | None = None) -> dict[str, dict[str, Any]]:
    path = path or RECORD
    return dict(json.loads(path.read_text())) if path.is_file() else {}


def write_record(rendered: dict[str, dict[str, Any]], path: Path | None = None) -> None:
    """Store `rendered` for its stacks, keeping every other stack's entry."""
    path = path or RECORD
    record = {**read_record(path), **rendered}
    path.write_text(json.dumps(dict(sorted(record.items())), indent=2, sort_keys=True) + "\n")


@dataclass(frozen=True)
class Verdict:
    changed: list[str] = field(default_factory=list)  # "stack: rule: what changed"
    unrecorded: list[str] = field(default_factory=list)  # stacks without an entry yet


def _differences(old: Any, new: Any, where: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new)):
            path = f"{where}.{key}" if where else key
            if key not in new:
                found.append(f"{path} removed")
            elif key not in old:
                found.append(f"{path} added")
            else:
                found += _differences(old[key], new[key], path)
        return found
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [
            d
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for d in _differences(a, b, f"{where}[{i}]")
        ]
    return [] if old == new else [f"{where}: {json.dumps(old)} -> {json.dumps(new)}"]


def check(rendered: dict[str, dict[str, Any]], record: dict[str, dict[str, Any]]) -> Verdict:
    """Compare the rules just synthesized with the recorded ones, stack by stack."""
    verdict = Verdict()
    for stack, rules in sorted(rendered.items()):
        recorded = record.get(stack)
        if recorded is None:
            verdict.unrecorded.append(stack)
            continue
        for logical_id in sorted(set(recorded) | set(rules)):
            if logical_id not in rules:
                verdict.changed.append(f"{stack}: rule {logical_id} would be deleted")
            elif logical_id not in recorded:
                verdict.changed.append(f"{stack}: rule {logical_id} would be added")
            else:
                for difference in _differences(recorded[logical_id], rules[logical_id]):
                    verdict.changed.append(f"{stack}: rule {logical_id}: {difference}")
    return verdict
