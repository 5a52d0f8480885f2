"""The config's plain-HTTP waiver and the security scan agree: synth refuses an expired or too
distant waiver, and the scan accepts AWS-0054 exactly on the waived stages' templates."""

from __future__ import annotations

import datetime as dt
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

from configuration import load_config
from ops import waivers
from ops.scan import IGNORE_FILE, Trivy, verify_trivy

from ..conftest import FIXTURES, Synthesized

TRIVY = Path(sys.executable).parent / "trivy"
FIVE = FIXTURES / "five-stages.toml"
EXPIRES = dt.date(2027, 2, 25)  # the fixture's plain_http_expires


@pytest.mark.parametrize(
    ("today", "problem"),
    [
        (EXPIRES, None),  # the last day of the waiver
        (EXPIRES + dt.timedelta(days=1), "expired"),
        (EXPIRES - dt.timedelta(days=90), None),  # exactly 90 days ahead
        (EXPIRES - dt.timedelta(days=91), "at most 90 days ahead"),
    ],
)
def test_waiver_dates_are_checked_on_both_sides(today: dt.date, problem: str | None) -> None:
    found = waivers.problems(load_config(FIVE), "tests/fixtures/five-stages.toml", today)
    if problem is None:
        assert found == []
    else:
        assert len(found) == 4, found  # the four plain-HTTP stages
        assert found[0].startswith(
            "tests/fixtures/five-stages.toml: stages[0].service.plain_http_expires = 2027-02-25: "
        )
        assert problem in found[0]


@pytest.fixture(scope="module")
def five(synth: Callable[..., Synthesized]) -> Synthesized:
    return synth(FIVE, suffix="-blue")


def _templates(five: Synthesized, tmp_path: Path) -> Path:
    copy = tmp_path / "cdk.out"
    shutil.copytree(five.outdir, copy, ignore=shutil.ignore_patterns("asset.*"))
    return copy


def test_the_scan_accepts_plain_http_only_where_the_config_waives_it(
    five: Synthesized, tmp_path: Path
) -> None:
    verify_trivy(TRIVY)
    assembly = _templates(five, tmp_path)
    plain = [s.name for s in five.config.stages if s.service.plain_http_reason]
    assert plain == ["dev", "qa", "staging", "perf"]

    # Without the config's waivers: each listener of each plain-HTTP stage, once, by name.
    unwaived = Trivy(TRIVY, tmp_path / "r1", IGNORE_FILE).templates(assembly)
    lines = sorted(f.line() for f in unwaived)
    assert {f.id for f in unwaived} == {"AWS-0054"}
    assert len(lines) == len(set(lines)) == 2 * len(plain), lines
    assert sum("(WebLoadBalancerHttpListener" in line for line in lines) == len(plain)
    assert sum("(WebLoadBalancerTestListener" in line for line in lines) == len(plain)

    # With them, as synth writes them: the scan passes; drop one stage's and it fails there only.
    waivers.write(five.config, "tests/fixtures/five-stages.toml", assembly)
    ignore = waivers.merged_ignore_file(IGNORE_FILE, assembly, tmp_path / "r2")
    assert Trivy(TRIVY, tmp_path / "r2", ignore).templates(assembly) == []

    data = yaml.safe_load((assembly / waivers.WAIVERS_FILE).read_text())
    kept = [e for e in data["misconfigurations"] if "-qa/" not in e["paths"][0]]
    (assembly / waivers.WAIVERS_FILE).write_text(yaml.safe_dump({"misconfigurations": kept}))
    ignore = waivers.merged_ignore_file(IGNORE_FILE, assembly, tmp_path / "r3")
    left = Trivy(TRIVY, tmp_path / "r3", ignore).templates(assembly)
    assert {f.target.split("/")[0] for f in left} == {"assembly-Pipeline-qa"}, left


def test_without_waivers_the_ignore_file_is_used_as_it_is(tmp_path: Path) -> None:
    assert waivers.merged_ignore_file(IGNORE_FILE, tmp_path, tmp_path / "r") == IGNORE_FILE


def test_a_waiver_names_only_its_own_stages_templates(tmp_path: Path) -> None:
    """`qa` must not match `perf-qa`'s assembly by its ending."""
    for stage in ("qa", "perf-qa"):
        directory = tmp_path / f"assembly-Pipeline-{stage}"
        directory.mkdir()
        (directory / f"Pipeline{stage}Service1A2B3C4D.template.json").write_text("{}")
    loaded = load_config(FIVE)
    qa = next(s for s in loaded.stages if s.name == "qa")
    waived = loaded.model_copy(
        update={
            "stages": [
                qa.model_copy(
                    update={
                        "service": qa.service.model_copy(
                            update={"plain_http_reason": "x" * 30, "plain_http_expires": EXPIRES}
                        )
                    }
                )
            ]
        }
    )
    [entry] = waivers.entries(waived, "config.toml", tmp_path)
    assert entry["paths"] == ["assembly-Pipeline-qa/PipelineqaService1A2B3C4D.template.json"]
