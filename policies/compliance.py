"""Compliance at synth: cdk-nag rule packs on the whole app, and the acknowledgements kept in
`policies/acknowledgements.toml`, each applied to the exact constructs it names.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import aws_cdk as cdk
import cdk_nag
from constructs import IConstruct
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from configuration import ConfigError, DeploymentConfig, StageConfig

POLICIES = Path(__file__).resolve().parent
ACKNOWLEDGEMENTS = POLICIES / "acknowledgements.toml"

_PACKS: dict[str, type[cdk_nag.NagPack]] = {
    "AwsSolutions": cdk_nag.AwsSolutionsChecks,
    "NIST.800.53.R5": cdk_nag.NIST80053R5Checks,
    "HIPAA.Security": cdk_nag.HIPAASecurityChecks,
    "PCI.DSS.321": cdk_nag.PCIDSS321Checks,
}


class Acknowledgement(BaseModel):
    """One entry of acknowledgements.toml: findings x constructs, with the reason."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    findings: Annotated[list[Annotated[str, StringConstraints(pattern=r"^\S+::\S+$")]], Field(min_length=1)]
    constructs: Annotated[list[Annotated[str, StringConstraints(pattern=r"^Pipeline/\S+$")]], Field(min_length=1)]
    reason: Annotated[str, StringConstraints(min_length=60, pattern=r"^[A-Z{].*[.!?}]$")]
    when: Literal["always", "production", "non-production", "plain-http", "https"] = "always"


class AcknowledgementFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    acknowledgement: list[Acknowledgement]


@dataclass(frozen=True)
class AppliedAcknowledgement:
    """An acknowledgement expanded for one config: one finding on one construct."""

    finding: str
    construct_path: str
    reason: str


def load_acknowledgements(path: Path = ACKNOWLEDGEMENTS) -> list[Acknowledgement]:
    """Parse and validate the acknowledgement data; ConfigError on any problem."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        return AcknowledgementFile.model_validate(raw).acknowledgement
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the acknowledgements: {error}.") from None
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise ConfigError(
            f"{path}: invalid acknowledgements: {problems}. Each entry needs findings, "
            "constructs and a reason of at least one full sentence (60+ characters)."
        ) from None


def expand(
    acknowledgements: list[Acknowledgement], config: DeploymentConfig, source_action: str
) -> list[AppliedAcknowledgement]:
    """Every (finding, construct path, reason) the entries stand for under `config`."""
    applied: list[AppliedAcknowledgement] = []
    for entry in acknowledgements:
        for template in entry.constructs:
            for path, stage in _paths(template, entry.when, config, source_action):
                reason = entry.reason
                if stage is not None and stage.service.plain_http_reason:
                    reason = reason.replace("{plain_http_reason}", stage.service.plain_http_reason)
                for finding in entry.findings:
                    finding_id = finding.format(
                        account=config.pipeline.account, region=config.pipeline.region
                    )
                    applied.append(AppliedAcknowledgement(finding_id, path, reason))
    return applied


def _paths(
    template: str, when: str, config: DeploymentConfig, source_action: str
) -> Iterator[tuple[str, StageConfig | None]]:
    if "{stage}" not in template:
        yield template.format(source_action=source_action), None
        return
    for stage in config.stages:
        if not _selected(stage, when):
            continue
        zones = range(1, len(stage.availability_zones) + 1) if "{zone}" in template else [0]
        for zone in zones:
            yield template.format(stage=stage.name, zone=zone, source_action=source_action), stage


def _selected(stage: StageConfig, when: str) -> bool:
    return {
        "always": True,
        "production": stage.production,
        "non-production": not stage.production,
        "plain-http": stage.service.plain_http_reason is not None,
        "https": stage.service.certificate_arn is not None,
    }[when]


class Compliance:
    """The rule packs and acknowledgements for one config, applied in two steps:

    - `prepare_stage(stage, stage_config)` before the stage is added to the pipeline: CDK Pipelines
      synthesizes a stage when it is added, so what should reach the stage's templates (the
      acknowledgements written as `cdk_nag` metadata) must be in place by then;
    - `register(app)` once the pipeline is built: the packs on the whole app (they cover the
      pipeline stack and every stack of every Stage) and the pipeline's own acknowledgements.
    """

    def __init__(
        self,
        config: DeploymentConfig,
        acknowledgements: list[Acknowledgement] | None = None,
    ) -> None:
        self.packs = config.compliance.packs
        # CodePipeline names the source action after the repository, with '/' replaced.
        source_action = config.pipeline.source.repository.replace("/", "_")
        entries = load_acknowledgements() if acknowledgements is None else acknowledgements
        self._pending = expand(entries, config, source_action)
        self.applied: list[AppliedAcknowledgement] = []

    def prepare_stage(self, stage: cdk.Stage) -> None:
        """Apply the acknowledgements that fall inside `stage`."""
        cdk.Aspects.of(stage).add(cdk_nag.WriteNagSuppressionsToCloudFormationAspect())
        self._apply(stage, lambda item: item.construct_path.startswith(f"{stage.node.path}/"))

    def register(self, app: cdk.App) -> None:
        """Register the packs on the app and apply the remaining acknowledgements."""
        cdk.Validations.of(app).add_plugins(
            *(
                _PACKS[name](app, write_suppressions_to_cloud_formation=True)
                for name in self.packs
            )
        )
        self._apply(app, lambda item: True)

    def _apply(self, scope: IConstruct, selects: Callable[[AppliedAcknowledgement], bool]) -> None:
        root = scope.node.root
        remaining: list[AppliedAcknowledgement] = []
        for item in self._pending:
            if not selects(item):
                remaining.append(item)
                continue
            construct = _find(root, item.construct_path)
            # Stages differ between configs (an imported VPC has no Network stack), so a path
            # may not exist; the stale-acknowledgement test proves each entry matches a finding.
            if construct is not None:
                cdk.Validations.of(construct).acknowledge(
                    cdk.Acknowledgment(id=item.finding, reason=item.reason)
                )
                self.applied.append(item)
        self._pending = remaining

    def summary(self) -> str:
        rules = len({a.finding.split("[")[0] for a in self.applied})
        return (
            f"Compliance: packs {', '.join(self.packs)} passed with 0 unacknowledged findings; "
            f"{len(self.applied)} findings acknowledged on specific constructs ({rules} rules), "
            "each with its reason in policies/acknowledgements.toml. "
            "Full list: compliance-report.json in the output directory."
        )

    def write_report(self, outdir: Path) -> Path:
        report = outdir / "compliance-report.json"
        body = {
            "packs": list(self.packs),
            "unacknowledged_findings": 0,
            "acknowledged": [a.__dict__ for a in self.applied],
        }
        report.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
        return report


def _find(root: IConstruct, path: str) -> IConstruct | None:
    node: IConstruct | None = root
    for part in path.split("/"):
        if node is None:
            return None
        node = node.node.try_find_child(part)
    return node


__all__ = [
    "ACKNOWLEDGEMENTS",
    "Acknowledgement",
    "AppliedAcknowledgement",
    "Compliance",
    "expand",
    "load_acknowledgements",
]
