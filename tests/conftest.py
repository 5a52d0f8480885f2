"""Shared fixtures: each distinct config is synthesized once per test session."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import aws_cdk as cdk
import pytest

from app import build
from configuration import DeploymentConfig, load_config
from stacks.pipeline import PipelineStack

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "config" / "default.toml"
FIXTURES = ROOT / "tests" / "fixtures"


@functools.cache
def _synth(config_file: Path, suffix: str, outdir: Path) -> PipelineStack:
    config = load_config(config_file)
    app = cdk.App(outdir=str(outdir))
    stack = build(app, config, config_path=config_file.relative_to(ROOT).as_posix(), suffix=suffix)
    app.synth()
    return stack


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., PipelineStack]:
    """`synth(config_file, suffix="")` -> the synthesized PipelineStack, cached per session."""

    def run(config_file: Path = DEFAULT_CONFIG, suffix: str = "") -> PipelineStack:
        outdir = tmp_path_factory.getbasetemp() / f"cdk.out-{config_file.stem}{suffix}"
        return _synth(config_file, suffix, outdir)

    return run


@pytest.fixture(scope="session")
def pipeline_stack(synth: Callable[..., PipelineStack]) -> PipelineStack:
    return synth()


@pytest.fixture(scope="session")
def default_config() -> DeploymentConfig:
    return load_config(DEFAULT_CONFIG)
