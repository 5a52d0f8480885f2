"""The make targets a newcomer types first: what they refuse, how they pass CONFIG on, and that
the slow install says what it is doing."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from .conftest import DEFAULT_CONFIG, ROOT

MAKE = shutil.which("make") or "make"


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MAKE, "--no-print-directory", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_an_empty_config_is_refused_before_anything_runs() -> None:
    result = _make("synth", "CONFIG=")
    assert result.returncode != 0
    assert "error: CONFIG is empty: expected the path of a deployment config" in result.stderr
    assert "Synthesized" not in result.stdout


def test_a_config_path_with_spaces_reaches_the_commands_whole() -> None:
    result = _make("-n", "synth", "bootstrap", "doctor", "CONFIG=config/my config.toml")
    assert result.returncode == 0, result.stderr
    for command in ("ops.synth --config", "ops.bootstrap", "ops.doctor"):
        [line] = [row for row in result.stdout.splitlines() if command in row]
        assert '"config/my config.toml"' in line, line


def test_bootstrap_refuses_a_config_outside_the_repository(tmp_path: Path) -> None:
    outside = tmp_path / "mine.toml"
    outside.write_text(DEFAULT_CONFIG.read_text())
    result = _make("bootstrap", f"CONFIG={outside}")
    assert result.returncode != 0
    assert "must be inside the repository" in result.stderr


def test_the_fresh_clone_install_says_what_it_is_doing() -> None:
    result = _make("-n", "-B", ".venv/.installed", "node_modules/.installed")
    assert result.returncode == 0, result.stderr
    assert "Installing the pinned Python packages into .venv" in result.stdout
    assert "Installing Node 22 and the pinned CDK CLI" in result.stdout
    [pip] = [row for row in result.stdout.splitlines() if "pip install" in row]
    assert "--quiet" not in pip


def test_every_target_is_in_make_help_and_in_the_readme() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = re.findall(r"^([a-z-]+):.*## ", makefile, flags=re.MULTILINE)
    help_text = _make("help").stdout
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Make targets") :]
    for target in targets:
        assert f"make {target}" in help_text, target
        assert f"`make {target}" in table, f"README's make-target table lacks {target}"


def test_accept_listener_rules_records_the_named_config() -> None:
    """It synthesizes CONFIG (not the default) with the recording switch on."""
    result = _make("-n", "accept-listener-rules", "CONFIG=config/my config.toml", "SUFFIX=x")
    assert result.returncode == 0, result.stderr
    [line] = [row for row in result.stdout.splitlines() if "ops.synth" in row]
    assert '--config "config/my config.toml"' in line and '--suffix "x"' in line
    assert "--accept-listener-rules" in line
