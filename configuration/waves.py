"""How the configured stages become pipeline stages (waves), within CodePipeline's quotas.

Consecutive stages that name the same `wave` deploy in parallel, in one pipeline stage, after one
approval if any of them asks for it. A wave with more actions than one pipeline stage may hold is
split into parts that fit; a fleet that needs more pipeline stages than a pipeline may have is
refused. Both are decided here, before anything is built, from the same counts the pipeline uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from configuration.model import StageConfig

# CodePipeline's fixed quotas (not raisable): actions per stage, and stages per pipeline.
MAX_ACTIONS_PER_STAGE = 50
MAX_STAGES_PER_PIPELINE = 50
# Source, Build (synth), UpdatePipeline, Assets.
FIXED_STAGES = 4


@dataclass(frozen=True)
class Wave:
    """One pipeline stage: the targets it deploys in parallel, and whether an approval leads."""

    name: str
    stages: tuple[StageConfig, ...]
    approval: bool
    # The first pipeline stage after the assets also runs the security scan, before the rest.
    scan: bool = False

    @property
    def actions(self) -> int:
        own = int(self.approval) + int(self.scan)
        return own + sum(actions_for(stage) for stage in self.stages)

    @property
    def standalone(self) -> bool:
        """A wave of one target: CDK Pipelines lays it out as a plain stage named after it."""
        return len(self.stages) == 1

    @property
    def stage_name(self) -> str:
        """The pipeline stage's name: a standalone target's own, otherwise the wave's."""
        return self.stages[0].name if self.standalone else self.name

    def step_prefix(self, stage: StageConfig) -> str:
        """Where CDK Pipelines puts the construct of a target's step (construct path segment):
        `<stage>/` for a standalone target, `<wave>/<stage>.` inside a wave of several."""
        return f"{stage.name}/" if self.standalone else f"{self.name}/{stage.name}."


class WaveError(ValueError):
    """The fleet cannot be laid out within CodePipeline's quotas; str() says why."""


def actions_for(stage: StageConfig) -> int:
    """Pipeline actions one target adds: the deploy of its one stack, the smoke test, and for
    production the termination-protection step (stacks/pipeline.py adds it for stacks with
    termination protection, which stages/deployment.py turns on for production stages)."""
    return 1 + 1 + int(stage.production)


def plan_waves(stages: list[StageConfig]) -> list[Wave]:
    groups: list[tuple[str, list[StageConfig]]] = []
    for stage in stages:
        name = stage.wave or stage.name
        if stage.wave and groups and groups[-1][0] == name:
            groups[-1][1].append(stage)
        else:
            groups.append((name, [stage]))
    waves: list[Wave] = []
    for name, members in groups:
        approval = any(stage.approval for stage in members)
        scan = not waves
        room = MAX_ACTIONS_PER_STAGE - int(approval)
        parts = _split(members, room, first_room=room - int(scan))
        for index, part in enumerate(parts, start=1):
            label = name if len(parts) == 1 else f"{name}-{index}"
            # Only the first part waits for the approval (and runs the scan); the rest follow.
            first = index == 1
            waves.append(Wave(label, tuple(part), approval and first, scan=scan and first))
    total = FIXED_STAGES + len(waves)
    if total > MAX_STAGES_PER_PIPELINE:
        raise WaveError(
            f"{len(stages)} targets need {len(waves)} deployment stages, {total} pipeline stages "
            f"in all, but a pipeline holds at most {MAX_STAGES_PER_PIPELINE}: group targets into "
            'waves (`wave = "name"` on consecutive stages) so they deploy in parallel'
        )
    return waves


def _split(stages: list[StageConfig], room: int, first_room: int) -> list[list[StageConfig]]:
    parts: list[list[StageConfig]] = [[]]
    used = 0
    for stage in stages:
        cost = actions_for(stage)
        if parts[-1] and used + cost > (first_room if len(parts) == 1 else room):
            parts.append([])
            used = 0
        parts[-1].append(stage)
        used += cost
    return parts
