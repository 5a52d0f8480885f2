"""cfn-lint on every synthesized template: no errors and no warnings (see .cfnlintrc.yaml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, Synthesized

CFN_LINT = str(Path(sys.executable).parent / "cfn-lint")


@pytest.mark.parametrize("which", ["default", "imported"])
def test_cfn_lint_is_clean(
    which: str, default_synth: Synthesized, imported_synth: Synthesized
) -> None:
    outdir = (default_synth if which == "default" else imported_synth).outdir
    templates = sorted(str(path) for path in Path(outdir).rglob("*.template.json"))
    assert len(templates) >= 3
    result = subprocess.run(
        [CFN_LINT, "--", *templates],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_would_catch_a_broken_template(tmp_path: Path) -> None:
    bad = tmp_path / "bad.template.json"
    bad.write_text(
        '{"Resources": {"Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"Nope": 1}}}}'
    )
    result = subprocess.run(
        [CFN_LINT, "--", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0 and "E3002" in result.stdout
