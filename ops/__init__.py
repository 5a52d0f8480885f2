"""Operator commands: run from a workstation with credentials, never by the pipeline."""
