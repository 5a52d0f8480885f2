"""Operator commands: run from a workstation with credentials, never by the pipeline."""

import signal
from collections.abc import Callable
from typing import Any, Literal

# (profile, region) -> a boto3 session, or a test's stand-in for one.
SessionFor = Callable[[str | None, str], Any]


def quiet_interrupts() -> None:
    """Ctrl-C (or a closed pipe) ends an operator command the way it ends any other command, by
    the signal, instead of with a KeyboardInterrupt or BrokenPipeError traceback."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)


def boto_session(profile: str | None, region: str) -> Any:
    """A boto3 session with the operator's named profile (or the default credentials)."""
    import boto3  # type: ignore[import-untyped]

    return boto3.Session(profile_name=profile, region_name=region)


def aws_error_kind(error: Exception) -> Literal["credentials", "network"] | None:
    """The two failures a first run meets most, from botocore's error classes: no credentials at
    all, or a request that never got an answer (no route, DNS, proxy, TLS, timeouts)."""
    names = {cls.__name__ for cls in type(error).__mro__}
    if names & {"NoCredentialsError", "PartialCredentialsError", "ProfileNotFound"}:
        return "credentials"
    if names & {"HTTPClientError", "EndpointConnectionError", "ConnectTimeoutError"}:
        return "network"
    return None
