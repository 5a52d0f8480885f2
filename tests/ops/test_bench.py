"""The benchmark's own arithmetic (its timings are measured by `make bench`, not asserted)."""

from __future__ import annotations

from pathlib import Path

from configuration import load_config
from ops.bench import (
    critical_path,
    fleet_config,
    modelled_releases,
    progress,
    release_table,
    scan_position,
)
from ops.diagram import pipeline_template, read_stages

from ..conftest import ROOT, Synthesized


def test_critical_path_counts_sequential_actions(default_synth: Synthesized) -> None:
    total, by_stage = critical_path(read_stages(pipeline_template(default_synth.outdir)))
    assert dict(by_stage) == {
        "Source": 1,
        "Build": 1,
        "UpdatePipeline": 1,
        "Assets": 1,  # one publishing action per asset type, in parallel
        "staging": 3,  # the security scan of what was published, the stage's stack, smoke test
        "prod": 3,  # approval, the stage's stack, smoke test with termination protection
    }
    assert total == 10


def test_the_report_says_where_the_scan_sits(default_synth: Synthesized) -> None:
    stages = read_stages(pipeline_template(default_synth.outdir))
    assert scan_position(stages) == "staging, step 1 of 3"
    assert scan_position(stages[:4]) == "not found"


def test_fleet_configs_are_valid(tmp_path: Path) -> None:
    config = load_config(fleet_config(12, directory=tmp_path))
    assert [s.name for s in config.stages][-1] == "target11"


def test_each_measurement_is_printed_as_it_finishes() -> None:
    lines: list[str] = []
    events: list[str] = []

    def measure() -> float:
        events.append("measured")
        return 1.234

    assert progress("default config synth", measure, out=lines.append) == 1.234
    events.append("next")
    assert lines[0].startswith("  default config synth: 1.23 s (measured in ")
    assert events == ["measured", "next"]


def test_the_release_table_is_the_readme_one(default_synth: Synthesized) -> None:
    releases = modelled_releases(default_synth.outdir)
    table = release_table(releases)
    assert table[0] == "| phase | staging | prod |"
    guide = (ROOT / "docs" / "releases.md").read_text()
    for row in table:
        assert row in guide, f"docs/releases.md's release table differs from `make bench`: {row}"
