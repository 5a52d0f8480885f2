"""`make synth`: synthesize with the pinned CDK CLI into a fresh directory, and only when the whole
synth passed put it in place of cdk.out/. A refused config, a failed check, a failed lookup or
Ctrl-C leave cdk.out/ exactly as it was, and nothing half-written behind:

- the rule report of a failed synth is kept as ./validation-report.json (the directory it was
  written into is removed);
- a cdk.context.json that the failed run created holding nothing (`{}`: the CDK CLI writes one
  when a lookup fails) is removed again;
- the old cdk.out/ is renamed aside before the new one takes its name, so a cdk.out/ that cannot be
  deleted (a file held open, a read-only directory) is never half emptied.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from configuration import ConfigError, repository_config
from configuration.toolchain import ROOT

CDK = ROOT / "node_modules" / ".bin" / "cdk"
OUT = ROOT / "cdk.out"
PARTIAL = ROOT / ".cdk.out.partial"
OLD = ROOT / ".cdk.out.old"
CONTEXT = ROOT / "cdk.context.json"
REPORT = "validation-report.json"


class SynthError(Exception):
    """The new output could not be put in place; str() says what was left where."""


def promote(partial: Path, out: Path, old: Path) -> str | None:
    """Put `partial` in place of `out`. Returns a warning when the previous output could not be
    deleted afterwards (it then stays at `old`); raises SynthError, with `out` untouched, when it
    cannot even be moved aside."""
    shutil.rmtree(old, ignore_errors=True)
    if old.exists():
        raise SynthError(
            f"{old.name} is left from an earlier run and cannot be removed; remove it, then run "
            f"make synth again. {out.name}/ was left as it was."
        )
    if out.exists():
        try:
            out.rename(old)
        except OSError as error:
            raise SynthError(
                f"cannot move {out.name}/ aside ({error.strerror}); {out.name}/ was left as it was."
            ) from None
    partial.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    if old.exists():
        return (
            f"warning: the previous output could not be deleted and is left in {old.name}/; "
            "remove it yourself."
        )
    return None


def clean_failure(partial: Path, root: Path, context_existed: bool) -> list[str]:
    """Tidy up after a failed synth; returns what the user should know."""
    notes = []
    report = partial / REPORT
    if report.is_file():
        shutil.move(report, root / REPORT)
        notes.append(f"The rule report is {REPORT} in the repository root.")
    shutil.rmtree(partial, ignore_errors=True)
    context = root / CONTEXT.name
    if not context_existed and context.is_file():
        try:
            empty = json.loads(context.read_text()) == {}
        except ValueError:
            empty = False
        if empty:
            context.unlink()
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Synthesize cdk.out/ from a config.")
    parser.add_argument("--config", default="config/default.toml")
    parser.add_argument("--suffix", default="")
    parser.add_argument(
        "--accept-listener-rules",
        action="store_true",
        help="record the listener rules this config renders (service/listener-rules.json)",
    )
    args = parser.parse_args(argv)
    try:
        config = repository_config(args.config)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    context_existed = CONTEXT.exists()
    shutil.rmtree(PARTIAL, ignore_errors=True)
    command = [str(CDK), "synth", "--quiet", "--no-notices", "-c", f"config={config}"]
    if args.suffix:
        command += ["-c", f"suffix={args.suffix}"]
    if args.accept_listener_rules:
        command += ["-c", "accept-listener-rules=true"]
    command += ["--output", str(PARTIAL)]
    try:
        code = subprocess.run(command, cwd=ROOT, check=False).returncode  # noqa: S603
    except KeyboardInterrupt:
        code = 130
    if code != 0:
        notes = clean_failure(PARTIAL, ROOT, context_existed)
        what = "interrupted" if code in (130, -signal.SIGINT) else "failed"
        print(
            " ".join([f"make synth {what}; cdk.out/ was left as it was.", *notes]), file=sys.stderr
        )
        return 130 if what == "interrupted" else 1
    try:
        warning = promote(PARTIAL, OUT, OLD)
    except SynthError as error:
        shutil.rmtree(PARTIAL, ignore_errors=True)
        print(f"error: {error}", file=sys.stderr)
        return 1
    if warning:
        print(warning, file=sys.stderr)
    (ROOT / REPORT).unlink(missing_ok=True)  # a report of an earlier failure no longer applies
    suffix = f", with suffix {args.suffix}" if args.suffix else ""
    print(f"Synthesized cdk.out/ from {config}{suffix}.")
    return 0


if __name__ == "__main__":
    # Ctrl-C ends the CLI too; main() tidies up and the exit code (130) says so, without a
    # traceback. SIGINT stays Python's so that the tidying runs.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
