"""The rule packs cover every stack, findings fail synthesis, and every acknowledgement is
narrow, justified and still needed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_s3 as s3

import stacks.pipeline
from configuration import ConfigError
from policies.compliance import (
    AppliedAcknowledgement,
    ValidationReport,
    _find,
    expand,
    load_acknowledgements,
)
from stages.deployment import DeploymentStage

from ..conftest import DEFAULT_CONFIG, ROOT, Synthesized, synthesize


def _findings(outdir: Path) -> set[tuple[str, str]]:
    """(finding id as it is acknowledged, construct path) of every violation in the report."""
    return {
        (f.acknowledgement_id, f.construct_path) for f in ValidationReport.read(outdir).findings
    }


def _conclusions(outdir: Path) -> dict[str, str]:
    return ValidationReport.read(outdir).conclusions


def test_default_config_has_zero_unacknowledged_findings(default_synth: Synthesized) -> None:
    conclusions = _conclusions(default_synth.outdir)
    assert conclusions["AwsSolutions"] == "success"
    assert conclusions["NIST.800.53.R5"] == "success"
    assert all(conclusion == "success" for conclusion in conclusions.values()), conclusions
    assert _findings(default_synth.outdir) == set()


def test_selected_extra_packs_run_and_pass(imported_synth: Synthesized) -> None:
    conclusions = _conclusions(imported_synth.outdir)
    for pack in ("AwsSolutions", "NIST.800.53.R5", "HIPAA.Security", "PCI.DSS.321"):
        assert conclusions[pack] == "success"


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Two identical non-compliant buckets inside the staging stage's service stack."""

    class PlantedStage(DeploymentStage):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            if self.stage_name == "staging":
                for name in ("PlantedA", "PlantedB"):
                    s3.Bucket(self.service, name, removal_policy=RemovalPolicy.DESTROY)

    monkeypatch.setattr(stacks.pipeline, "DeploymentStage", PlantedStage)
    yield


@pytest.mark.usefixtures("planted")
def test_violation_inside_a_stage_fails_synthesis_and_acknowledgements_stay_narrow(
    tmp_path: Path,
) -> None:
    entries = load_acknowledgements()
    extra = type(entries[0])(
        findings=["AwsSolutions::AwsSolutions-S1"],
        constructs=["Pipeline/staging/Service/PlantedA/Resource"],
        reason="Planted by the test to prove an acknowledgement covers only the construct it names.",
    )
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        synthesize(DEFAULT_CONFIG, tmp_path, acknowledgements=[*entries, extra])
    findings = _findings(tmp_path)
    planted_a = "Pipeline/staging/Service/PlantedA/Resource"
    planted_b = "Pipeline/staging/Service/PlantedB/Resource"
    # The same rule, the same kind of resource: acknowledged on A only, so B still fails.
    assert ("AwsSolutions::AwsSolutions-S1", planted_b) in findings
    assert ("AwsSolutions::AwsSolutions-S1", planted_a) not in findings
    # A's other findings were not acknowledged either.
    assert ("NIST.800.53.R5::NIST.800.53.R5-S3BucketVersioningEnabled", planted_a) in findings
    # Nothing else fails: the rest of the app is compliant.
    assert {path for _, path in findings} == {planted_a, planted_b}


def _pairs(applied: list[AppliedAcknowledgement]) -> set[tuple[str, str]]:
    return {(item.finding, item.construct_path) for item in applied}


@pytest.mark.parametrize("name", ["default", "imported"])
def test_every_acknowledgement_matches_a_real_finding_and_covers_all(
    name: str, default_synth: Synthesized, imported_synth: Synthesized
) -> None:
    synthesized = default_synth if name == "default" else imported_synth
    applied = _pairs(synthesized.compliance.applied)
    # The validation report lists the findings that acknowledgements covered apart from the
    # rest; with no finding left unacknowledged, those are all the findings there are.
    report = ValidationReport.read(synthesized.outdir)
    assert report.findings == []
    covered = {(f.acknowledgement_id, f.construct_path) for f in report.acknowledged}
    assert len(covered) > 100
    stale = applied - covered
    assert not stale, f"acknowledgements that match no finding (stale): {sorted(stale)}"
    assert covered == applied


def test_every_entry_is_used_by_some_config(
    default_synth: Synthesized, imported_synth: Synthesized
) -> None:
    used = _pairs(default_synth.compliance.applied) | _pairs(imported_synth.compliance.applied)
    for index, entry in enumerate(load_acknowledgements()):
        expanded: set[tuple[str, str]] = set()
        for synthesized in (default_synth, imported_synth):
            expanded |= _pairs(
                expand(
                    [entry],
                    synthesized.config,
                    replication_buckets=synthesized.compliance.replication_buckets,
                    root=synthesized.stack.node.root,
                )
            )
        assert expanded & used, (
            f"acknowledgement #{index} ({entry.findings[0]}) is used by no config"
        )


def test_acknowledgements_are_written_into_the_templates(default_synth: Synthesized) -> None:
    written: set[tuple[str, str, str]] = set()
    for template in default_synth.outdir.rglob("*.template.json"):
        for logical_id, resource in json.loads(template.read_text())["Resources"].items():
            cdk_nag = resource.get("Metadata", {}).get("cdk_nag", {})
            for suppression in cdk_nag.get("rules_to_suppress", []):
                written.add(
                    (template.name.removesuffix(".template.json"), logical_id, suppression["id"])
                )
    root = default_synth.stack.node.root
    for item in default_synth.compliance.applied:
        construct = _find(root, item.construct_path)
        assert construct is not None
        stack = Stack.of(construct)
        logical_id = stack.resolve(stack.get_logical_id(construct))  # type: ignore[arg-type]
        assert (stack.artifact_id, logical_id, item.finding) in written, item


@pytest.mark.parametrize(
    ("reason", "problem"),
    [
        ("", "at least 60"),
        ("Needed.", "at least 60"),
        (
            "because the pipeline needs it and there is no other way to do this at all here",
            "pattern",
        ),
    ],
)
def test_an_acknowledgement_without_a_real_reason_is_refused(
    tmp_path: Path, reason: str, problem: str
) -> None:
    path = tmp_path / "acks.toml"
    path.write_text(
        "[[acknowledgement]]\n"
        'findings = ["AwsSolutions::AwsSolutions-S1"]\n'
        'constructs = ["Pipeline/AccessLogs/Bucket/Resource"]\n'
        f"reason = {json.dumps(reason)}\n"
    )
    with pytest.raises(ConfigError, match=problem):
        load_acknowledgements(path)


def test_acknowledging_a_whole_stack_is_refused(tmp_path: Path) -> None:
    entry = type(load_acknowledgements()[0])(
        findings=["AwsSolutions::AwsSolutions-S1"],
        constructs=["Pipeline/{stage}/Service"],
        reason="Trying to acknowledge a rule for a whole stack, which must be refused by the loader.",
    )
    with pytest.raises(ConfigError, match="not a single CloudFormation resource"):
        synthesize(DEFAULT_CONFIG, tmp_path, acknowledgements=[entry])


def test_summary_counts_acknowledgements_per_pack(imported_synth: Synthesized) -> None:
    compliance = imported_synth.compliance
    lines = compliance.summary().splitlines()
    # The counts the rule packs themselves report as acknowledged.
    acknowledged = ValidationReport.read(imported_synth.outdir).acknowledged
    for pack in ("AwsSolutions", "NIST.800.53.R5", "HIPAA.Security", "PCI.DSS.321"):
        count = sum(1 for finding in acknowledged if finding.plugin == pack)
        assert count > 0
        assert any(
            line.split() == [pack, "0", "unacknowledged", "findings,", str(count), "acknowledged"]
            for line in lines
        )
    assert f"  {len(compliance.applied)} acknowledgements" in compliance.summary()


def test_the_readme_shows_the_summary_the_default_config_prints(default_synth: Synthesized) -> None:
    """The README's example is real output: when the stacks change the counts, this fails until
    the README is updated."""
    heading, *packs = default_synth.compliance.summary().splitlines()[:3]
    readme = (ROOT / "docs" / "security.md").read_text()
    example = readme[readme.index("Compliance checks (cdk-nag) passed:") :]
    assert example.splitlines()[:3] == [heading, *packs]
