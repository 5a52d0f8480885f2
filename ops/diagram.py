"""`make diagram`: pictures of the pipeline and of the trust between accounts, drawn from the
synthesized cloud assembly (cdk.out) and the config it was synthesized from, as SVG files (docs/
for the default config, build/diagram/ for any other). Graphviz lays them out.

- pipeline.svg: the pipeline's stages top to bottom, as CodePipeline's console lists them; in each,
  its actions in rows by run order (the actions of one row run in parallel); the security scan
  that gates every deployment; a legend.
- trust.svg: the pipeline account (with its cross-region support stacks) and each target account
  and region, with its stages and production flag: the pipeline assumes each target's deploy,
  publishing and (non-production only) lookup roles; the deploy role passes the CloudFormation
  execution role (the project's execution policies), which creates roles only with the
  permissions boundary.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from configuration import ConfigError, DeploymentConfig, load_config
from configuration.toolchain import ROOT
from ops import quiet_interrupts

DOCS = ROOT / "docs"
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


# --- Pictures: Graphviz lays them out (ops/graphviz/render.mjs, Graphviz compiled to WebAssembly
# from npm), so every label fits its box and arrows are routed around boxes, for any fleet size.

NODE = ROOT / "node_modules" / ".bin" / "node"
RENDER = Path(__file__).parent / "graphviz" / "render.mjs"
# Graphviz sizes boxes with its own metrics of these fonts; viewers without Helvetica substitute
# a similar sans-serif.
FONT = '"Helvetica,Arial,sans-serif"'
TEXT_SCALE = 0.85
# Parallel actions are shown this many to a row.
PARALLEL_PER_ROW = 4
CATEGORY_NAMES = {
    "Source": "source",
    "Build": "CodeBuild (synth, assets, scan, tests)",
    "Deploy": "CloudFormation deploy into a target",
    "Approval": "manual approval",
}


def render(dot: str, node: Path = NODE, script: Path = RENDER) -> str:
    """SVG from DOT text, laid out by Graphviz (dot)."""
    if not node.exists():
        raise DiagramError(f"{node} is missing; run `make setup` (it installs the pinned Node).")
    result = subprocess.run(  # noqa: S603 - the project's own Node and script
        [str(node), str(script)], input=dot, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise DiagramError(f"Graphviz failed: {result.stderr.strip()[-2000:]}")
    # Graphviz sizes each box for Helvetica; a viewer without it draws a wider sans-serif (DejaVu
    # Sans is about 6% wider), so the text is drawn a little smaller than it was measured.
    return re.sub(
        r'font-size="([0-9.]+)"',
        lambda match: f'font-size="{float(match[1]) * TEXT_SCALE:.2f}"',
        result.stdout,
    )


def _quote(text: str) -> str:
    return '"' + text.replace('"', '\\"').replace("\n", "\\n") + '"'


def _html(text: str) -> str:
    return escape(text, {'"': "&quot;"})


def _cell(action: Action, port: str, gate: bool) -> str:
    fill = COLOURS.get(action.category, "#f1f5f9")
    border = " COLOR='#b91c1c' BORDER='3'" if gate else " COLOR='#64748b' BORDER='1'"
    return (
        f"<TD PORT='{port}' BGCOLOR='{fill}'{border} CELLPADDING='9'>"
        f"{_html(action.name)}<BR/><FONT POINT-SIZE='9' COLOR='#475569'>{_html(action.detail)}</FONT></TD>"
    )


def _scan_gate(stages: list[PipelineStage]) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """(stage, action) of the security scan and of the first deployment that waits for it."""
    scan: tuple[int, int] | None = None
    for s_index, stage in enumerate(stages):
        for a_index, action in enumerate(stage.actions):
            if scan is None and "SecurityScan" in action.name:
                scan = (s_index, a_index)
            elif scan is not None and action.category == "Deploy":
                scanned = stages[scan[0]].actions[scan[1]]
                if s_index > scan[0] or action.run_order > scanned.run_order:
                    return scan, (s_index, a_index)
    return None


def pipeline_dot(stages: list[PipelineStage], title: str) -> str:
    """The pipeline as CodePipeline's console shows it, stages top to bottom: one box per stage,
    its actions in rows by run order (the actions of one row run in parallel), the security scan
    that gates every deployment, and a legend."""
    gate = _scan_gate(stages)
    lines = [
        "digraph pipeline {",
        f"  graph [rankdir=TB, label={_quote(title)}, labelloc=t, fontname={FONT}, "
        "fontsize=16, nodesep=0.4, ranksep=0.45, pad=0.3];",
        f"  node [shape=plaintext, fontname={FONT}, fontsize=11];",
        f'  edge [color="#334155", penwidth=1.4, fontname={FONT}, fontsize=10];',
    ]
    for s_index, stage in enumerate(stages):
        orders: dict[int, list[tuple[int, Action]]] = defaultdict(list)
        for a_index, action in enumerate(stage.actions):
            orders[action.run_order].append((a_index, action))
        width = min(PARALLEL_PER_ROW, max(len(group) for group in orders.values()))
        rows = [
            f"<TR><TD COLSPAN='{width}' BORDER='0' ALIGN='LEFT'>"
            f"<B>{_html(stage.name)}</B></TD></TR>"
        ]
        for order in sorted(orders):
            group = orders[order]
            for first in range(0, len(group), PARALLEL_PER_ROW):
                chunk = group[first : first + PARALLEL_PER_ROW]
                cells = [
                    _cell(action, f"a{a_index}", gate is not None and gate[0] == (s_index, a_index))
                    for a_index, action in chunk
                ]
                if len(chunk) < width:
                    cells.append(f"<TD COLSPAN='{width - len(chunk)}' BORDER='0'></TD>")
                rows.append("<TR>" + "".join(cells) + "</TR>")
                scan_here = gate is not None and any(gate[0] == (s_index, a) for a, _ in chunk)
                if scan_here and gate is not None and gate[1][0] == s_index:
                    # The deploys of this stage come in the rows below the scan.
                    rows.append(
                        f"<TR><TD COLSPAN='{width}' BORDER='0'><FONT COLOR='#b91c1c'>"
                        "&#8595; the rows below run only after the scan passed</FONT></TD></TR>"
                    )
        table = (
            "<<TABLE BORDER='1' COLOR='#94a3b8' STYLE='rounded' CELLBORDER='1' CELLSPACING='5' "
            "BGCOLOR='#ffffff'>" + "".join(rows) + "</TABLE>>"
        )
        lines.append(f"  s{s_index} [label={table}];")
    gated_edge = None
    if gate is not None:
        (scan_stage, scan_action), (deploy_stage, deploy_action) = gate
        if deploy_stage == scan_stage + 1:
            gated_edge = scan_stage
        elif deploy_stage != scan_stage:  # in the same stage, the rows say it (above)
            lines.append(
                f"  s{scan_stage}:a{scan_action} -> s{deploy_stage}:a{deploy_action} "
                '[color="#b91c1c", style=dashed, penwidth=2, constraint=false];'
            )
    for s_index in range(1, len(stages)):
        style = ""
        if gated_edge == s_index - 1:
            style = ' [color="#b91c1c", penwidth=2.2, label="  only after the scan passed"]'
        lines.append(f"  s{s_index - 1} -> s{s_index}{style};")
    categories = sorted({a.category for stage in stages for a in stage.actions})
    legend_rows = [
        "<TR><TD BORDER='0' ALIGN='LEFT' COLSPAN='2'><B>Legend</B></TD></TR>",
        *[
            f"<TR><TD BGCOLOR='{COLOURS.get(c, '#f1f5f9')}' WIDTH='28'> </TD>"
            f"<TD BORDER='0' ALIGN='LEFT'>{_html(CATEGORY_NAMES.get(c, c))}</TD></TR>"
            for c in categories
        ],
        "<TR><TD BORDER='3' COLOR='#b91c1c' WIDTH='28'> </TD><TD BORDER='0' ALIGN='LEFT'>"
        "security scan: until it passes, nothing is deployed</TD></TR>",
        "<TR><TD BORDER='0' ALIGN='LEFT' COLSPAN='2'>Actions side by side in a stage run in "
        "parallel;</TD></TR>",
        "<TR><TD BORDER='0' ALIGN='LEFT' COLSPAN='2'>rows and stages run top to bottom.</TD></TR>",
    ]
    lines.append(
        "  legend [label=<<TABLE BORDER='1' COLOR='#94a3b8' STYLE='rounded' CELLSPACING='5' "
        "CELLPADDING='4'>" + "".join(legend_rows) + "</TABLE>>];"
    )
    last = f"s{len(stages) - 1}"
    lines.append(f"  {{ rank=same; {last}; legend; }}")
    lines.append(f"  {last} -> legend [style=invis, minlen=2];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw_pipeline(stages: list[PipelineStage], title: str) -> str:
    return render(pipeline_dot(stages, title))


@dataclass(frozen=True)
class Target:
    """One account and region the pipeline deploys to, as the picture shows it."""

    account: str
    region: str
    stages: tuple[str, ...]
    production: bool
    lookup_trusted: bool
    roles: dict[str, str]  # kind (deploy, cfn-exec, ...) -> role name found in the assembly
    execution_policies: tuple[str, ...]
    boundary: str | None


@dataclass(frozen=True)
class TrustModel:
    pipeline_account: str
    pipeline_region: str
    support: tuple[tuple[str, str], ...]  # (region, stack name) of cross-region support stacks
    targets: tuple[Target, ...]


_ROLE = re.compile(
    r"cdk-[a-z0-9]+-(deploy|cfn-exec|file-publishing|image-publishing|lookup)-role-(\d{12})-([a-z0-9-]+)"
)


def read_trust_model(cloud_assembly: Path, config: DeploymentConfig) -> TrustModel:
    """Accounts, regions and roles from the cloud assembly; stage names, the production flag and
    the bootstrap's trust (lookups, execution policies, boundary) from the config it was
    synthesized from."""
    from ops.bootstrap import lookup_environments, plan

    roles: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for path in sorted(cloud_assembly.rglob("*.json")):
        if path.name == "tree.json":
            continue
        for match in _ROLE.finditer(path.read_text()):
            roles[(match[2], match[3])][match[1]] = match[0]
    manifest = json.loads((cloud_assembly / "manifest.json").read_text())
    support = sorted(
        (str(artifact["environment"]).rsplit("/", 1)[1], str(artifact["properties"]["stackName"]))
        for name, artifact in manifest.get("artifacts", {}).items()
        if name.startswith("cross-region-stack-")
    )
    bootstrap = plan(config)
    lookups = lookup_environments(config)
    policies = {account.account: account for account in bootstrap.accounts}
    environments: dict[tuple[str, str], list[str]] = defaultdict(list)
    production: dict[tuple[str, str], bool] = defaultdict(bool)
    for stage in config.stages:
        environments[(stage.account, stage.region)].append(stage.name)
        production[(stage.account, stage.region)] |= stage.production
    targets = []
    for (account, region), names in environments.items():
        owner = policies.get(account)
        targets.append(
            Target(
                account,
                region,
                tuple(names),
                production[(account, region)],
                (account, region) in lookups,
                dict(sorted(roles.get((account, region), {}).items())),
                tuple(p.name for p in owner.execution_policies) if owner else (),
                next((p.name for p in owner.policies if p.boundary), None) if owner else None,
            )
        )
    return TrustModel(
        config.pipeline.account, config.pipeline.region, tuple(support), tuple(targets)
    )


ROLE_LABELS = {
    "deploy": "deploy role",
    "publishing": "asset publishing roles",
    "lookup": "lookup role",
    "cfn-exec": "CloudFormation execution role",
}


def trust_dot(model: TrustModel, title: str) -> str:
    """The trust map: the pipeline account on the left (with its cross-region support stacks),
    each target account and region on the right with its stages, production flag and roles, and
    who may assume or pass what."""
    lines = [
        "digraph trust {",
        f"  graph [rankdir=LR, label={_quote(title)}, labelloc=t, fontname={FONT}, "
        "fontsize=16, nodesep=0.25, ranksep=1.0, pad=0.3, newrank=true];",
        f'  node [shape=box, style="rounded,filled", fontname={FONT}, fontsize=10, '
        'fillcolor="#ffffff", color="#475569", margin="0.22,0.08"];',
        f'  edge [color="#334155", fontname={FONT}, fontsize=9];',
        "  subgraph cluster_pipeline {",
        f"    label={_quote(f'Pipeline account {model.pipeline_account}, {model.pipeline_region}')};",
        f'    style="rounded,filled"; fillcolor="#e0e7ff"; color="#4338ca"; fontname={FONT};',
        '    pipeline [label="pipeline, CodeBuild and\\nasset-publishing roles"];',
    ]
    for region, stack in model.support:
        text = f"cross-region support stack\n{stack}\n(artifact bucket in {region})"
        lines.append(f"    support_{_id(region)} [label={_quote(text)}, shape=cylinder];")
    legend = (
        "Solid: the pipeline assumes the deploy role\n(cdk bootstrap --trust; only the pipeline\n"
        "stack's roles, <project>-pipeline-*).\n"
        "Dashed: asset publishing (the same roles).\nDotted: lookups, trusted only in\n"
        "non-production targets that import a VPC.\n"
        "The deploy role passes the execution role\nto CloudFormation: only the project's\n"
        "execution policies, and roles only with\nthe permissions boundary.\n"
        "Red frame: a production target."
    )
    lines.append(f'    legend [shape=note, label={_quote(legend)}, fillcolor="#f8fafc"];')
    lines.append("    pipeline -> legend [style=invis];")
    for region, _ in model.support:
        lines.append(f"    pipeline -> support_{_id(region)} [style=invis];")
    lines.append("  }")
    for index, target in enumerate(model.targets):
        flag = "PRODUCTION" if target.production else "non-production"
        label = (
            f"Target account {target.account}, {target.region}\n{flag}: {', '.join(target.stages)}"
        )
        colour = "#b91c1c" if target.production else "#15803d"
        fill = "#fef2f2" if target.production else "#f0fdf4"
        prefix = f"t{index}"
        lines += [
            f"  subgraph cluster_{prefix} {{",
            f'    label={_quote(label)}; style="rounded,filled"; fillcolor="{fill}"; '
            f'color="{colour}"; penwidth={2.5 if target.production else 1}; fontname={FONT};',
        ]
        roles = dict(target.roles)
        publishing = [roles.pop(k) for k in ("file-publishing", "image-publishing") if k in roles]
        nodes: dict[str, str] = {}
        for kind, role in roles.items():
            text = f"{ROLE_LABELS.get(kind, kind)}\n{role}"
            extra = ""
            if kind == "cfn-exec" and target.execution_policies:
                text += "\nexecution policies:\n" + ", ".join(target.execution_policies)
            if kind == "lookup" and not target.lookup_trusted:
                text += "\nnot trusted by the pipeline account"
                extra = ', fillcolor="#e2e8f0", fontcolor="#475569", style="rounded,filled,dashed"'
            nodes[kind] = f"{prefix}_{_id(kind)}"
            lines.append(f"    {nodes[kind]} [label={_quote(text)}{extra}];")
        if publishing:
            nodes["publishing"] = f"{prefix}_publishing"
            text = ROLE_LABELS["publishing"] + "\n" + "\n".join(publishing)
            lines.append(f"    {nodes['publishing']} [label={_quote(text)}];")
        if target.boundary and "cfn-exec" in nodes:
            text = f"stage roles (task, hooks, ...)\nonly with the permissions boundary\n{target.boundary}"
            lines.append(
                f'    {prefix}_roles [label={_quote(text)}, style="rounded,filled,dashed"];'
            )
            lines.append(f'    {nodes["cfn-exec"]} -> {prefix}_roles [label="creates"];')
        if "deploy" in nodes and "cfn-exec" in nodes:
            lines.append(f'    {nodes["deploy"]} -> {nodes["cfn-exec"]} [label="passes"];')
        lines.append("  }")
        if "deploy" in nodes:
            lines.append(f'  pipeline -> {nodes["deploy"]} [label="assumes", penwidth=1.8];')
        if "publishing" in nodes:
            lines.append(f"  pipeline -> {nodes['publishing']} [style=dashed];")
        if "lookup" in nodes:
            style = "dotted" if target.lookup_trusted else "invis"
            lines.append(f"  pipeline -> {nodes['lookup']} [style={style}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", text)


def draw_trust(model: TrustModel, title: str) -> str:
    return render(trust_dot(model, title))


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


def _shown(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


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
        config, suffix = synthesized_from(template)
        model = read_trust_model(args.cdk_out, load_config(ROOT / config))
        pipeline_svg_text = draw_pipeline(stages, "Pipeline: stages and actions")
        trust_svg_text = draw_trust(model, "Trust between the accounts")
    except (DiagramError, ConfigError) as error:
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
                f"drawing into {_shown(args.out)}/ (docs/ keeps the default config's "
                "pictures)."
            )
    args.out.mkdir(parents=True, exist_ok=True)
    pipeline_svg = args.out / "pipeline.svg"
    trust_svg = args.out / "trust.svg"
    pipeline_svg.write_text(pipeline_svg_text)
    trust_svg.write_text(trust_svg_text)
    print(f"Wrote {pipeline_svg} and {trust_svg}.")
    return 0


if __name__ == "__main__":
    quiet_interrupts()
    sys.exit(main())
