"""`make bench`: how fast the project is, measured side by side in one run on this machine.

1. Synth time of the default config (every enabled rule pack) through the CDK CLI, against the
   floor: a bare one-stack CDK app synthesized by the same CLI, Python and Node.
2. Synth time with 2, 6 and 12 targets: how the cost grows with the fleet.
3. The pipeline's critical path: sequential actions from source to the last stage, against CDK
   Pipelines' default layout (change sets, one publishing action per asset) for the same stacks.
4. The modelled duration of each stage's release, from its synthesized service template
   (service/timing.py).
5. Where the synth time goes, in one fresh process that has already synthesized the bare app
   (whose one-time costs the floor includes): importing the app (mostly the Python side of the
   CDK modules it uses: ECS, load balancing, pipelines, cdk-nag), then building and synthesizing
   the default app twice. The first pass pays the one-time cost of loading and JIT-compiling
   those modules in Node; the second is the app's own work. The floor plus the imports plus that
   one-time cost is the least any synth using these modules can take.
6. The test suite (`pytest`, as `make test` runs it), in default-config synths' worth of time.

Results go to build/bench/results.json and results.md; docs/speed.md summarizes them. A benchmark, not a
test: it reports targets as met or missed and always exits 0 unless it could not measure.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from configuration.toolchain import ROOT, cdk_json_context
from ops import quiet_interrupts
from ops.diagram import PipelineStage, pipeline_template, read_stages
from service.timing import ServiceTimings, release_phases, release_seconds, service_templates

OUT = ROOT / "build" / "bench"
T = TypeVar("T")
CDK = ROOT / "node_modules" / ".bin" / "cdk"
PYTHON = ROOT / ".venv" / "bin" / "python"
RUNS = 3
TARGETS = {
    "synth_vs_floor": 1.5,
    "twelve_vs_default": 2.5,
    "critical_path_vs_default_layout": 0.6,
    "test_suite_in_synths": 4.0,
}

BARE_APP = """\
import aws_cdk as cdk
from aws_cdk import aws_s3 as s3

app = cdk.App()
stack = cdk.Stack(app, "Bare")
s3.Bucket(stack, "Bucket")
app.synth()
"""


def _env(validation: bool = False) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{ROOT / 'node_modules' / '.bin'}:{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        "CDK_DISABLE_VERSION_CHECK": "true",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        # app.py turns CDK's built-in template validation off (cfn-lint runs in `make test`);
        # the floor is measured both like for like and with CDK's defaults.
        "CDK_VALIDATION": "true" if validation else "false",
    }


def _timed(argv: list[str], cwd: Path, validation: bool = False) -> float:
    start = time.perf_counter()
    result = subprocess.run(  # noqa: S603 - the project's own CDK CLI
        argv, cwd=cwd, env=_env(validation), capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stderr[-3000:]}")
    return elapsed


def median_synth(argv: list[str], cwd: Path, runs: int = RUNS, validation: bool = False) -> float:
    return statistics.median(_timed(argv, cwd, validation) for _ in range(runs))


def floor_seconds(validation: bool = False) -> float:
    bare = OUT / "bare"
    bare.mkdir(parents=True, exist_ok=True)
    (bare / "app.py").write_text(BARE_APP)
    (bare / "cdk.json").write_text(json.dumps({"app": f"{PYTHON} app.py"}))
    argv = [str(CDK), "synth", "--quiet", "--no-notices", "-o", "cdk.out"]
    return median_synth(argv, bare, validation=validation)


def synth_seconds(config: Path, runs: int = RUNS) -> float:
    outdir = OUT / f"cdk.out-{config.stem}"
    argv = [
        str(CDK),
        "synth",
        "--quiet",
        "--no-notices",
        "-c",
        f"config={config}",
        "-o",
        str(outdir),
    ]
    return median_synth(argv, ROOT, runs)


def fleet_config(
    count: int,
    *,
    directory: Path | None = None,
    wave: str | list[str] | None = None,
    production: bool = False,
) -> Path:
    """The default config's pipeline with `count` targets in sequence (or in `wave`, one name for
    all or one per target), written to `directory` (default build/bench)."""
    lines = (ROOT / "config" / "default.toml").read_text()
    head = lines[: lines.index("[[stages]]")]
    stages = []
    for index in range(count):
        stage_wave = wave[index] if isinstance(wave, list) else wave
        stages.append(
            f"""
[[stages]]
name = "target{index:02d}"
account = "{500000000000 + index}"
region = "eu-west-1"
availability_zones = ["eu-west-1a", "eu-west-1b"]
production = {str(production).lower()}
"""
            + (f'wave = "{stage_wave}"\n' if stage_wave else "")
            + f"""
[stages.network]
cidr = "10.{index}.0.0/16"

[stages.service]
plain_http_reason = "A benchmark target, never deployed: it only measures synthesis."
plain_http_expires = {dt.date.today() + dt.timedelta(days=30)}
"""
            + ("\n[stages.release]\nbake_minutes = 10\n" if production else "")
        )
    path = (directory or OUT) / f"fleet-{count}.toml"
    path.write_text(head + "".join(stages))
    return path


def progress(label: str, measure: Callable[[], T], out: Callable[[str], None] = print) -> T:
    """Run one measurement and say what it gave as soon as it is done: the whole bench takes
    minutes, and silence that long looks like a hang."""
    start = time.perf_counter()
    value = measure()
    took = time.perf_counter() - start
    if isinstance(value, float):
        shown = f"{value:.2f} s"
    elif isinstance(value, dict):
        shown = ", ".join(f"{k} {v:.2f} s" for k, v in value.items())
    elif isinstance(value, tuple):
        shown = str(value[0])
    else:
        shown = str(value)
    out(f"  {label}: {shown} (measured in {took:.0f} s)")
    sys.stdout.flush()
    return value


def modelled_releases(cloud_assembly: Path) -> dict[str, dict[str, Any]]:
    """Per stage, the modelled release of its synthesized service: total seconds and phases."""
    releases: dict[str, dict[str, Any]] = {}
    for name, template in service_templates(cloud_assembly).items():
        timings = ServiceTimings.from_template(template)
        releases[name] = {
            "seconds": release_seconds(timings),
            "phases": [(p.name, p.seconds) for p in release_phases(timings)],
        }
    return releases


def release_table(releases: dict[str, dict[str, Any]]) -> list[str]:
    """The modelled release of each stage, phase by phase (docs/releases.md, *How long a release
    takes* table)."""
    names = list(releases)
    phases: dict[str, dict[str, float]] = {}
    for name in names:
        for phase, seconds in releases[name]["phases"]:
            phases.setdefault(phase, {})[name] = seconds
    rows = [f"| phase | {' | '.join(names)} |", "| --- |" + " --- |" * len(names)]
    for phase, by_stage in phases.items():
        cells = [_duration(by_stage[n]) if n in by_stage else "" for n in names]
        rows.append(f"| {phase} | {' | '.join(cells)} |")
    totals = [f"**about {releases[n]['seconds'] / 60:.1f} min**" for n in names]
    rows.append(f"| **total per stage** | {' | '.join(totals)} |")
    return rows


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:.0f} s"


def critical_path(stages: list[PipelineStage]) -> tuple[int, list[tuple[str, int]]]:
    """Sequential actions: per pipeline stage, its distinct run orders, summed over stages."""
    per_stage = [
        (stage.name, len({action.run_order for action in stage.actions})) for stage in stages
    ]
    return sum(n for _, n in per_stage), per_stage


def scan_position(stages: list[PipelineStage]) -> str:
    """Where the security scan sits: its pipeline stage and its place among that stage's
    sequential steps (for the report)."""
    for stage in stages:
        orders = sorted({action.run_order for action in stage.actions})
        for action in stage.actions:
            if action.name == "SecurityScan":
                return f"{stage.name}, step {orders.index(action.run_order) + 1} of {len(orders)}"
    return "not found"


def default_layout_template() -> dict[str, Any]:
    """The same stacks with CDK Pipelines' default layout, synthesized in a fresh process (its own
    jsii kernel, the same environment as the other measurements)."""
    outdir = OUT / "cdk.out-default-layout"
    argv = [str(PYTHON), "-m", "ops.bench", "--default-layout", str(outdir)]
    subprocess.run(argv, cwd=ROOT, env=_env(), check=True, capture_output=True)  # noqa: S603
    return pipeline_template(outdir)


def _synthesize_default_layout(outdir: Path) -> None:
    """The pipeline stack of the default config with `fast_layout=False`. The compliance checks
    are left out: the comparison is about the shape of the pipeline only."""
    import aws_cdk as cdk

    from app import pipeline_stack
    from configuration import load_config

    app = cdk.App(outdir=str(outdir), context=cdk_json_context())
    config = load_config(ROOT / "config" / "default.toml")
    pipeline_stack(app, config, config_path="config/default.toml", fast_layout=False)
    app.synth()


def in_process_seconds() -> dict[str, float]:
    """In a fresh process: importing the app (its modules and the CDK modules they use, beyond
    `aws_cdk` itself), then building and synthesizing the default app twice."""
    argv = [str(PYTHON), "-m", "ops.bench", "--in-process", str(OUT / "cdk.out-passes")]
    result = subprocess.run(  # noqa: S603 - the project's own interpreter
        argv, cwd=ROOT, env=_env(), check=True, capture_output=True, text=True
    )
    timings: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return timings


def _in_process(outdir: Path) -> None:
    import aws_cdk as cdk
    from aws_cdk import aws_s3 as s3

    # First the bare app, twice: the floor already pays for loading CDK's core, so that one-time
    # cost must not be counted again in the default app's first pass.
    for name in ("bare-first", "bare-second"):
        bare = cdk.App(outdir=str(outdir / name))
        s3.Bucket(cdk.Stack(bare, "Bare"), "Bucket")
        bare.synth()
    start = time.perf_counter()
    from app import build
    from configuration import load_config

    timings = {"import": time.perf_counter() - start}
    config = load_config(ROOT / "config" / "default.toml")
    for name in ("first", "second"):
        start = time.perf_counter()
        app = cdk.App(outdir=str(outdir / name), context=cdk_json_context())
        build(app, config, config_path="config/default.toml")
        app.synth()
        timings[name] = time.perf_counter() - start
    print(json.dumps(timings))


def test_suite_seconds() -> float:
    """`pytest` as `make test` runs it (the lint before it is not counted)."""
    return _timed([str(PYTHON), "-m", "pytest", "-q"], ROOT)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--default-layout"]:
        _synthesize_default_layout(Path(args[1]))
        return 0
    if args[:1] == ["--in-process"]:
        _in_process(Path(args[1]))
        return 0
    if args:
        print("usage: python -m ops.bench   (`make bench`; it takes no arguments)", file=sys.stderr)
        return 2
    if not CDK.exists() or not PYTHON.exists():
        print(
            "error: run `make setup` first (the benchmark uses the project's own toolchain).",
            file=sys.stderr,
        )
        return 2
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    print(
        f"Measuring on {os.cpu_count()} cores, median of {RUNS} runs where noted; each line "
        "appears as its measurement finishes (about two minutes in all).",
        flush=True,
    )
    floor = progress("bare one-stack app synth (floor)", floor_seconds)
    floor_cdk_defaults = progress(
        "the same with CDK's default validation on", lambda: floor_seconds(validation=True)
    )
    default = progress(
        "default config synth", lambda: synth_seconds(ROOT / "config" / "default.toml")
    )
    fleets: dict[int, float] = {}
    for count in (2, 6, 12):
        fleets[count] = progress(
            f"synth with {count} targets", functools.partial(synth_seconds, fleet_config(count), 1)
        )
    passes = progress("in one process: import, first and second synth", in_process_seconds)
    imports, cold, warm = passes["import"], passes["first"], passes["second"]
    tests = progress("test suite (pytest)", test_suite_seconds)
    our_layout = read_stages(pipeline_template(OUT / "cdk.out-default"))
    ours, ours_stages = critical_path(our_layout)
    scan = scan_position(our_layout)
    baseline, baseline_stages = progress(
        "critical path of CDK Pipelines' default layout (sequential actions)",
        lambda: critical_path(read_stages(default_layout_template())),
    )
    releases = modelled_releases(OUT / "cdk.out-default")
    ratios = {
        "synth_vs_floor": default / floor,
        "twelve_vs_default": fleets[12] / default,
        "critical_path_vs_default_layout": ours / baseline,
        "test_suite_in_synths": tests / default,
    }
    library_load = max(cold - warm, 0.0)
    lower_bound = floor + imports + library_load
    met = {k: ratios[k] <= TARGETS[k] for k in TARGETS}
    results: dict[str, Any] = {
        "floor_seconds": round(floor, 2),
        "floor_with_cdk_default_validation_seconds": round(floor_cdk_defaults, 2),
        "default_config_seconds": round(default, 2),
        "fleet_seconds": {str(k): round(v, 2) for k, v in fleets.items()},
        "in_process_seconds": {k: round(v, 2) for k, v in passes.items()},
        "library_load_seconds": round(library_load, 2),
        "synth_lower_bound_seconds": round(lower_bound, 2),
        "test_suite_seconds": round(tests, 2),
        "critical_path": {
            "ours": ours,
            "default_layout": baseline,
            "ours_by_stage": ours_stages,
            "security_scan": scan,
            "default_by_stage": baseline_stages,
        },
        "release_seconds": releases,
        "ratios": {k: round(v, 2) for k, v in ratios.items()},
        "targets": {k: {"limit": TARGETS[k], "met": met[k]} for k in TARGETS},
    }
    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "| measure | value | target |",
        "| --- | --- | --- |",
        f"| bare one-stack app synth (floor, same settings as app.py) | {floor:.1f} s | |",
        f"| bare one-stack app synth with CDK's default validation on | {floor_cdk_defaults:.1f} s | |",
        f"| default config synth, all rule packs | {default:.1f} s ({ratios['synth_vs_floor']:.2f}x floor, {default / floor_cdk_defaults:.2f}x the CDK-defaults floor) | <= {TARGETS['synth_vs_floor']}x: {'met' if met['synth_vs_floor'] else 'MISSED'} |",
        f"| in one process: importing the app and the CDK modules it uses | {imports:.1f} s | |",
        f"| in one process: building and synthesizing the default app, first pass, second pass | {cold:.1f} s, {warm:.1f} s | |",
        f"| least a synth using these modules can take (floor + imports + first pass - second) | {lower_bound:.1f} s ({lower_bound / floor:.2f}x floor) | |",
        *[
            f"| synth with {count} targets | {seconds:.1f} s | |"
            for count, seconds in fleets.items()
        ],
        f"| 12 targets vs default config | {ratios['twelve_vs_default']:.2f}x | <= {TARGETS['twelve_vs_default']}x: {'met' if met['twelve_vs_default'] else 'MISSED'} |",
        f"| critical path (sequential actions) | {ours} vs {baseline} default layout ({ratios['critical_path_vs_default_layout']:.0%}) | <= 60%: {'met' if met['critical_path_vs_default_layout'] else 'MISSED'} |",
        f"| critical path by stage | {', '.join(f'{name} {n}' for name, n in ours_stages)}; the security scan: {scan} | |",
        f"| test suite (pytest, 2 workers) | {tests:.1f} s ({ratios['test_suite_in_synths']:.1f} default synths) | <= {TARGETS['test_suite_in_synths']:.0f} synths: {'met' if met['test_suite_in_synths'] else 'MISSED'} |",
        *[
            f"| modelled release, {name} | {info['seconds'] / 60:.1f} min | |"
            for name, info in releases.items()
        ],
    ]
    lines += ["", *release_table(releases)]
    (OUT / "results.md").write_text("\n".join(lines) + "\n")
    print()
    print("\n".join(lines))
    print(f"\nResults: {OUT / 'results.json'} and {OUT / 'results.md'}")
    return 0


if __name__ == "__main__":
    quiet_interrupts()
    sys.exit(main())
