"""The release-duration model follows the configured strategy and the stacks' timing values."""

from __future__ import annotations

from configuration import DeploymentConfig, load_config
from service.timing import release_phases, release_seconds, rollback_detection_seconds

from ..conftest import FIXTURES


def test_blue_green_release_is_dominated_by_the_bake_time(default_config: DeploymentConfig) -> None:
    staging, prod = default_config.stages
    assert release_seconds(staging) == 45 + 15 + 10 + 5 + 10 + 180 + 10
    assert release_seconds(prod) - release_seconds(staging) == 7 * 60
    names = [phase.name for phase in release_phases(prod)]
    assert names.index("smoke-test hook on green") < names.index("production traffic to green")


def test_canary_and_linear_add_their_steps() -> None:
    canary = load_config(FIXTURES / "imported.toml").stages[1]
    linear = load_config(FIXTURES / "five-stages.toml").stages[4]
    assert any(p.name == "canary steps (1 x 3 min)" for p in release_phases(canary))
    assert any(p.name == "linear steps (4 x 1 min)" for p in release_phases(linear))


def test_alarms_fire_well_within_the_shortest_bake_time(default_config: DeploymentConfig) -> None:
    shortest = min(stage.release.bake_minutes for stage in default_config.stages) * 60
    assert rollback_detection_seconds() <= shortest
