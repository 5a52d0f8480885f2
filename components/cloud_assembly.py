"""The stacks of a synthesized cloud assembly (cdk.out/ and the stages' nested assemblies), each
with the environment it deploys to and its template."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from configuration.regions import partition_of


class AssemblyError(Exception):
    """A cloud assembly the reader cannot use; str() says which stack and why."""


@dataclass(frozen=True)
class StackTemplate:
    """One synthesized stack and the environment it deploys to."""

    name: str
    account: str
    region: str
    template: dict[str, Any]

    @property
    def partition(self) -> str:
        return partition_of(self.region)


def read_stacks(cloud_assembly: Path) -> list[StackTemplate]:
    """Every stack of a cloud assembly and its nested assemblies (the pipeline's stages)."""
    manifest = json.loads((cloud_assembly / "manifest.json").read_text(encoding="utf-8"))
    stacks: list[StackTemplate] = []
    for artifact in manifest.get("artifacts", {}).values():
        kind = artifact.get("type")
        properties = artifact.get("properties", {})
        if kind == "cdk:cloud-assembly":
            stacks += read_stacks(cloud_assembly / properties["directoryName"])
        elif kind == "aws:cloudformation:stack":
            match = re.fullmatch(r"aws://(\d{12})/([a-z0-9-]+)", artifact["environment"])
            if match is None:
                raise AssemblyError(
                    f"{cloud_assembly}: stack {properties.get('stackName')} has no concrete "
                    f"environment ({artifact['environment']})"
                )
            template = json.loads(
                (cloud_assembly / properties["templateFile"]).read_text(encoding="utf-8")
            )
            stacks.append(
                StackTemplate(
                    properties.get("stackName", properties["templateFile"]),
                    match[1],
                    match[2],
                    template,
                )
            )
    return stacks
