"""Waves: parallel targets in one pipeline stage, within CodePipeline's quotas."""

from __future__ import annotations

from pathlib import Path

import pytest

from configuration import ConfigError, load_config
from configuration.model import StageConfig
from configuration.waves import MAX_ACTIONS_PER_STAGE, actions_for, plan_waves
from ops.bench import fleet_config

from ..conftest import FIXTURES


def test_thirty_targets_fit_in_three_deployment_stages() -> None:
    waves = plan_waves(list(load_config(FIXTURES / "fleet30.toml").stages))
    assert [(w.name, len(w.stages), w.approval) for w in waves] == [
        ("canary", 1, False),
        ("wave-a", 14, True),
        ("wave-b", 15, True),
    ]
    # A wave of one target is laid out as a stage named after the target.
    assert [w.stage_name for w in waves] == ["t00", "wave-a", "wave-b"]
    assert all(w.actions <= MAX_ACTIONS_PER_STAGE for w in waves)


def test_a_wave_too_large_for_one_stage_is_split(tmp_path: Path) -> None:
    config = load_config(fleet_config(20, directory=tmp_path, wave="all", production=True))
    waves = plan_waves(list(config.stages))
    assert [w.name for w in waves] == ["all-1", "all-2"]
    assert [len(w.stages) for w in waves] == [16, 4]  # 3 actions per production target
    assert all(w.actions <= MAX_ACTIONS_PER_STAGE for w in waves)


def test_a_fleet_that_needs_too_many_pipeline_stages_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"47 targets need 47 deployment stages, 51 pipeline stages .* at most 50: group targets into waves",
    ):
        load_config(fleet_config(47, directory=tmp_path, wave=None))
    assert (
        len(plan_waves(list(load_config(fleet_config(46, directory=tmp_path, wave=None)).stages)))
        == 46
    )


def test_the_stages_of_a_wave_must_be_adjacent(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"stages\[2\]\.wave = 'ww': the stages of a wave must be next to each other",
    ):
        load_config(fleet_config(3, directory=tmp_path, wave=["ww", "other", "ww"]))


def _mixed_wave(tmp_path: Path, *, after_a_target: bool) -> list[StageConfig]:
    """A wave of exactly 50 actions (25 non-production targets x 2), alone or after one
    standalone target."""
    stages = list(load_config(fleet_config(26, directory=tmp_path, wave="all")).stages)
    stages = [stage.model_copy(update={"production": False}) for stage in stages]
    first, wave = stages[0], stages[1:]
    return [first.model_copy(update={"wave": None}), *wave] if after_a_target else wave


def test_the_security_scan_counts_in_the_first_stage_after_the_assets(tmp_path: Path) -> None:
    waves = plan_waves(_mixed_wave(tmp_path, after_a_target=True))
    assert [(w.name, w.scan) for w in waves] == [("target00", True), ("all", False)]
    assert [w.actions for w in waves] == [3, 50]  # the first target's 2 and the scan
    # The same 50 actions first in line leave no room for the scan: the wave is split.
    waves = plan_waves(_mixed_wave(tmp_path, after_a_target=False))
    assert [(w.name, w.scan) for w in waves] == [("all-1", True), ("all-2", False)]
    assert all(w.actions <= MAX_ACTIONS_PER_STAGE for w in waves)
    assert waves[0].actions == 1 + sum(actions_for(s) for s in waves[0].stages)
