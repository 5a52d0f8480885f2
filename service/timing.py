"""How long a release of one stage takes, modelled from the values the stacks are built with.

The model is written down in README ("How long a release takes") and printed by `make bench`.
Assumptions that no template value fixes are named as such below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from configuration import StageConfig
from service.infrastructure import (
    DEREGISTRATION_DELAY_SECONDS,
    HEALTH_CHECK_GRACE_SECONDS,
    HEALTH_CHECK_INTERVAL_SECONDS,
    HEALTHY_THRESHOLD,
)

# Assumed, not configured: Fargate placement, image pull and container start of a small image.
TASK_START_SECONDS = 45
# A passing smoke test: one round, a few requests against a warm service.
SMOKE_TEST_SECONDS = 5
# ECS moving listener-rule weights (one ModifyRule call and its propagation).
SHIFT_SECONDS = 10


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: int


def release_phases(stage: StageConfig) -> list[Phase]:
    """The sequential phases of a successful release of `stage`."""
    release = stage.release
    healthy = max(HEALTH_CHECK_GRACE_SECONDS, HEALTHY_THRESHOLD * HEALTH_CHECK_INTERVAL_SECONDS)
    phases = [
        Phase("start green tasks (assumed)", TASK_START_SECONDS),
        Phase("green passes load balancer health checks", healthy),
        Phase("test traffic to green", SHIFT_SECONDS),
        Phase("smoke-test hook on green", SMOKE_TEST_SECONDS),
    ]
    if release.strategy == "blue_green":
        phases.append(Phase("production traffic to green", SHIFT_SECONDS))
    else:
        percent = release.canary_percent if release.strategy == "canary" else release.linear_percent
        steps = 1 if release.strategy == "canary" else math.ceil(100 / percent) - 1
        phases.append(
            Phase(
                f"{release.strategy} steps ({steps} x {release.step_minutes} min)",
                steps * (release.step_minutes * 60 + SHIFT_SECONDS),
            )
        )
        phases.append(Phase("production traffic to green", SHIFT_SECONDS))
    phases.append(Phase("bake time (alarms watch, blue stands by)", release.bake_minutes * 60))
    phases.append(Phase("drain and stop blue", DEREGISTRATION_DELAY_SECONDS))
    return phases


def release_seconds(stage: StageConfig) -> int:
    return sum(phase.seconds for phase in release_phases(stage))


def rollback_detection_seconds() -> int:
    """Worst case from a bad release taking traffic to its alarm firing: two one-minute periods,
    plus CloudWatch's publication delay of about a minute (assumed)."""
    return 2 * 60 + 60
