"""The release-duration model reads the synthesized service templates: strategy, steps, hooks,
health checks, grace period, draining and bake time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from configuration import DeploymentConfig, load_config
from service.timing import (
    ServiceTimings,
    TemplateError,
    bake_problems,
    minimum_bake_minutes,
    release_phases,
    release_seconds,
    rollback_detection_seconds,
    service_templates,
)

from ..conftest import DEFAULT_CONFIG, FIXTURES, Synthesized


def _timings(synthesized: Synthesized) -> dict[str, ServiceTimings]:
    return {
        name: ServiceTimings.from_template(template)
        for name, template in service_templates(synthesized.outdir).items()
    }


def test_blue_green_release_is_dominated_by_the_bake_time(default_synth: Synthesized) -> None:
    timings = _timings(default_synth)
    assert list(timings) == ["staging", "prod"]  # pipeline order
    staging, prod = timings["staging"], timings["prod"]
    assert staging.hook_stages == ("POST_TEST_TRAFFIC_SHIFT",)
    # start, health (grace 15 s > 2 x 5 s), test shift, hook, production shift, bake, drain
    assert release_seconds(staging) == 45 + 15 + 10 + 5 + 10 + 4 * 60 + 10
    assert release_seconds(prod) - release_seconds(staging) == (10 - 4) * 60
    names = [phase.name for phase in release_phases(prod)]
    assert names.index("lifecycle hook at POST_TEST_TRAFFIC_SHIFT (smoke test)") < names.index(
        "production traffic to green"
    )


def test_canary_and_linear_add_their_steps(
    imported_synth: Synthesized, synth: Callable[..., Synthesized]
) -> None:
    canary = _timings(imported_synth)["prod"]
    linear = _timings(synth(FIXTURES / "five-stages.toml", suffix="-blue"))["prod"]
    assert (canary.strategy, canary.step_percent, canary.step_minutes) == ("CANARY", 10, 3)
    assert any(p.name == "canary steps (1 x 3 min)" for p in release_phases(canary))
    assert (linear.strategy, linear.step_percent) == ("LINEAR", 20)
    assert any(p.name == "linear steps (4 x 1 min)" for p in release_phases(linear))


def test_values_come_from_the_template_with_elb_defaults_where_unset() -> None:
    template = _stage_alarm_template(
        {
            "EvaluationPeriods": 3,
            "Metrics": [{"Id": "e"}, {"Id": "m", "MetricStat": {"Period": 300}}],
        }
    )
    slow = ServiceTimings.from_template(template)
    assert slow.alarm_seconds == 3 * 300
    assert (slow.health_check_interval_seconds, slow.healthy_threshold) == (30, 5)
    assert slow.deregistration_delay_seconds == 300
    assert release_seconds(slow) == 45 + 150 + 10 + 10 + 0 + 300


def test_a_template_without_a_blue_green_service_is_refused() -> None:
    with pytest.raises(TemplateError, match="one ECS service"):
        ServiceTimings.from_template({"Resources": {}})
    rolling = {
        "Resources": {
            "Service": {"Type": "AWS::ECS::Service", "Properties": {}},
            "Group": {"Type": "AWS::ElasticLoadBalancingV2::TargetGroup", "Properties": {}},
        }
    }
    with pytest.raises(TemplateError, match="ROLLING"):
        ServiceTimings.from_template(rolling)


def test_alarms_fire_well_within_the_shortest_bake_time(default_synth: Synthesized) -> None:
    for timings in _timings(default_synth).values():
        # Two one-minute periods, as service/monitoring.py builds them, plus the delay.
        assert timings.alarm_seconds == 2 * 60
        assert rollback_detection_seconds(timings) <= timings.bake_minutes * 60


def _stage_alarm_template(alarm: dict[str, Any]) -> dict[str, Any]:
    """A blue/green service with default target-group settings and one alarm of `alarm`'s
    properties."""
    return {
        "Resources": {
            "Service": {
                "Type": "AWS::ECS::Service",
                "Properties": {"DeploymentConfiguration": {"Strategy": "BLUE_GREEN"}},
            },
            "Group": {"Type": "AWS::ElasticLoadBalancingV2::TargetGroup", "Properties": {}},
            "Alarm": {"Type": "AWS::CloudWatch::Alarm", "Properties": alarm},
        }
    }


def test_the_minimum_bake_follows_the_alarms_in_the_template() -> None:
    # One period of mixed traffic, the evaluation window, 60 s of metric delivery.
    assert (
        minimum_bake_minutes(
            ServiceTimings.from_template(
                _stage_alarm_template({"EvaluationPeriods": 2, "Period": 60})
            )
        )
        == 4
    )
    slow = ServiceTimings.from_template(
        _stage_alarm_template({"EvaluationPeriods": 3, "Period": 300})
    )
    assert rollback_detection_seconds(slow) == 300 + 900 + 60
    assert minimum_bake_minutes(slow) == 21


def _config(tmp_path: Path, staging_bake: int) -> DeploymentConfig:
    path = tmp_path / f"bake{staging_bake}.toml"
    text = DEFAULT_CONFIG.read_text()
    assert "bake_minutes = 4 " in text
    path.write_text(text.replace("bake_minutes = 4 ", f"bake_minutes = {staging_bake} ", 1))
    return load_config(path)


def test_a_bake_shorter_than_the_synthesized_alarms_need_is_refused(
    default_synth: Synthesized, tmp_path: Path
) -> None:
    minima = {n: minimum_bake_minutes(t) for n, t in _timings(default_synth).items()}
    assert minima == {"staging": 4, "prod": 4}
    # The edge, from both sides: 4 minutes pass, 3 are refused with the minimum named.
    assert bake_problems(_config(tmp_path, 4), default_synth.outdir) == []
    [problem] = bake_problems(_config(tmp_path, 3), default_synth.outdir)
    assert problem.startswith("stages[0].release.bake_minutes = 3: stage 'staging' must bake")
    assert "at least 4 minutes" in problem and "bake_minutes = 4 or more" in problem
