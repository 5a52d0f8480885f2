"""`cdk synth` entry point: bad input ends in one paragraph and a non-zero exit, never a
traceback and never a partly written output directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import app

from .conftest import CDK_CONTEXT, DEFAULT_CONFIG, ROOT


def _run_app(tmp_path: Path, context: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CDK_CONTEXT_JSON": json.dumps(context),
        "CDK_OUTDIR": str(tmp_path / "out"),
    }
    return subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )


def _assert_clean_refusal(code: int, stderr: str, tmp_path: Path) -> str:
    assert code == 2, stderr
    assert "Traceback" not in stderr
    error_lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, stderr
    assert not (tmp_path / "out").exists(), "nothing may be written for a refused config"
    return error_lines[0]


def _refusal(tmp_path: Path, context: dict[str, str], capsys: pytest.CaptureFixture[str]) -> str:
    """In this process (the test above runs the real entry point in its own)."""
    code = app.main(context=context, outdir=str(tmp_path / "out"))
    return _assert_clean_refusal(code, capsys.readouterr().err, tmp_path)


@pytest.fixture
def bad_config() -> Path:
    """A bad config inside the repository (the app only accepts configs in the repository)."""
    path = ROOT / "tests" / "fixtures" / ".bad-config.toml"
    path.write_text(DEFAULT_CONFIG.read_text().replace('account = "333333333333"', 'account = "3"'))
    yield path
    path.unlink()


def test_bad_config_is_refused_in_one_paragraph(tmp_path: Path, bad_config: Path) -> None:
    # The real entry point, as the CDK CLI runs it: a process with the context in its environment.
    result = _run_app(tmp_path, {"config": str(bad_config.relative_to(ROOT))})
    line = _assert_clean_refusal(result.returncode, result.stderr, tmp_path)
    assert ".bad-config.toml: invalid config" in line
    assert "stages[1].account = '3'" in line


def test_missing_config_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _refusal(tmp_path, {"config": "config/nope.toml"}, capsys)
    assert "config file not found" in line


def test_config_outside_the_repository_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "elsewhere.toml"
    outside.write_text(DEFAULT_CONFIG.read_text())
    line = _refusal(tmp_path, {"config": str(outside)}, capsys)
    assert "must be inside the repository" in line


def test_link_inside_the_repository_to_a_file_outside_is_named_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "elsewhere.toml"
    outside.write_text(DEFAULT_CONFIG.read_text())
    link = ROOT / "config" / ".link-test.toml"
    link.symlink_to(outside)
    try:
        line = _refusal(tmp_path, {"config": "config/.link-test.toml"}, capsys)
    finally:
        link.unlink()
    assert f"config/.link-test.toml: a symbolic link to {outside}, which is outside" in line
    assert "copy the file under config/" in line


def test_an_expired_plain_http_waiver_is_refused_at_synth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = ROOT / "tests" / "fixtures" / ".expired.toml"
    path.write_text(
        DEFAULT_CONFIG.read_text().replace(
            '\ncertificate_arn = "arn:aws:acm:eu-west-1:222222222222',
            '\nplain_http_reason = "Reached only by the team through the load balancer name."'
            "\nplain_http_expires = 2020-01-01"
            '\n# certificate_arn = "arn:aws:acm:eu-west-1:222222222222',
        )
    )
    try:
        line = _refusal(tmp_path, {"config": "tests/fixtures/.expired.toml"}, capsys)
    finally:
        path.unlink()
    assert line.startswith(
        "error: tests/fixtures/.expired.toml: stages[0].service.plain_http_expires = 2020-01-01: "
        "the stage's plain-HTTP waiver (plain_http_reason) expired"
    )


def test_bad_suffix_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _refusal(tmp_path, {"suffix": "Not OK"}, capsys)
    assert "context 'suffix' = 'Not OK'" in line


def test_a_bake_shorter_than_the_alarms_need_is_refused_after_synthesis(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The minimum comes from the synthesized alarms, so this refusal follows a full synth; the
    output is removed all the same."""
    path = ROOT / "tests" / "fixtures" / ".short-bake.toml"
    path.write_text(DEFAULT_CONFIG.read_text().replace("bake_minutes = 4 ", "bake_minutes = 3 "))
    try:
        # cdk.json's feature flags, as the CDK CLI passes them.
        context = {**CDK_CONTEXT, "config": str(path.relative_to(ROOT))}
        line = _refusal(tmp_path, context, capsys)
    finally:
        path.unlink()
    assert ".short-bake.toml: invalid config (1 problem)" in line
    assert "stages[0].release.bake_minutes = 3" in line and "at least 4 minutes" in line


def test_a_vpc_lookup_without_credentials_says_what_to_do_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    """Through the real CLI, as `make synth` runs it: the lookup fails for want of credentials."""
    config = ROOT / "tests" / "fixtures" / ".vpc-lookup.toml"
    config.write_text(
        DEFAULT_CONFIG.read_text()
        .replace("nat_gateways = 3", 'nat_gateways = 3\nvpc_id = "vpc-0123456789abcdef0"')
        .replace(
            "max_p99_latency_ms = 1000",
            'max_p99_latency_ms = 1000\ntest_cidrs = ["203.0.113.1/32"]',
        )
    )
    context = ROOT / "cdk.context.json"
    before = context.read_text() if context.exists() else None  # a user's committed lookups
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env |= {
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    try:
        result = subprocess.run(
            [sys.executable, "-m", "ops.synth", "--config", str(config.relative_to(ROOT))],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        config.unlink()
        (ROOT / "validation-report.json").unlink(missing_ok=True)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert (
        "stage 'prod' looks up network.vpc_id = 'vpc-0123456789abcdef0' in account 333333333333"
        in errors[0]
    )
    assert "then commit cdk.context.json" in errors[0]
    assert "acknowledge" not in result.stderr.lower()
    after = context.read_text() if context.exists() else None
    assert after == before, "no empty cdk.context.json is left behind, and no other is changed"
    assert not (ROOT / ".cdk.out.partial").exists()
