"""Shared fixtures: each distinct config is synthesized once per test session, exactly as
`cdk synth` would (same wiring from app.py, same feature flags from cdk.json)."""

from __future__ import annotations

import os

# As in app.py: set before aws_cdk starts the jsii kernel, so tests synthesize exactly as `make`.
os.environ.setdefault("CDK_VALIDATION", "false")

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app import CDK_CLI_CONTEXT
from app import synthesize as app_synthesize
from configuration import DeploymentConfig
from policies.compliance import Compliance
from stacks.pipeline import PipelineStack
from stages.deployment import DeploymentStage

ROOT = Path(__file__).resolve().parents[1]
# Figures tests report (the deploy-permission check's counts), printed after the run. Tests run
# on several xdist workers, so they go through files that the controller reads at the end.
FIGURES = ROOT / "build" / "test-figures"
DEFAULT_CONFIG = ROOT / "config" / "default.toml"
FIXTURES = ROOT / "tests" / "fixtures"
# What the CDK CLI gives app.py, so the templates match `cdk synth`'s.
CDK_CONTEXT: dict[str, Any] = CDK_CLI_CONTEXT


@dataclass(frozen=True)
class Synthesized:
    config: DeploymentConfig
    stack: PipelineStack
    compliance: Compliance
    outdir: Path

    def stage(self, name: str) -> DeploymentStage:
        return next(stage for stage in self.stack.stages if stage.stage_name == name)


def synthesize(config_file: Path, outdir: Path, **options: Any) -> Synthesized:
    """app.synthesize (suffix=, context=, acknowledgements=), kept with its output directory."""
    return Synthesized(*app_synthesize(config_file, outdir, **options), outdir)


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Synthesized]:
    """`synth(config_file, suffix="", context=None)`, cached per session."""

    @functools.cache
    def cached(config_file: Path, suffix: str, context: str) -> Synthesized:
        outdir = tmp_path_factory.mktemp(f"cdk.out-{config_file.stem}{suffix}")
        return synthesize(config_file, outdir, suffix=suffix, context=json.loads(context))

    def run(
        config_file: Path = DEFAULT_CONFIG, suffix: str = "", context: str = "{}"
    ) -> Synthesized:
        # One cache key however the arguments are spelled (by position or by name): functools'
        # cache tells them apart, and a second spelling would synthesize the config again.
        return cached(config_file, suffix, context)

    return run


@pytest.fixture(scope="session")
def default_synth(synth: Callable[..., Synthesized]) -> Synthesized:
    return synth()


@pytest.fixture(scope="session")
def five_stage_synth(synth: Callable[..., Synthesized]) -> Synthesized:
    """Five stages in waves across two regions, with a suffix."""
    return synth(FIXTURES / "five-stages.toml", suffix="-blue")


@pytest.fixture(scope="session")
def imported_synth(synth: Callable[..., Synthesized]) -> Synthesized:
    """The config that uses an existing VPC and cluster; the VPC lookup is answered from a
    committed context file, as a user's cdk.context.json would."""
    context = (FIXTURES / "imported.context.json").read_text()
    return synth(FIXTURES / "imported.toml", context=context)


@pytest.fixture(params=["default_synth", "five_stage_synth", "imported_synth"])
def each_example_synth(request: pytest.FixtureRequest) -> Synthesized:
    """Each shape the committed policies cover: the default config, five stages, imported."""
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


def record_figure(line: str) -> None:
    """Print `line` in the test run's summary (from any worker)."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(line.encode()).hexdigest()[:16]
    (FIGURES / f"{os.getpid()}-{digest}.txt").write_text(line + "\n", encoding="utf-8")


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # the controller, before any worker starts
        for stale in FIGURES.glob("*.txt"):
            stale.unlink()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = sorted(p.read_text(encoding="utf-8").strip() for p in FIGURES.glob("*.txt"))
    if lines:
        terminalreporter.section("figures")
        for line in lines:
            terminalreporter.write_line(line)
