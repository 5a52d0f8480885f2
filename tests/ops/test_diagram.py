"""`make diagram` draws the pipeline and the trust map from the synthesized cloud assembly."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

import ops.diagram
from ops.diagram import main, pipeline_template, read_stages, read_trust, synthesized_from

from ..conftest import FIXTURES, Synthesized


def test_stages_and_actions_come_from_the_pipeline_template(default_synth: Synthesized) -> None:
    stages = read_stages(pipeline_template(default_synth.outdir))
    assert [s.name for s in stages] == [
        "Source",
        "Build",
        "UpdatePipeline",
        "Assets",
        "staging",
        "prod",
    ]
    assert "SecurityScan" in [a.name for a in stages[3].actions]
    prod = stages[-1]
    assert [a.name for a in prod.actions][:3] == [
        "Approve-prod",
        "webapp-prod-network",
        "webapp-prod-service",
    ]
    assert prod.actions[1].detail == "CloudFormation in 333333333333"


def test_trust_map_names_each_targets_roles(default_synth: Synthesized) -> None:
    account, trusts = read_trust(default_synth.outdir, pipeline_template(default_synth.outdir))
    assert account == "111111111111"
    roles = {(t.target_account, t.role.split(" ")[0]) for t in trusts}
    for target in ("222222222222", "333333333333"):
        for role in (
            "cdk-hnb659fds-deploy-role",
            "cdk-hnb659fds-cfn-exec-role",
            "cdk-hnb659fds-image-publishing-role",
            "cdk-hnb659fds-file-publishing-role",
        ):
            assert (target, role) in roles


def test_writes_two_valid_svg_files(
    default_synth: Synthesized, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--cdk-out", str(default_synth.outdir), "--out", str(tmp_path)]) == 0
    assert "pipeline.svg" in capsys.readouterr().out
    for name, words in (
        ("pipeline.svg", ["SecurityScan", "Approve-prod"]),
        ("trust.svg", ["Pipeline account 111111111111", "Target account 333333333333"]),
    ):
        text = (tmp_path / name).read_text()
        ET.fromstring(text)  # well-formed
        for word in words:
            assert word in text


def test_missing_cloud_assembly_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--cdk-out", str(tmp_path)]) == 2
    assert "run `make synth` first" in capsys.readouterr().err


def test_pictures_of_another_config_never_overwrite_the_committed_ones(
    synth: Callable[..., Synthesized],
    default_synth: Synthesized,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    docs, other = tmp_path / "docs", tmp_path / "other"
    monkeypatch.setattr(ops.diagram, "DOCS", docs)
    monkeypatch.setattr(ops.diagram, "OTHER_CONFIG_OUT", other)
    five = synth(FIXTURES / "five-stages.toml", suffix="-blue")
    assert synthesized_from(pipeline_template(five.outdir)) == (
        "tests/fixtures/five-stages.toml",
        "blue",
    )
    monkeypatch.setattr(ops.diagram, "ROOT", tmp_path)
    assert main(["--cdk-out", str(five.outdir)]) == 0
    assert "not from config/default.toml: drawing into other/" in capsys.readouterr().out
    assert (other / "pipeline.svg").exists() and not docs.exists()
    assert synthesized_from(pipeline_template(default_synth.outdir)) == ("config/default.toml", "")
    assert main(["--cdk-out", str(default_synth.outdir)]) == 0
    assert (docs / "pipeline.svg").exists()
