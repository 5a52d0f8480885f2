"""How long a release of one stage takes, modelled from the values in its synthesized service
template: health checks, grace period, draining, the deployment strategy and its steps, the
lifecycle hooks and the bake time.

The model is written down in docs/releases.md ("How long a release takes") and printed by
`make bench`.
Reading the template rather than the config means the model describes what CloudFormation will be
asked to do. Assumptions that no template value fixes are named as such below.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from configuration import DeploymentConfig

# Assumed, not configured: Fargate placement, image pull and container start of a small image.
TASK_START_SECONDS = 45
# A passing smoke-test hook: one round, a few requests against a warm service.
SMOKE_TEST_SECONDS = 5
# ECS moving listener-rule weights (one ModifyRule call and its propagation).
SHIFT_SECONDS = 10


class TemplateError(ValueError):
    """The template is not a service template this model understands; str() says why."""


@dataclass(frozen=True)
class ServiceTimings:
    """The values of one service template that decide how long a release takes."""

    strategy: str  # BLUE_GREEN, CANARY or LINEAR
    bake_minutes: int
    grace_seconds: int
    health_check_interval_seconds: int
    healthy_threshold: int
    deregistration_delay_seconds: int
    hook_stages: tuple[str, ...]
    alarm_periods: int  # the slowest deployment alarm's evaluation periods
    alarm_period_seconds: int  # and its period
    step_percent: int | None = None  # the canary's share, or each linear step's
    step_minutes: int | None = None

    @property
    def alarm_seconds(self) -> int:
        """How long the slowest deployment alarm needs to see a breach."""
        return self.alarm_periods * self.alarm_period_seconds

    @classmethod
    def from_template(cls, template: dict[str, Any]) -> ServiceTimings:
        resources = list(template.get("Resources", {}).values())
        services = [r for r in resources if r["Type"] == "AWS::ECS::Service"]
        groups = [r for r in resources if r["Type"] == "AWS::ElasticLoadBalancingV2::TargetGroup"]
        if len(services) != 1 or not groups:
            raise TemplateError(
                f"expected one ECS service and its target groups, found {len(services)} "
                f"service(s) and {len(groups)} target group(s)"
            )
        service = services[0]["Properties"]
        deployment = service.get("DeploymentConfiguration", {})
        strategy = str(deployment.get("Strategy", "ROLLING"))
        step_percent = step_minutes = None
        if strategy == "CANARY":
            canary = deployment["CanaryConfiguration"]
            step_percent = int(canary["CanaryPercent"])
            step_minutes = int(canary["CanaryBakeTimeInMinutes"])
        elif strategy == "LINEAR":
            linear = deployment["LinearConfiguration"]
            step_percent = int(linear["StepPercent"])
            step_minutes = int(linear["StepBakeTimeInMinutes"])
        elif strategy != "BLUE_GREEN":
            raise TemplateError(f"deployment strategy {strategy}: expected a blue/green release")

        def group_value(read: Any) -> int:
            # Blue and green are built alike; the slower of them bounds the release.
            return max(int(read(group["Properties"])) for group in groups)

        def delay(properties: dict[str, Any]) -> str:
            attributes = {a["Key"]: a["Value"] for a in properties.get("TargetGroupAttributes", [])}
            return str(attributes.get("deregistration_delay.timeout_seconds", "300"))  # ELB default

        slowest = max(
            (_alarm_window(r["Properties"]) for r in resources if r["Type"] == ALARM),
            key=lambda window: (window[0] * window[1], window[1]),
            default=(0, 0),
        )
        return cls(
            strategy=strategy,
            bake_minutes=int(deployment.get("BakeTimeInMinutes", 0)),
            grace_seconds=int(service.get("HealthCheckGracePeriodSeconds", 0)),
            health_check_interval_seconds=group_value(
                lambda p: p.get("HealthCheckIntervalSeconds", 30)  # ELB's default
            ),
            healthy_threshold=group_value(lambda p: p.get("HealthyThresholdCount", 5)),
            deregistration_delay_seconds=group_value(delay),
            hook_stages=tuple(
                stage
                for hook in deployment.get("LifecycleHooks", [])
                for stage in hook.get("LifecycleStages", [])
            ),
            alarm_periods=slowest[0],
            alarm_period_seconds=slowest[1],
            step_percent=step_percent,
            step_minutes=step_minutes,
        )


ALARM = "AWS::CloudWatch::Alarm"
# How late a load balancer datapoint can reach CloudWatch: "If there are requests flowing through
# the load balancer, Elastic Load Balancing measures and sends its metrics in 60-second intervals"
# (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-cloudwatch-metrics.html),
# so a minute's datapoint can arrive up to one interval after the minute ends. Every deployment
# alarm here reads AWS/ApplicationELB metrics. AWS documents no tighter bound; if real alarms are
# slower, raise this value and the minimum bake below follows.
PUBLICATION_DELAY_SECONDS = 60


def _alarm_window(alarm: dict[str, Any]) -> tuple[int, int]:
    """An alarm's evaluation periods and its period (for a metric-math alarm, the longest period
    of the metrics it combines): it needs their product to see a breach."""
    periods = [int(alarm["Period"])] if "Period" in alarm else []
    periods += [
        int(m["MetricStat"]["Period"]) for m in alarm.get("Metrics", []) if "MetricStat" in m
    ]
    period = max(periods, default=0)
    return int(alarm["EvaluationPeriods"]), period


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: int


def release_phases(timings: ServiceTimings) -> list[Phase]:
    """The sequential phases of a successful release."""
    healthy = max(
        timings.grace_seconds,
        timings.healthy_threshold * timings.health_check_interval_seconds,
    )
    phases = [
        Phase("start green tasks (assumed)", TASK_START_SECONDS),
        Phase("green passes load balancer health checks", healthy),
        Phase("test traffic to green", SHIFT_SECONDS),
    ]
    phases += [
        Phase(f"lifecycle hook at {stage} (smoke test)", SMOKE_TEST_SECONDS)
        for stage in timings.hook_stages
    ]
    if timings.step_percent is not None and timings.step_minutes is not None:
        kind = timings.strategy.lower()
        steps = 1 if kind == "canary" else math.ceil(100 / timings.step_percent) - 1
        phases.append(
            Phase(
                f"{kind} steps ({steps} x {timings.step_minutes} min)",
                steps * (timings.step_minutes * 60 + SHIFT_SECONDS),
            )
        )
    phases.append(Phase("production traffic to green", SHIFT_SECONDS))
    phases.append(Phase("bake time (alarms watch, blue stands by)", timings.bake_minutes * 60))
    phases.append(Phase("drain and stop blue", timings.deregistration_delay_seconds))
    return phases


def release_seconds(timings: ServiceTimings) -> int:
    return sum(phase.seconds for phase in release_phases(timings))


def rollback_detection_seconds(timings: ServiceTimings) -> int:
    """Worst case from a bad release taking traffic to its deployment alarm firing: production
    traffic can move to green in the middle of a period, whose datapoint then mixes blue and green
    and may not breach (one period), then the slowest alarm's evaluation window of full bad
    periods, then the delay before the last of them reaches CloudWatch."""
    return timings.alarm_period_seconds + timings.alarm_seconds + PUBLICATION_DELAY_SECONDS


def minimum_bake_minutes(timings: ServiceTimings) -> int:
    """The shortest bake in which the deployment alarms can still roll a bad release back: ECS
    acts on an alarm only while the deployment is in progress, and the bake is its last part."""
    return math.ceil(rollback_detection_seconds(timings) / 60)


def bake_problems(config: DeploymentConfig, cloud_assembly: Path) -> list[str]:
    """One sentence per stage whose `bake_minutes` is shorter than its synthesized alarms need,
    naming the field and the minimum (app.py refuses the config with these)."""
    templates = service_templates(cloud_assembly)
    problems = []
    for index, stage in enumerate(config.stages):
        timings = ServiceTimings.from_template(templates[stage.name])
        minimum = minimum_bake_minutes(timings)
        if stage.release.bake_minutes < minimum:
            problems.append(
                f"stages[{index}].release.bake_minutes = {stage.release.bake_minutes}: stage "
                f"'{stage.name}' must bake at least {minimum} minutes. Its slowest deployment "
                f"alarm needs {timings.alarm_periods} periods of "
                f"{timings.alarm_period_seconds} s, plus one period in which traffic moves and "
                f"{PUBLICATION_DELAY_SECONDS} s before load balancer metrics reach CloudWatch "
                f"({rollback_detection_seconds(timings)} s), and ECS rolls back on an alarm only "
                f"until the bake ends; set bake_minutes = {minimum} or more."
            )
    return problems


def service_templates(cloud_assembly: Path) -> dict[str, dict[str, Any]]:
    """Each stage's service template in a synthesized cloud assembly, by stage name (the stages
    are nested assemblies; their service stacks are the `<stage>/Service` constructs)."""
    templates: dict[str, dict[str, Any]] = {}
    root = json.loads((cloud_assembly / "manifest.json").read_text())["artifacts"]
    for nested in root.values():  # in the order the stages were added
        if nested["type"] != "cdk:cloud-assembly":
            continue
        manifest = cloud_assembly / nested["properties"]["directoryName"] / "manifest.json"
        for artifact in json.loads(manifest.read_text())["artifacts"].values():
            path = str(artifact.get("displayName", "")).split("/")
            if artifact["type"] == "aws:cloudformation:stack" and path[-1] == "Service":
                template_file = manifest.parent / artifact["properties"]["templateFile"]
                templates[path[-2]] = json.loads(template_file.read_text())
    return templates
