"""`make synth` leaves cdk.out/ as it was whenever the synth does not pass, and Ctrl-C ends it
without a traceback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from app import CDK_CLI_CONTEXT
from ops.synth import SynthError, clean_failure, promote

from ..conftest import ROOT


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def _outputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    out, partial, old = tmp_path / "cdk.out", tmp_path / ".cdk.out.partial", tmp_path / ".old"
    (out / "assembly").mkdir(parents=True)
    (out / "assembly" / "a.template.json").write_text("old")
    (out / "manifest.json").write_text("old")
    partial.mkdir()
    (partial / "manifest.json").write_text("new")
    return out, partial, old


def test_new_output_replaces_the_old(tmp_path: Path) -> None:
    out, partial, old = _outputs(tmp_path)
    assert promote(partial, out, old) is None
    assert _tree(out) == {"manifest.json": "new"}
    assert not partial.exists() and not old.exists()


def test_an_output_that_cannot_be_deleted_is_never_half_emptied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, partial, old = _outputs(tmp_path)
    real_rmtree = shutil.rmtree

    def stubborn(path: Any, ignore_errors: bool = False, **kwargs: Any) -> None:
        # As a file held open or a read-only directory would: one file of the old output stays.
        if Path(path) == old and old.exists():
            (old / "manifest.json").unlink()
            return
        real_rmtree(path, ignore_errors=ignore_errors, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", stubborn)
    warning = promote(partial, out, old)
    assert warning is not None and "left in .old/" in warning
    assert _tree(out) == {"manifest.json": "new"}, "the new output is whole"


def test_an_output_that_cannot_be_moved_aside_is_left_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, partial, old = _outputs(tmp_path)
    before = _tree(out)
    real_rename = Path.rename

    def refuse(self: Path, target: Any) -> Any:
        if self == out:
            raise PermissionError(13, "Permission denied")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", refuse)
    with pytest.raises(SynthError, match=r"cannot move cdk.out/ aside \(Permission denied\); "):
        promote(partial, out, old)
    assert _tree(out) == before


def test_a_failure_keeps_the_report_and_removes_an_empty_context_it_created(
    tmp_path: Path,
) -> None:
    partial = tmp_path / ".cdk.out.partial"
    partial.mkdir()
    (partial / "validation-report.json").write_text('{"pluginReports": []}')
    (tmp_path / "cdk.context.json").write_text("{}\n")
    notes = clean_failure(partial, tmp_path, context_existed=False)
    assert notes == ["The rule report is validation-report.json in the repository root."]
    assert (tmp_path / "validation-report.json").read_text() == '{"pluginReports": []}'
    assert not partial.exists()
    assert not (tmp_path / "cdk.context.json").exists()


@pytest.mark.parametrize(
    ("existed", "content"), [(True, "{}"), (False, '{"vpc-provider:x": {"vpcId": "vpc-1"}}')]
)
def test_a_context_file_with_content_or_from_before_is_kept(
    tmp_path: Path, existed: bool, content: str
) -> None:
    (tmp_path / "cdk.context.json").write_text(content)
    clean_failure(tmp_path / "absent", tmp_path, context_existed=existed)
    assert json.loads((tmp_path / "cdk.context.json").read_text()) == json.loads(content)


def test_ctrl_c_during_synth_ends_without_a_traceback(tmp_path: Path) -> None:
    env = {
        **os.environ,
        # cdk.json's feature flags, as the CLI passes them (without them the app stops early).
        "CDK_CONTEXT_JSON": json.dumps(CDK_CLI_CONTEXT),
        "CDK_OUTDIR": str(tmp_path / "out"),
    }
    process = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    time.sleep(1.5)  # inside the construct building, which takes several seconds
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGINT, stderr
    assert "Traceback" not in stderr
    assert "KeyboardInterrupt" not in stderr and "BrokenPipeError" not in stderr


def _fake_cdk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> Path:
    """The CLI replaced by a script (the real one is exercised in tests/test_app.py): `main`'s
    own handling of success, failure and interruption, in a repository of its own."""
    import ops.synth

    cdk = tmp_path / "cdk"
    cdk.write_text("#!/bin/sh\n" + script)
    cdk.chmod(0o755)
    root = tmp_path / "repo"
    (root / "config").mkdir(parents=True)
    (root / "config" / "default.toml").write_text("")
    monkeypatch.setattr(ops.synth, "CDK", cdk)
    monkeypatch.setattr(ops.synth, "ROOT", root)
    for name, path in (
        ("OUT", "cdk.out"),
        ("PARTIAL", ".cdk.out.partial"),
        ("OLD", ".cdk.out.old"),
    ):
        monkeypatch.setattr(ops.synth, name, root / path)
    monkeypatch.setattr(ops.synth, "CONTEXT", root / "cdk.context.json")
    monkeypatch.setattr(
        ops.synth, "repository_config", lambda value: value if value.strip() else ""
    )
    (root / "cdk.out").mkdir()
    (root / "cdk.out" / "manifest.json").write_text("old")
    return root


# The script finds --output as its last argument.
WRITES_OUTPUT = 'for last; do :; done\nmkdir -p "$last" && echo new > "$last/manifest.json"\n'


def test_a_passing_synth_replaces_cdk_out_and_names_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ops.synth import main

    root = _fake_cdk(tmp_path, monkeypatch, WRITES_OUTPUT)
    (root / "validation-report.json").write_text("from an earlier failure")
    assert main(["--config", "config/my config.toml", "--suffix", "alice"]) == 0
    assert (root / "cdk.out" / "manifest.json").read_text() == "new\n"
    assert not (root / "validation-report.json").exists()
    assert capsys.readouterr().out == (
        "Synthesized cdk.out/ from config/my config.toml, with suffix alice.\n"
    )


@pytest.mark.parametrize(
    ("exit_code", "code", "word"), [(1, 1, "failed"), (130, 130, "interrupted")]
)
def test_a_failed_or_interrupted_synth_leaves_cdk_out_as_it_was(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    exit_code: int,
    code: int,
    word: str,
) -> None:
    from ops.synth import main

    script = (
        WRITES_OUTPUT + 'echo "{}" > "$last/validation-report.json"\necho "{}" > cdk.context.json\n'
        f"exit {exit_code}\n"
    )
    root = _fake_cdk(tmp_path, monkeypatch, script)
    monkeypatch.chdir(root)
    assert main(["--config", "config/default.toml"]) == code
    assert (root / "cdk.out" / "manifest.json").read_text() == "old"
    assert not (root / ".cdk.out.partial").exists()
    assert not (root / "cdk.context.json").exists()
    assert (root / "validation-report.json").exists()
    assert capsys.readouterr().err == (
        f"make synth {word}; cdk.out/ was left as it was. "
        "The rule report is validation-report.json in the repository root.\n"
    )


def test_operator_commands_end_quietly_on_ctrl_c() -> None:
    """What every ops module's entry point does first (ops.quiet_interrupts)."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import ops, time; ops.quiet_interrupts(); print('ready', flush=True); time.sleep(30)",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == -signal.SIGINT
    assert stderr == ""


COMMANDS = sorted(
    path.stem
    for path in (ROOT / "ops").glob("*.py")
    if 'if __name__ == "__main__":' in path.read_text(encoding="utf-8")
)


def test_the_commands_are_found() -> None:
    assert {"bench", "bootstrap", "destroy", "diagram", "doctor", "scan", "synth"} <= set(COMMANDS)


@pytest.mark.parametrize("module", COMMANDS)
def test_each_operator_command_installs_the_quiet_interrupts(module: str) -> None:
    source = (ROOT / "ops" / f"{module}.py").read_text()
    entry = source[source.index('if __name__ == "__main__":') :]
    assert "quiet_interrupts()" in entry or "signal.SIG_DFL" in entry, module


def test_accepting_listener_rules_passes_the_switch_to_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = tmp_path / "argv"
    _fake_cdk(tmp_path, monkeypatch, f'echo "$@" > {seen}\nexit 1\n')
    import ops.synth

    ops.synth.main(["--config", "config/default.toml", "--accept-listener-rules"])
    assert "-c accept-listener-rules=true" in seen.read_text()
