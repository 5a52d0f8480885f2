"""Waves: parallel targets in one pipeline stage, within CodePipeline's quotas."""

from __future__ import annotations

from pathlib import Path

import pytest

from configuration import ConfigError, load_config
from configuration.waves import MAX_ACTIONS_PER_STAGE, plan_waves
from ops.bench import fleet_config

from ..conftest import FIXTURES


def test_thirty_targets_fit_in_three_deployment_stages() -> None:
    waves = plan_waves(list(load_config(FIXTURES / "fleet30.toml").stages))
    assert [(w.name, len(w.stages), w.approval) for w in waves] == [
        ("canary", 1, False),
        ("wave-a", 14, True),
        ("wave-b", 15, True),
    ]
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
