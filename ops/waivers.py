"""Scan waivers that the config itself grants, so that synth and `make scan` agree.

A stage with `service.plain_http_reason` serves plain HTTP on purpose: Trivy's AWS-0054 ("use of
plain HTTP") on that stage's service template is then expected. The config's reason is the
waiver, and `service.plain_http_expires` its end, under the same rule as `.trivyignore.yaml`: at
most 90 days ahead, so each one is looked at again every quarter.

- synth (app.py) refuses an expired or too distant waiver, naming the config field, and writes the
  waivers of the config into the cloud assembly (`scan-waivers.yaml`, Trivy's ignore format);
- the scan (ops/scan.py) adds them to `.trivyignore.yaml`'s entries for the template scan, for the
  templates of exactly those stages.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from configuration import DeploymentConfig
from ops import expiry

WAIVERS_FILE = "scan-waivers.yaml"
PLAIN_HTTP = "AWS-0054"


def problems(config: DeploymentConfig, config_path: str, today: dt.date) -> list[str]:
    """The config's waivers that have expired or reach too far; one sentence each."""
    latest = expiry.latest(today)
    found = []
    for index, stage in enumerate(config.stages):
        expires = stage.service.plain_http_expires
        if expires is None:
            continue
        where = f"{config_path}: stages[{index}].service.plain_http_expires = {expires}"
        state = expiry.state(expires, today)
        if state == "expired":
            found.append(
                f"{where}: the stage's plain-HTTP waiver (plain_http_reason) expired; review "
                f"it, then set a new date no later than {latest}, or give the stage a "
                "certificate_arn instead"
            )
        elif state == "too far":
            found.append(
                f"{where}: expected a date at most {expiry.MAX_DAYS} days ahead (no later than "
                f"{latest}), so that the plain-HTTP waiver is reviewed every quarter"
            )
    return found


def entries(
    config: DeploymentConfig, config_path: str, cloud_assembly: Path
) -> list[dict[str, Any]]:
    """Trivy ignore entries for the config's waivers, each naming the templates of its stage."""
    found = []
    for index, stage in enumerate(config.stages):
        reason, expires = stage.service.plain_http_reason, stage.service.plain_http_expires
        if reason is None or expires is None:
            continue
        templates = sorted(
            path.relative_to(cloud_assembly).as_posix()
            for path in cloud_assembly.glob("assembly-*/*.template.json")
            # assembly-<pipeline construct>-<stage>: the whole stage name, so that `qa` does
            # not also match `perf-qa`'s templates.
            if path.parent.name.split("-", 2)[-1] == stage.name and "Service" in path.name
        )
        found.append(
            {
                "id": PLAIN_HTTP,
                "paths": templates,
                "statement": (f"{config_path} stages[{index}].service.plain_http_reason: {reason}"),
                "expired_at": expires,
            }
        )
    return found


def write(config: DeploymentConfig, config_path: str, cloud_assembly: Path) -> None:
    """Record the config's waivers in the cloud assembly, for the scan."""
    data = {"misconfigurations": entries(config, config_path, cloud_assembly)}
    (cloud_assembly / WAIVERS_FILE).write_text(yaml.safe_dump(data, sort_keys=False))


def merged_ignore_file(ignore_file: Path, cloud_assembly: Path, into: Path) -> Path:
    """`ignore_file` plus the waivers the synthesized config granted (none: `ignore_file`)."""
    waivers_file = cloud_assembly / WAIVERS_FILE
    if not waivers_file.is_file():
        return ignore_file
    waivers = yaml.safe_load(waivers_file.read_text()) or {}
    if not waivers.get("misconfigurations"):
        return ignore_file
    merged = yaml.safe_load(ignore_file.read_text()) if ignore_file.is_file() else {}
    merged = merged or {}
    merged.setdefault("misconfigurations", []).extend(waivers["misconfigurations"])
    into.mkdir(parents=True, exist_ok=True)
    path = into / "trivyignore-with-config-waivers.yaml"
    path.write_text(yaml.safe_dump(merged, sort_keys=False))
    return path
