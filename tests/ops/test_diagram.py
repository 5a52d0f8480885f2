"""`make diagram` draws the pipeline and the trust map from the synthesized cloud assembly."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ops.diagram import main, pipeline_template, read_stages, read_trust

from ..conftest import ROOT, Synthesized


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
    # The scan leads the first stage after publishing, alone, before its deploys.
    assert "SecurityScan" not in [a.name for a in stages[3].actions]
    staging = stages[4]
    assert [(a.name, a.run_order) for a in staging.actions][:2] == [
        ("SecurityScan", 1),
        ("webapp-staging-service", 2),
    ]
    prod = stages[-1]
    assert [a.name for a in prod.actions][:2] == ["Approve-prod", "webapp-prod-service"]
    assert prod.actions[1].detail == "CloudFormation in 333333333333"


def test_trust_map_names_each_targets_roles(default_synth: Synthesized) -> None:
    account, trusts = read_trust(default_synth.outdir, pipeline_template(default_synth.outdir))
    assert account == "111111111111"
    roles = {(t.target_account, t.role.split(" ")[0]) for t in trusts}
    for target in ("222222222222", "333333333333"):
        for role in (
            "cdk-webapp-deploy-role",
            "cdk-webapp-cfn-exec-role",
            "cdk-webapp-image-publishing-role",
            "cdk-webapp-file-publishing-role",
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


def test_committed_pictures_are_what_the_generator_draws(
    default_synth: Synthesized, tmp_path: Path
) -> None:
    # `make diagram` redraws docs/ from cdk.out; the committed pictures must not drift from it.
    assert main(["--cdk-out", str(default_synth.outdir), "--out", str(tmp_path)]) == 0
    for name in ("pipeline.svg", "trust.svg"):
        assert (tmp_path / name).read_text() == (ROOT / "docs" / name).read_text(), (
            f"docs/{name} is stale: run `make diagram` and commit it"
        )


def test_missing_cloud_assembly_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--cdk-out", str(tmp_path)]) == 2
    assert "run `make synth` first" in capsys.readouterr().err
