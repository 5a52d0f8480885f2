"""`make diagram` draws the pipeline and the trust map from the synthesized cloud assembly."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import ops.diagram
from ops.diagram import (
    main,
    pipeline_template,
    read_stages,
    read_trust_model,
    synthesized_from,
)
from policies.execution_policy import load_policies

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
    model = read_trust_model(default_synth.outdir, default_synth.config)
    assert (model.pipeline_account, model.pipeline_region, model.support) == (
        "111111111111",
        "eu-west-1",
        (),
    )
    staging, prod = model.targets
    # No stage of the default config imports a VPC: no lookup trust anywhere.
    assert (staging.stages, staging.production, staging.lookup_trusted) == (
        ("staging",),
        False,
        False,
    )
    assert (prod.stages, prod.production, prod.lookup_trusted) == (("prod",), True, False)
    for target in (staging, prod):
        assert set(target.roles) == {
            "deploy",
            "cfn-exec",
            "file-publishing",
            "image-publishing",
            "lookup",
        }
        assert target.roles["deploy"] == f"cdk-webapp-deploy-role-{target.account}-eu-west-1"
        assert target.boundary == "webapp-permissions-boundary"
        assert target.execution_policies == tuple(
            f"webapp-cfn-execution-{n}" for n in range(1, len(load_policies()) + 1)
        )


def test_writes_two_valid_svg_files(
    default_synth: Synthesized, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--cdk-out", str(default_synth.outdir), "--out", str(tmp_path)]) == 0
    assert "pipeline.svg" in capsys.readouterr().out
    for name, words in (
        ("pipeline.svg", ["SecurityScan", "Approve-prod"]),
        ("trust.svg", ["Pipeline account 111111111111", "Target account 333333333333"]),
    ):
        text = " ".join(ET.fromstring((tmp_path / name).read_text()).itertext())  # well-formed
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


def test_pictures_of_another_config_never_overwrite_the_committed_ones(
    five_stage_synth: Synthesized,
    default_synth: Synthesized,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    docs, other = tmp_path / "docs", tmp_path / "other"
    monkeypatch.setattr(ops.diagram, "DOCS", docs)
    monkeypatch.setattr(ops.diagram, "OTHER_CONFIG_OUT", other)
    five = five_stage_synth
    assert synthesized_from(pipeline_template(five.outdir)) == (
        "tests/fixtures/five-stages.toml",
        "blue",
    )
    assert main(["--cdk-out", str(five.outdir)]) == 0
    assert f"not from config/default.toml: drawing into {other}/" in capsys.readouterr().out
    assert (other / "pipeline.svg").exists() and not docs.exists()
    assert synthesized_from(pipeline_template(default_synth.outdir)) == ("config/default.toml", "")
    assert main(["--cdk-out", str(default_synth.outdir)]) == 0
    assert (docs / "pipeline.svg").exists()
