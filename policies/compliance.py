"""Compliance checks run at synth (filled in by the security work)."""

from __future__ import annotations

import aws_cdk as cdk


def register_compliance(app: cdk.App) -> None:
    """Register the cdk-nag rule packs on the whole app."""
