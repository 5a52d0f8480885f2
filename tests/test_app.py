"""`cdk synth` entry point: bad input ends in one paragraph and a non-zero exit, never a
traceback and never a partly written output directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import DEFAULT_CONFIG, ROOT


def _run_app(tmp_path: Path, context: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CDK_CONTEXT_JSON": json.dumps(context),
        "CDK_OUTDIR": str(tmp_path / "out"),
    }
    return subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )


def _assert_clean_refusal(result: subprocess.CompletedProcess[str], tmp_path: Path) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, result.stderr
    assert not (tmp_path / "out").exists(), "nothing may be written for a refused config"
    return error_lines[0]


@pytest.fixture
def bad_config() -> Path:
    """A bad config inside the repository (the app only accepts configs in the repository)."""
    path = ROOT / "tests" / "fixtures" / ".bad-config.toml"
    path.write_text(DEFAULT_CONFIG.read_text().replace('account = "333333333333"', 'account = "3"'))
    yield path
    path.unlink()


def test_bad_config_is_refused_in_one_paragraph(tmp_path: Path, bad_config: Path) -> None:
    result = _run_app(tmp_path, {"config": str(bad_config.relative_to(ROOT))})
    line = _assert_clean_refusal(result, tmp_path)
    assert ".bad-config.toml: invalid config" in line
    assert "stages[1].account = '3'" in line


def test_missing_config_is_refused(tmp_path: Path) -> None:
    line = _assert_clean_refusal(_run_app(tmp_path, {"config": "config/nope.toml"}), tmp_path)
    assert "config file not found" in line


def test_config_outside_the_repository_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.toml"
    outside.write_text(DEFAULT_CONFIG.read_text())
    line = _assert_clean_refusal(_run_app(tmp_path, {"config": str(outside)}), tmp_path)
    assert "must be inside the repository" in line


def test_bad_suffix_is_refused(tmp_path: Path) -> None:
    line = _assert_clean_refusal(_run_app(tmp_path, {"suffix": "Not OK"}), tmp_path)
    assert "context 'suffix' = 'Not OK'" in line
