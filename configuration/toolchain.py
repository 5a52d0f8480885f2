"""Versions pinned elsewhere in the repository, read from the one place that pins them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def cdk_cli_version(package_json: Path = ROOT / "package.json") -> str:
    """The exact `aws-cdk` CLI version pinned in package.json (used by the pipeline too)."""
    version = json.loads(package_json.read_text(encoding="utf-8"))["dependencies"]["aws-cdk"]
    if not isinstance(version, str) or not version[:1].isdigit():
        raise ValueError(
            f"{package_json}: dependencies.aws-cdk must be an exact version, got {version!r}"
        )
    return version


def cdk_json_context(cdk_json: Path = ROOT / "cdk.json") -> dict[str, Any]:
    """The feature flags and settings cdk.json gives every synthesis."""
    context: dict[str, Any] = json.loads(cdk_json.read_text(encoding="utf-8"))["context"]
    return context
