"""The listener-rule guard (aws/aws-cdk#36649): routine releases pass, anything that makes
CloudFormation rewrite a rule (its own properties, or a replaced target group, listener, load
balancer or VPC it refers to) is refused at synth unless accepted on purpose."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

import app
from service import listener_guard
from service.listener_guard import check, fingerprints, read_record, rendered_rules

from ..conftest import DEFAULT_CONFIG, Synthesized, synthesize


def _template(port: int = 8080, cidr: str = "10.0.0.0/16", priority: int = 1) -> dict[str, Any]:
    group = {
        "Type": "AWS::ElasticLoadBalancingV2::TargetGroup",
        "Properties": {
            "Port": port,
            "Protocol": "HTTP",
            "VpcId": {"Ref": "Vpc"},
            "HealthCheckIntervalSeconds": 5,
        },
    }
    return {
        "Resources": {
            "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": cidr, "Tags": []}},
            "Blue": group,
            "Listener": {
                "Type": "AWS::ElasticLoadBalancingV2::Listener",
                "Properties": {"LoadBalancerArn": {"Ref": "Lb"}, "Port": 443},
            },
            "Lb": {
                "Type": "AWS::ElasticLoadBalancingV2::LoadBalancer",
                "Properties": {"Scheme": "internet-facing", "Type": "application"},
            },
            "Rule": {
                "Type": "AWS::ElasticLoadBalancingV2::ListenerRule",
                "Properties": {
                    "ListenerArn": {"Ref": "Listener"},
                    "Priority": priority,
                    "Actions": [
                        {
                            "Type": "forward",
                            "ForwardConfig": {
                                "TargetGroups": [{"TargetGroupArn": {"Ref": "Blue"}, "Weight": 100}]
                            },
                        }
                    ],
                },
            },
        }
    }


def _verdict(before: dict[str, Any], after: dict[str, Any]) -> listener_guard.Verdict:
    return check({"stack": fingerprints(after)}, {"stack": fingerprints(before)})


def test_changes_that_rewrite_a_rule_are_found() -> None:
    base = _template()
    assert _verdict(base, copy.deepcopy(base)).changed == []
    # In-place changes of what the rule refers to do not touch the rule.
    tweaked = copy.deepcopy(base)
    tweaked["Resources"]["Blue"]["Properties"]["HealthCheckIntervalSeconds"] = 10
    tweaked["Resources"]["Listener"]["Properties"]["Port"] = 8443
    assert _verdict(base, tweaked).changed == []
    # The rule's own properties, a replaced target group, a replaced VPC under it.
    [priority] = _verdict(base, _template(priority=2)).changed
    assert priority == "stack: rule Rule: Priority: 1 -> 2"
    [port] = _verdict(base, _template(port=8081)).changed
    assert "TargetGroupArn.ReplacedBy.Port: 8080 -> 8081" in port
    [cidr] = _verdict(base, _template(cidr="10.1.0.0/16")).changed
    assert "VpcId.ReplacedBy.CidrBlock" in cidr
    # A rule that disappears (or appears) is a change too; an unknown stack is unrecorded.
    empty = {"Resources": {}}
    assert _verdict(base, empty).changed == ["stack: rule Rule would be deleted"]
    assert check({"other": fingerprints(base)}, {}).unrecorded == ["other"]


def test_the_committed_record_matches_the_default_config(default_synth: Synthesized) -> None:
    """Otherwise `make synth` (and the pipeline) would refuse the default config."""
    verdict = check(rendered_rules(default_synth.outdir), read_record())
    assert verdict.changed == [] and verdict.unrecorded == []
    assert set(read_record()) >= {"webapp-staging-service", "webapp-prod-service"}


def test_a_container_port_change_is_refused(default_synth: Synthesized, tmp_path: Path) -> None:
    config = tmp_path / "port.toml"
    text = DEFAULT_CONFIG.read_text()
    anchor = "cpu = 512\nmemory = 1024\n"
    assert anchor in text
    config.write_text(text.replace(anchor, anchor + "container_port = 8081\n"))
    changed = synthesize(config, tmp_path / "cdk.out")
    verdict = check(rendered_rules(changed.outdir), read_record())
    assert verdict.changed, "a port change replaces both target groups under the prod rules"
    assert all(line.startswith("webapp-prod-service: ") for line in verdict.changed)
    assert any("Port: 8080 -> 8081" in line for line in verdict.changed)


def test_synth_refuses_records_or_notes_by_mode(
    default_synth: Synthesized,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    record = tmp_path / "listener-rules.json"
    monkeypatch.setattr(listener_guard, "RECORD", record)
    monkeypatch.delenv("CODEBUILD_BUILD_ID", raising=False)
    # Unrecorded: a note locally, a refusal in the pipeline (CodeBuild).
    assert app._listener_rules_unchanged(default_synth.outdir, accept=False)
    assert "note: the listener rules of webapp-prod-service" in capsys.readouterr().err
    monkeypatch.setenv("CODEBUILD_BUILD_ID", "webapp:1")
    assert not app._listener_rules_unchanged(default_synth.outdir, accept=False)
    assert "error: the listener rules of" in capsys.readouterr().err
    # Accepting records them; then they pass, and a different rule is refused.
    assert app._listener_rules_unchanged(default_synth.outdir, accept=True)
    assert app._listener_rules_unchanged(default_synth.outdir, accept=False)
    stored = json.loads(record.read_text())
    rule = next(iter(stored["webapp-prod-service"]))
    stored["webapp-prod-service"][rule]["Priority"] = 7
    record.write_text(json.dumps(stored))
    assert not app._listener_rules_unchanged(default_synth.outdir, accept=False)
    error = capsys.readouterr().err
    assert "aws/aws-cdk#36649" in error and f"rule {rule}: Priority: 7 -> 1" in error
    assert "make accept-listener-rules" in error
