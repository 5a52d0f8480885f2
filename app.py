#!/usr/bin/env python3
"""CDK entry point: wiring only. Load and validate the config, build the pipeline stack, register
the compliance checks, synthesize.

    npx cdk synth                                  # config/default.toml
    npx cdk synth -c config=config/mine.toml -c suffix=alice
    make synth CONFIG=config/mine.toml SUFFIX=alice   # the same, and cdk.out/ only if it passes
"""

from __future__ import annotations

import os

# CDK's built-in CloudFormation validation repeats what cfn-lint checks on every synthesized
# template in `make test` (which the pipeline runs before each synth), and costs about 3 s per
# synth. It reads this variable when the jsii kernel starts, so it is set before aws_cdk loads.
os.environ.setdefault("CDK_VALIDATION", "false")

if __name__ == "__main__":
    from ops import quiet_interrupts

    # Ctrl-C (or the CDK CLI going away) ends the app quietly, as it ends any other command: a
    # KeyboardInterrupt or BrokenPipeError traceback from inside an import or jsii tells nobody
    # anything. Set before the slow imports (ops imports only the standard library), which an
    # early Ctrl-C interrupts.
    quiet_interrupts()

import datetime as dt
import json
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aws_cdk as cdk

from configuration import ConfigError, DeploymentConfig, load_config, repository_config
from configuration.toolchain import ROOT, cdk_cli_version, cdk_json_context
from ops import waivers
from policies.compliance import Acknowledgement, Compliance, Finding, ValidationReport
from service import listener_guard
from service.timing import bake_problems
from stacks.pipeline import PipelineStack

DEFAULT_CONFIG = "config/default.toml"
# What the CDK CLI gives app.py: cdk.json's context, plus the metadata switches it turns on.
CDK_CLI_CONTEXT: dict[str, Any] = {
    **cdk_json_context(),
    "aws:cdk:enable-path-metadata": True,
    "aws:cdk:enable-asset-metadata": True,
}


def main(context: dict[str, str] | None = None, outdir: str | None = None) -> int:
    """`cdk synth` runs this with neither argument: the CLI passes its context and output
    directory through the environment. Tests pass them directly."""
    app = cdk.App(context=context, outdir=outdir)
    config_arg = str(app.node.try_get_context("config") or DEFAULT_CONFIG)
    suffix_arg = str(app.node.try_get_context("suffix") or "")
    try:
        config_path = repository_config(config_arg)
        suffix = _suffix(suffix_arg)
        config = load_config(ROOT / config_path)
        expired = waivers.problems(config, config_path, dt.date.today())
        if expired:
            raise ConfigError("; ".join(expired) + ".")
        _, compliance = build(app, config, config_path=config_path, suffix=suffix)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        _remove_if_empty(Path(app.outdir))
        return 2

    failure = (
        "error: compliance checks failed ({plugins}): remediate each finding listed above or, "
        "where that is impossible, acknowledge it in policies/acknowledgements.toml with a "
        "reason (docs/security.md). The full report is validation-report.json in the output "
        "directory (`make synth` keeps it as validation-report.json in the repository root)."
    )
    try:
        assembly = app.synth()
    except RuntimeError as error:
        if "ValidationFailed" not in str(error):
            raise
        print(failure.format(plugins="see above"), file=sys.stderr)
        return 1
    written = Path(assembly.directory)
    report = ValidationReport.read(written)
    errors = [f for f in report.findings if f.plugin == ANNOTATIONS]
    if errors:
        # Errors the constructs reported (a failed context lookup, say) are not compliance
        # findings: acknowledging them is never the answer.
        for found in errors:
            print(f"ERROR {found.description}\n   {found.construct_path}\n", file=sys.stderr)
        print(_construct_errors(config, config_path, errors), file=sys.stderr)
        return 1
    if report.failed_plugins:
        print(report.describe_failures() + "\n", file=sys.stderr)
        print(failure.format(plugins=", ".join(report.failed_plugins)), file=sys.stderr)
        return 1
    if _missing_context(written):
        # A provisional pass: the CLI looks the missing context up and runs the app again, and
        # the templates of this pass hold placeholders (a dummy VPC), so the checks that read
        # templates wait for the second run.
        compliance.write_report(written)
        return 0
    # Rules that need the synthesized templates: the bake must outlast the alarms it relies on.
    problems = bake_problems(config, written)
    if problems:
        plural = "s" if len(problems) > 1 else ""
        heading = f"{ROOT / config_path}: invalid config ({len(problems)} problem{plural})"
        print(f"error: {heading}: " + " ".join(problems), file=sys.stderr)
        shutil.rmtree(written)  # nothing half-written is left for a refused config
        return 2
    accept = str(app.node.try_get_context("accept-listener-rules") or "") == "true"
    if not _listener_rules_unchanged(written, accept=accept):
        shutil.rmtree(written)
        return 1
    compliance.write_report(written)
    waivers.write(config, config_path, written)
    print(compliance.summary(), file=sys.stderr)
    return 0


ANNOTATIONS = "Construct Annotations"


def _missing_context(outdir: Path) -> bool:
    manifest = outdir / "manifest.json"
    return manifest.is_file() and bool(json.loads(manifest.read_text()).get("missing"))


def _construct_errors(config: DeploymentConfig, config_path: str, errors: list[Finding]) -> str:
    lookups = [f for f in errors if "Need to perform AWS calls" in f.description]
    if not lookups:
        return (
            "error: synthesis failed with the construct errors listed above; they are not "
            "compliance findings (do not acknowledge them): fix the config or the code."
        )
    names = {f.construct_path.split("/")[1] for f in lookups if f.construct_path.count("/") >= 1}
    stages = [stage for stage in config.stages if stage.name in names]
    what = "; ".join(
        f"stage '{stage.name}' looks up network.vpc_id = '{stage.network.vpc_id}' in account "
        f"{stage.account} ({stage.region})"
        for stage in stages
        if stage.network.vpc_id
    )
    return (
        f"error: {config_path}: {what or 'a context lookup needs AWS'}, and cdk.context.json "
        "holds no result for it; a lookup needs AWS credentials that can assume the account's "
        "CDK lookup role, and none were found. Run `make synth CONFIG="
        f"{config_path}` once with such credentials (for example AWS_PROFILE=<profile of the "
        "pipeline account>), then commit cdk.context.json so that the pipeline and everyone "
        "else synthesize offline (docs/configuration.md, Using what exists)."
    )


def build(
    app: cdk.App,
    config: DeploymentConfig,
    *,
    config_path: str,
    suffix: str = "",
    acknowledgements: list[Acknowledgement] | None = None,
) -> tuple[PipelineStack, Compliance]:
    """Add the pipeline stack for `config` to `app` and register the compliance checks.

    The tests call this too, so they check exactly what `cdk synth` produces.
    """
    compliance = Compliance(config, acknowledgements)
    stack = pipeline_stack(
        app,
        config,
        config_path=config_path,
        suffix=suffix,
        prepare_stage=compliance.prepare_stage,
    )
    compliance.register(app, stack.pipeline.pipeline)
    return stack, compliance


def synthesize(
    config_file: Path,
    outdir: Path,
    *,
    suffix: str = "",
    context: dict[str, Any] | None = None,
    acknowledgements: list[Acknowledgement] | None = None,
) -> tuple[DeploymentConfig, PipelineStack, Compliance]:
    """Build and synthesize `config_file` into `outdir` in this process, with the wiring and
    cdk.json's feature flags `cdk synth` uses; for the tests and `make policies`. (The checks
    main() runs on the written templates, the bake minimum, listener rules and waiver dates, are
    not run here.)"""
    config = load_config(config_file)
    app = cdk.App(outdir=str(outdir), context={**CDK_CLI_CONTEXT, **(context or {})})
    inside = config_file.resolve().is_relative_to(ROOT)
    stack, compliance = build(
        app,
        config,
        config_path=config_file.resolve().relative_to(ROOT).as_posix() if inside else "config.toml",
        suffix=suffix,
        acknowledgements=acknowledgements,
    )
    app.synth()
    return config, stack, compliance


def pipeline_stack(
    app: cdk.App,
    config: DeploymentConfig,
    *,
    config_path: str,
    suffix: str = "",
    prepare_stage: Callable[[cdk.Stage], None] | None = None,
    fast_layout: bool = True,
) -> PipelineStack:
    """The pipeline stack alone, without the compliance checks (`make bench` builds CDK
    Pipelines' default layout with `fast_layout=False` to compare)."""
    return PipelineStack(
        app,
        "Pipeline",
        stack_name=f"{config.pipeline.project}-pipeline{suffix}",
        env=cdk.Environment(account=config.pipeline.account, region=config.pipeline.region),
        synthesizer=cdk.DefaultStackSynthesizer(qualifier=config.pipeline.qualifier),
        config=config,
        config_path=config_path,
        suffix=suffix,
        cli_version=cdk_cli_version(),
        prepare_stage=prepare_stage,
        fast_layout=fast_layout,
    )


def _listener_rules_unchanged(assembly: Path, *, accept: bool) -> bool:
    """service/listener_guard.py: refuse rules that CloudFormation would rewrite after a release;
    with `accept`, record them instead (an intended change, docs/releases.md, "Changing the listener
    rules"). The pipeline (CodeBuild) also refuses stacks whose rules were never recorded."""
    rendered = listener_guard.rendered_rules(assembly)
    if accept:
        listener_guard.write_record(rendered)
        print(
            f"Recorded the listener rules of {', '.join(sorted(rendered))} in "
            f"{_shown(listener_guard.RECORD)}; commit it with the change.",
            file=sys.stderr,
        )
        return True
    verdict = listener_guard.check(rendered, listener_guard.read_record())
    record = _shown(listener_guard.RECORD)
    if verdict.changed:
        print(
            "error: this change makes CloudFormation rewrite listener rules that ECS owns after a "
            "release, which can send production traffic to a target group without tasks "
            f"(aws/aws-cdk#36649): {'; '.join(verdict.changed)}. If it is intended, follow "
            "docs/releases.md 'Changing the listener rules', record it with "
            f"`make accept-listener-rules CONFIG=...` and commit {record}.",
            file=sys.stderr,
        )
        return False
    if verdict.unrecorded:
        stacks = ", ".join(verdict.unrecorded)
        if os.environ.get("CODEBUILD_BUILD_ID"):
            print(
                f"error: the listener rules of {stacks} are not recorded in {record}, so nothing "
                "would guard them after the first release: run `make accept-listener-rules "
                "CONFIG=...` and commit the file.",
                file=sys.stderr,
            )
            return False
        print(
            f"note: the listener rules of {stacks} are not recorded yet; before the first push, "
            f"run `make accept-listener-rules CONFIG=...` and commit {record} (the pipeline "
            "refuses unrecorded rules).",
            file=sys.stderr,
        )
    return True


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _remove_if_empty(outdir: Path) -> None:
    """cdk.App creates its output directory up front; leave nothing behind for a refused config."""
    if outdir.is_dir() and not any(outdir.iterdir()):
        outdir.rmdir()


def _suffix(value: str) -> str:
    """`-c suffix=NAME` -> '-NAME', so several copies of the deployment can live side by side."""
    if not value:
        return ""
    if not re.fullmatch(r"[a-z][a-z0-9]{0,11}", value):
        raise ConfigError(
            f"context 'suffix' = {value!r}: expected 1 to 12 lower-case letters and digits, "
            "starting with a letter (it becomes part of every stack and pipeline name)."
        )
    return f"-{value}"


if __name__ == "__main__":
    sys.exit(main())
