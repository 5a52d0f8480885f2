"""`make diagram`: pictures of the pipeline and of the trust between accounts, drawn from the
synthesized cloud assembly (cdk.out), as SVG files in docs/.

- pipeline.svg: the pipeline's stages left to right; in each, its actions in run order (actions
  that share a run order run in parallel and are drawn side by side).
- trust.svg: which role in which account may be assumed by whom: the pipeline account's roles
  assume each target's CDK deploy and publishing roles; the deploy role passes the CloudFormation
  execution role (with the project's execution policies) to CloudFormation.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from configuration.toolchain import ROOT

DOCS = ROOT / "docs"
FONT = "font-family='Helvetica, Arial, sans-serif'"
COLOURS = {
    "Source": "#dbeafe",
    "Build": "#e0e7ff",
    "Deploy": "#dcfce7",
    "Approval": "#fef9c3",
    "Test": "#fce7f3",
}


@dataclass(frozen=True)
class Action:
    name: str
    category: str
    run_order: int
    detail: str


@dataclass(frozen=True)
class PipelineStage:
    name: str
    actions: list[Action]


class DiagramError(Exception):
    pass


def pipeline_template(cloud_assembly: Path) -> dict[str, Any]:
    for template in sorted(cloud_assembly.glob("*.template.json")):
        data = json.loads(template.read_text())
        if any(
            r["Type"] == "AWS::CodePipeline::Pipeline" for r in data.get("Resources", {}).values()
        ):
            return data  # type: ignore[no-any-return]
    raise DiagramError(f"{cloud_assembly}: no pipeline template; run `make synth` first.")


def read_stages(template: dict[str, Any]) -> list[PipelineStage]:
    [pipeline] = [
        r for r in template["Resources"].values() if r["Type"] == "AWS::CodePipeline::Pipeline"
    ]
    stages = []
    for stage in pipeline["Properties"]["Stages"]:
        actions = []
        for action in stage["Actions"]:
            configuration = action.get("Configuration", {})
            detail = action["ActionTypeId"]["Provider"]
            account = _account(json.dumps(action.get("RoleArn", "")))
            if action["ActionTypeId"]["Category"] == "Deploy" and account:
                detail = f"CloudFormation in {account}"
            elif isinstance(configuration.get("StackName"), str):
                detail = configuration["StackName"]
            category = action["ActionTypeId"]["Category"]
            name = action["Name"].removesuffix(".Deploy")
            actions.append(Action(name, category, action["RunOrder"], detail))
        stages.append(PipelineStage(stage["Name"], sorted(actions, key=lambda a: a.run_order)))
    return stages


def _account(text: str) -> str | None:
    match = re.search(r"iam::(\d{12}):role/cdk-", text)
    return match[1] if match else None


@dataclass(frozen=True)
class Trust:
    source: str  # who assumes, e.g. "111111111111: pipeline roles"
    target_account: str
    role: str
    via: str


def read_trust(cloud_assembly: Path, template: dict[str, Any]) -> tuple[str, list[Trust]]:
    """The pipeline account and every cross-account role use the assembly implies."""
    pipeline_account = _pipeline_account(cloud_assembly)
    trusts: dict[tuple[str, str], Trust] = {}
    for stage in read_stages(template):
        for action in stage.actions:
            if action.category == "Deploy" and action.detail.startswith("CloudFormation in "):
                account = action.detail.removeprefix("CloudFormation in ")
                trusts[(account, "deploy")] = Trust(
                    "pipeline", account, f"cdk-hnb659fds-deploy-role ({account})", "sts:AssumeRole"
                )
                trusts[(account, "exec")] = Trust(
                    f"cdk-hnb659fds-deploy-role ({account})",
                    account,
                    f"cdk-hnb659fds-cfn-exec-role ({account})",
                    "passed to CloudFormation; execution policies",
                )
    for manifest in cloud_assembly.glob("assembly-*/*.assets.json"):
        assets = json.loads(manifest.read_text())
        for kind in ("files", "dockerImages"):
            for asset in assets.get(kind, {}).values():
                for destination in asset["destinations"].values():
                    role_arn = destination.get("assumeRoleArn", "")
                    owner = _account(role_arn)
                    if owner:
                        role = role_arn.rsplit("/", 1)[1].rsplit(f"-{owner}", 1)[0]
                        via = "sts:AssumeRole (asset publishing)"
                        trusts[(owner, role)] = Trust("pipeline", owner, f"{role} ({owner})", via)
    return pipeline_account, sorted(trusts.values(), key=lambda t: (t.target_account, t.role))


def _pipeline_account(cloud_assembly: Path) -> str:
    manifest = json.loads((cloud_assembly / "manifest.json").read_text())
    for artifact in manifest.get("artifacts", {}).values():
        environment = artifact.get("environment", "")
        if artifact.get("type") == "aws:cloudformation:stack" and environment.startswith("aws://"):
            return str(environment.split("/")[2])
    return "pipeline account"


def _box(
    x: int, y: int, w: int, h: int, fill: str, lines: list[str], bold_first: bool = True
) -> str:
    parts = [
        f"<rect x='{x}' y='{y}' width='{w}' height='{h}' rx='6' fill='{fill}' stroke='#334155'/>"
    ]
    for i, line in enumerate(lines):
        weight = "bold" if bold_first and i == 0 else "normal"
        parts.append(
            f"<text x='{x + 8}' y='{y + 18 + 15 * i}' font-size='12' font-weight='{weight}' {FONT}>{escape(line)}</text>"
        )
    return "\n".join(parts)


def _arrow(x1: int, y1: int, x2: int, y2: int, label: str = "", dashed: bool = False) -> str:
    dash = " stroke-dasharray='5,4'" if dashed else ""
    text = (
        f"<text x='{(x1 + x2) // 2}' y='{(y1 + y2) // 2 - 6}' font-size='11' text-anchor='middle' {FONT}>{escape(label)}</text>"
        if label
        else ""
    )
    return f"<line x1='{x1}' y1='{y1}' x2='{x2}' y2='{y2}' stroke='#334155' marker-end='url(#arrow)'{dash}/>{text}"


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' viewBox='0 0 {width} {height}'>\n"
        "<defs><marker id='arrow' markerWidth='10' markerHeight='7' refX='10' refY='3.5' orient='auto'>"
        "<polygon points='0 0, 10 3.5, 0 7' fill='#334155'/></marker></defs>\n"
        f"<rect width='100%' height='100%' fill='white'/>\n"
        f"<text x='16' y='24' font-size='16' font-weight='bold' {FONT}>{escape(title)}</text>\n"
        + "\n".join(body)
        + "\n</svg>\n"
    )


def draw_pipeline(stages: list[PipelineStage], title: str) -> str:
    column, gap, top = 232, 36, 50
    body: list[str] = []
    height = 0
    for index, stage in enumerate(stages):
        x = 16 + index * (column + gap)
        orders: dict[int, list[Action]] = defaultdict(list)
        for action in stage.actions:
            orders[action.run_order].append(action)
        body.append(
            f"<text x='{x}' y='{top}' font-size='13' font-weight='bold' {FONT}>{escape(stage.name)}</text>"
        )
        y = top + 10
        for order in sorted(orders):
            group = orders[order]
            # Parallel actions stack inside one dashed frame, so every name stays readable.
            inset = 6 if len(group) > 1 else 0
            if inset:
                body.append(
                    f"<rect x='{x}' y='{y}' width='{column}' height='{len(group) * 52 + 6}' "
                    "rx='8' fill='none' stroke='#64748b' stroke-dasharray='4,3'/>"
                )
            width = column - 2 * inset
            for i, action in enumerate(group):
                fill = COLOURS.get(action.category, "#f1f5f9")
                chars = width // 7
                lines = [action.name[:chars], action.detail[:chars]]
                body.append(_box(x + inset, y + inset + i * 52, width, 46, fill, lines))
            y += len(group) * 52 + 2 * inset + 6
        height = max(height, y)
        if index:
            body.append(_arrow(x - gap + 2, top + 33, x - 4, top + 33))
    width = 16 + len(stages) * (column + gap)
    legend = (
        "Actions in a dashed frame run in parallel; otherwise actions run top to bottom "
        "and stages left to right."
    )
    body.append(f"<text x='16' y='{height + 24}' font-size='11' {FONT}>{legend}</text>")
    return _svg(width, height + 40, body, title)


def draw_trust(pipeline_account: str, trusts: list[Trust], title: str) -> str:
    body: list[str] = []
    accounts = sorted({t.target_account for t in trusts})
    body.append(
        _box(
            16,
            60,
            250,
            80,
            "#e0e7ff",
            [
                f"Pipeline account {pipeline_account}",
                "pipeline, CodeBuild and",
                "asset-publishing roles",
            ],
        )
    )
    y = 60
    for account in accounts:
        roles = [t for t in trusts if t.target_account == account]
        height = 30 + 22 * len(roles)
        body.append(_box(420, y, 640, height, "#dcfce7", [f"Target account {account}"]))
        for i, trust in enumerate(roles):
            ry = y + 26 + 22 * i
            body.append(
                f"<text x='440' y='{ry + 12}' font-size='12' {FONT}>{escape(trust.role)}</text>"
            )
            if trust.source == "pipeline":
                body.append(_arrow(266, 100, 436, ry + 8, "", dashed="publishing" in trust.via))
            else:
                body.append(
                    f"<text x='760' y='{ry + 12}' font-size='11' fill='#475569' {FONT}>"
                    f"{escape(trust.via)}</text>"
                )
        y += height + 20
    notes = [
        "Solid: the pipeline assumes the target's deploy role (cdk bootstrap --trust <pipeline account>).",
        "Dashed: asset publishing roles. The deploy role passes the CloudFormation execution role,",
        "which holds only the project's execution policies; stage roles carry the permissions boundary.",
        "Lookup roles: only non-production targets trust the pipeline account for lookups.",
    ]
    for i, note in enumerate(notes):
        body.append(
            f"<text x='16' y='{y + 20 + 15 * i}' font-size='11' {FONT}>{escape(note)}</text>"
        )
    return _svg(1080, y + 85, body, title)


DEFAULT_CONFIG = "config/default.toml"
OTHER_CONFIG_OUT = ROOT / "build" / "diagram"


def synthesized_from(template: dict[str, Any]) -> tuple[str, str]:
    """The config and suffix a cloud assembly was synthesized from, as its pipeline's synth step
    repeats them (`make synth CONFIG=... SUFFIX=...`)."""
    text = json.dumps(template)
    match = re.search(r"make synth CONFIG=(?:'([^']*)'|([^\s\\\"]+))(?: SUFFIX=([a-z0-9]+))?", text)
    if match is None:
        raise DiagramError("the pipeline template has no `make synth` step; run `make synth`.")
    return match[1] or match[2], match[3] or ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Draw the pipeline and the trust map from cdk.out."
    )
    parser.add_argument("--cdk-out", type=Path, default=ROOT / "cdk.out")
    parser.add_argument(
        "--out",
        type=Path,
        help="where to write (default: docs/ for the default config, else build/diagram/)",
    )
    args = parser.parse_args(argv)
    try:
        template = pipeline_template(args.cdk_out)
        stages = read_stages(template)
        account, trusts = read_trust(args.cdk_out, template)
        config, suffix = synthesized_from(template)
    except DiagramError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.out is None:
        # docs/ holds the pictures of the default config, committed; never overwrite them with
        # another deployment's.
        args.out = DOCS if (config, suffix) == (DEFAULT_CONFIG, "") else OTHER_CONFIG_OUT
        if args.out != DOCS:
            print(
                f"{args.cdk_out.name}/ was synthesized from {config}"
                f"{f' with suffix {suffix}' if suffix else ''}, not from {DEFAULT_CONFIG}: "
                f"drawing into {args.out.relative_to(ROOT)}/ (docs/ keeps the default config's "
                "pictures)."
            )
    args.out.mkdir(parents=True, exist_ok=True)
    pipeline_svg = args.out / "pipeline.svg"
    trust_svg = args.out / "trust.svg"
    pipeline_svg.write_text(draw_pipeline(stages, "Pipeline: stages and actions"))
    trust_svg.write_text(draw_trust(account, trusts, "Trust between accounts"))
    print(f"Wrote {pipeline_svg} and {trust_svg}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
