"""Shared fixtures: each distinct config is synthesized once per test session, exactly as
`cdk synth` would (same wiring from app.py, same feature flags from cdk.json)."""

from __future__ import annotations

import os

# As in app.py: set before aws_cdk starts the jsii kernel, so tests synthesize exactly as `make`.
os.environ.setdefault("CDK_VALIDATION", "false")

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from app import build
from configuration import DeploymentConfig, load_config
from configuration.toolchain import cdk_json_context
from policies.compliance import Acknowledgement, Compliance
from stacks.pipeline import PipelineStack
from stages.deployment import DeploymentStage

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "config" / "default.toml"
FIXTURES = ROOT / "tests" / "fixtures"
CDK_CONTEXT: dict[str, Any] = {
    **cdk_json_context(),
    # What the CDK CLI adds when it runs app.py, so the templates match `cdk synth`'s.
    "aws:cdk:enable-path-metadata": True,
    "aws:cdk:enable-asset-metadata": True,
}


@dataclass(frozen=True)
class Synthesized:
    config: DeploymentConfig
    stack: PipelineStack
    compliance: Compliance
    outdir: Path

    def stage(self, name: str) -> DeploymentStage:
        return next(stage for stage in self.stack.stages if stage.stage_name == name)


def synthesize(
    config_file: Path,
    outdir: Path,
    *,
    suffix: str = "",
    context: dict[str, Any] | None = None,
    acknowledgements: list[Acknowledgement] | None = None,
) -> Synthesized:
    """Build and synthesize the app for `config_file` into `outdir`."""
    config = load_config(config_file)
    app = cdk.App(outdir=str(outdir), context={**CDK_CONTEXT, **(context or {})})
    inside = config_file.resolve().is_relative_to(ROOT)
    stack, compliance = build(
        app,
        config,
        config_path=config_file.resolve().relative_to(ROOT).as_posix() if inside else "config.toml",
        suffix=suffix,
        acknowledgements=acknowledgements,
    )
    app.synth()
    return Synthesized(config, stack, compliance, outdir)


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Synthesized]:
    """`synth(config_file, suffix="", context=None)`, cached per session."""

    @functools.cache
    def run(
        config_file: Path = DEFAULT_CONFIG, suffix: str = "", context: str = "{}"
    ) -> Synthesized:
        outdir = tmp_path_factory.mktemp(f"cdk.out-{config_file.stem}{suffix}")
        return synthesize(config_file, outdir, suffix=suffix, context=json.loads(context))

    return run


@pytest.fixture(scope="session")
def default_synth(synth: Callable[..., Synthesized]) -> Synthesized:
    return synth()


@pytest.fixture(scope="session")
def imported_synth(synth: Callable[..., Synthesized]) -> Synthesized:
    """The config that uses an existing VPC and cluster; the VPC lookup is answered from a
    committed context file, as a user's cdk.context.json would."""
    context = (FIXTURES / "imported.context.json").read_text()
    return synth(FIXTURES / "imported.toml", context=context)
