"""Compliance at synth: cdk-nag rule packs on the whole app, and the acknowledgements kept in
`policies/acknowledgements.toml`, each applied to the exact constructs it names.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import aws_cdk as cdk
import cdk_nag
from aws_cdk import aws_codepipeline as codepipeline
from constructs import IConstruct
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from configuration import ConfigError, DeploymentConfig, StageConfig
from configuration.regions import partition_of
from configuration.waves import plan_waves

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

    findings: Annotated[
        list[Annotated[str, StringConstraints(pattern=r"^\S+::\S+$")]], Field(min_length=1)
    ]
    constructs: Annotated[
        list[Annotated[str, StringConstraints(pattern=r"^\S+/\S+$")]], Field(min_length=1)
    ]
    reason: Annotated[str, StringConstraints(min_length=60, pattern=r"^[A-Z{].*[.!?}]$")]
    when: Literal[
        "always", "production", "non-production", "plain-http", "https", "cross-region"
    ] = "always"


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
    acknowledgements: list[Acknowledgement],
    config: DeploymentConfig,
    *,
    replication_buckets: dict[str, str] | None = None,
    root: IConstruct | None = None,
    include: Callable[[str], bool] | None = None,
) -> list[AppliedAcknowledgement]:
    """Every (finding, construct path, reason) the entries stand for under `config`.

    `replication_buckets` maps each region that holds a cross-region support stack to its
    replication bucket's name; both exist only once the pipeline is built. `include` selects
    construct paths before their logical ids are looked up (each lookup calls into jsii).
    """
    pipeline = config.pipeline
    values = {
        "account": pipeline.account,
        "region": pipeline.region,
        "partition": partition_of(pipeline.region),
        # CodePipeline names the source action after the repository, with '/' replaced.
        "source_action": pipeline.source.repository.replace("/", "_"),
        # The first pipeline stage after the assets (a target or a wave): the security scan
        # runs there, before anything deploys.
        "first_stage": next(w.stage_name for w in plan_waves(list(config.stages)) if w.scan),
    }
    applied: list[AppliedAcknowledgement] = []
    found: dict[str, IConstruct | None] = {}
    for entry in acknowledgements:
        for template in entry.constructs:
            for path, scope_values, stage in _paths(
                template, entry.when, config, values, replication_buckets or {}
            ):
                if include is not None and not include(path):
                    continue
                reason = entry.reason
                if stage is not None and stage.service.plain_http_reason:
                    reason = reason.replace("{plain_http_reason}", stage.service.plain_http_reason)
                for finding in entry.findings:
                    pack = finding.split("::", 1)[0]
                    if pack in _PACKS and pack not in config.compliance.packs:
                        continue  # a rule of a pack this config does not enable
                    finding_id = _logical_ids(finding.format(**scope_values), root, found)
                    applied.append(AppliedAcknowledgement(finding_id, path, reason))
    return applied


def _paths(
    template: str,
    when: str,
    config: DeploymentConfig,
    values: dict[str, str],
    replication_buckets: dict[str, str],
) -> Iterator[tuple[str, dict[str, str], StageConfig | None]]:
    if "{replication_region}" in template or when == "cross-region":
        for region, bucket in sorted(replication_buckets.items()):
            scope = {**values, "replication_region": region, "replication_bucket": bucket}
            yield template.format(**scope), scope, None
    elif "{stage}" in template or "{step_prefix}" in template:
        prefixes = _step_prefixes(config)
        for stage in config.stages:
            if not _selected(stage, when):
                continue
            zones = range(1, len(stage.availability_zones) + 1) if "{zone}" in template else [0]
            for zone in zones:
                scope = {
                    **values,
                    "stage": stage.name,
                    "zone": str(zone),
                    "step_prefix": prefixes[stage.name],
                }
                yield template.format(**scope), scope, stage
    else:
        yield template.format(**values), values, None


def _step_prefixes(config: DeploymentConfig) -> dict[str, str]:
    return {
        stage.name: wave.step_prefix(stage)
        for wave in plan_waves(list(config.stages))
        for stage in wave.stages
    }


_LOGICAL_ID = re.compile(r"<@([^>]+)>")


def _logical_ids(
    finding: str, root: IConstruct | None, found: dict[str, IConstruct | None] | None = None
) -> str:
    """Replace `<@construct/path>` by `<LogicalId>` of that construct's resource, as cdk-nag
    prints references; ids that hash a stage name cannot be written down in advance."""

    def logical_id(match: re.Match[str]) -> str:
        construct = _find(root, match[1], found) if root is not None else None
        if construct is None:
            return match[0]
        resource = construct.node.default_child or construct
        stack = cdk.Stack.of(resource)
        return f"<{stack.resolve(stack.get_logical_id(resource))}>"  # type: ignore[arg-type]

    return _LOGICAL_ID.sub(logical_id, finding)


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
        self.config = config
        self.packs = config.compliance.packs
        self._entries = load_acknowledgements() if acknowledgements is None else acknowledgements
        self.applied: list[AppliedAcknowledgement] = []
        self.replication_buckets: dict[str, str] = {}
        self._prepared: list[str] = []

    def prepare_stage(self, stage: cdk.Stage) -> None:
        """Apply the acknowledgements that fall inside `stage`."""
        cdk.Aspects.of(stage).add(cdk_nag.WriteNagSuppressionsToCloudFormationAspect())
        prefix = f"{stage.node.path}/"
        self._prepared.append(prefix)
        items = expand(
            self._entries,
            self.config,
            root=stage.node.root,
            include=lambda path: path.startswith(prefix),
        )
        self._apply(stage.node.root, items)

    def register(self, app: cdk.App, pipeline: codepipeline.Pipeline) -> None:
        """Register the packs on the app and apply the remaining acknowledgements."""
        cdk.Validations.of(app).add_plugins(
            *(_PACKS[name](app, write_suppressions_to_cloud_formation=True) for name in self.packs)
        )
        replication = {
            # The name is generated and known at synth, but reached through a token.
            region: str(cdk.Stack.of(pipeline).resolve(support.replication_bucket.bucket_name))
            for region, support in pipeline.cross_region_support.items()
        }
        self.replication_buckets = replication
        self._apply(
            app,
            expand(
                self._entries,
                self.config,
                replication_buckets=replication,
                root=app,
                # The stages' acknowledgements were applied when each stage was prepared.
                include=lambda path: not path.startswith(tuple(self._prepared)),
            ),
        )

    def _apply(self, root: IConstruct, items: list[AppliedAcknowledgement]) -> None:
        # One lookup and one acknowledge call per construct: each is a call into jsii.
        by_path: dict[str, dict[str, AppliedAcknowledgement]] = {}
        for item in items:
            by_path.setdefault(item.construct_path, {}).setdefault(item.finding, item)
        # Only for this pass: constructs are added between prepare_stage and register.
        cache: dict[str, IConstruct | None] = {}
        for path, by_finding in by_path.items():
            path_items = list(by_finding.values())
            construct = _find(root, path, cache)
            # Stages differ between configs (an imported VPC has no Network construct), so a path
            # may not exist; the stale-acknowledgement test proves each entry matches a finding.
            if construct is None:
                continue
            if not cdk.CfnResource.is_cfn_resource(construct):
                raise ConfigError(
                    f"{ACKNOWLEDGEMENTS}: {path_items[0].finding} is acknowledged on {path}, "
                    "which is not a single CloudFormation resource; acknowledge findings on the "
                    "resource itself (the path printed with the finding), never on a whole "
                    "stack, stage or construct tree."
                )
            cdk.Validations.of(construct).acknowledge(
                *(cdk.Acknowledgment(id=i.finding, reason=i.reason) for i in path_items)
            )
            self.applied.extend(path_items)

    def summary(self) -> str:
        """A few lines for the terminal: each pack, its findings, the acknowledgements."""
        lines = ["Compliance checks (cdk-nag) passed:"]
        for pack in self.packs:
            count = sum(1 for a in self.applied if a.finding.startswith(f"{pack}::"))
            lines.append(f"  {pack:<24} 0 unacknowledged findings, {count:>3} acknowledged")
        lines.append(
            f"  {len(self.applied)} acknowledgements, each on one resource with its reason in "
            "policies/acknowledgements.toml;"
        )
        lines.append(
            "  full list: compliance-report.json, rule report: validation-report.json "
            "(in the output directory)."
        )
        return "\n".join(lines)

    def write_report(self, outdir: Path) -> Path:
        report = outdir / "compliance-report.json"
        body = {
            "packs": list(self.packs),
            "unacknowledged_findings": 0,
            "acknowledged": [a.__dict__ for a in self.applied],
        }
        report.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
        return report


@dataclass(frozen=True)
class Finding:
    """One violation in a validation report, on one construct."""

    plugin: str
    rule: str
    construct_path: str
    description: str
    severity: str

    @property
    def acknowledgement_id(self) -> str:
        """The id to acknowledge it with, as synthesis prints it."""
        return f"{self.plugin.replace(' ', '-')}::{self.rule}"


@dataclass(frozen=True)
class ValidationReport:
    """The validation-report.json CDK writes into the output directory.

    Run by the CDK CLI, the app's synth does not raise on a failed validation (the CLI reads the
    report and fails afterwards), so the report is the one place to ask.
    """

    conclusions: dict[str, str]
    findings: list[Finding]
    # The findings that acknowledgements covered: the report lists them apart.
    acknowledged: list[Finding]

    @classmethod
    def read(cls, outdir: Path) -> ValidationReport:
        path = outdir / "validation-report.json"
        if not path.exists():
            return cls({}, [], [])
        plugins = json.loads(path.read_text(encoding="utf-8")).get("pluginReports", [])

        def findings(key: str) -> list[Finding]:
            return [
                Finding(
                    str(plugin["pluginName"]),
                    str(violation["ruleName"]),
                    str(construct["constructPath"]),
                    str(violation["description"]),
                    str(violation.get("severity", "error")),
                )
                for plugin in plugins
                for violation in plugin.get(key, [])
                for construct in violation.get("violatingConstructs", [])
            ]

        return cls(
            {str(p["pluginName"]): str(p.get("conclusion")) for p in plugins},
            findings("violations"),
            findings("suppressedViolations"),
        )

    @property
    def failed_plugins(self) -> list[str]:
        return [name for name, conclusion in self.conclusions.items() if conclusion != "success"]

    def describe_failures(self) -> str:
        """The findings of the failed plugins, one block each, with the id to acknowledge."""
        failed = set(self.failed_plugins)
        return "\n\n".join(
            f"{f.severity.upper()} {f.description}\n   {f.construct_path}\n"
            f"   Acknowledge with '{f.acknowledgement_id}'"
            for f in self.findings
            if f.plugin in failed
        )


def _find(
    root: IConstruct, path: str, cache: dict[str, IConstruct | None] | None = None
) -> IConstruct | None:
    """The construct at `path` below `root`. Each step is a call into the jsii kernel, and the
    acknowledged paths share long prefixes, so callers that look up many paths pass a cache."""
    cache = {} if cache is None else cache
    node: IConstruct | None = root
    prefix = ""
    for part in path.split("/"):
        prefix = f"{prefix}/{part}"
        if prefix not in cache:
            cache[prefix] = None if node is None else node.node.try_find_child(part)
        node = cache[prefix]
        if node is None:
            return None
    return node


__all__ = [
    "ACKNOWLEDGEMENTS",
    "Acknowledgement",
    "AppliedAcknowledgement",
    "Compliance",
    "expand",
    "load_acknowledgements",
]
