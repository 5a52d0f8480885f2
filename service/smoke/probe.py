"""Smoke checks against one deployed version of the service, standard library only.

Used in two places:
  - the ECS lifecycle hook (hook.py) probes the *green* tasks through the test listener before they
    get production traffic;
  - the pipeline probes each stage's public endpoint after it deploys:
        python3 service/smoke/probe.py --host LB_DNS --port 443 --scheme https \
            --server-name www.example.com --expected-version abc123 --check /:200

TLS is verified against `server_name` (the certificate's domain) while connecting to `host` (the
load balancer's own DNS name), so the checks work before DNS points at the load balancer and can
tell exactly which load balancer answered.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import socket
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

LOG = logging.getLogger("smoke")


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    scheme: str = "https"  # "https" or "http"
    server_name: str | None = None  # TLS name to verify; defaults to host


@dataclass(frozen=True)
class Check:
    path: str
    status: int = 200


@dataclass(frozen=True)
class Settings:
    expected_version: str
    checks: tuple[Check, ...] = (Check("/"),)
    timeout: float = 5.0  # seconds per request
    attempts: int = 3  # per check, within one run
    backoff: float = 1.0  # seconds before the 2nd attempt; doubles after


@dataclass
class Outcome:
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        return "all checks passed" if self.ok else "; ".join(self.problems)


class _Connection(http.client.HTTPSConnection):
    """HTTPS to `host`, verifying the certificate for `server_name` (SNI and hostname check)."""

    def __init__(self, host: str, port: int, *, server_name: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._server_name = server_name

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._server_name)  # type: ignore[attr-defined]


def _request(target: Target, path: str, timeout: float) -> tuple[int, bytes]:
    connection: http.client.HTTPConnection
    if target.scheme == "https":
        connection = _Connection(
            target.host, target.port, server_name=target.server_name or target.host, timeout=timeout
        )
    else:
        connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"User-Agent": "deployment-smoke-test"})
        response = connection.getresponse()
        return response.status, response.read(65536)
    finally:
        connection.close()


def _attempt(target: Target, check: Check, settings: Settings, is_version: bool) -> str | None:
    """One request; None when it passed, else what was wrong."""
    try:
        status, body = _request(target, check.path, settings.timeout)
    except TimeoutError:
        return f"GET {check.path}: no answer within {settings.timeout:g}s"
    except ssl.SSLError as error:
        return f"GET {check.path}: TLS failed: {error}"
    except OSError as error:
        return f"GET {check.path}: cannot connect: {error.strerror or error}"
    except http.client.HTTPException as error:
        return f"GET {check.path}: bad HTTP response: {error!r}"
    if status != check.status:
        return f"GET {check.path}: status {status}, expected {check.status}"
    if is_version:
        try:
            version = json.loads(body)["version"]
        except (ValueError, KeyError, TypeError):
            return f"GET {check.path}: no version in the answer"
        if version != settings.expected_version:
            return (
                f"GET {check.path}: version {version!r} answered, expected "
                f"{settings.expected_version!r} (the old version is still serving)"
            )
    return None


def run_checks(
    target: Target,
    settings: Settings,
    sleep: Callable[[float], None] = time.sleep,
    deadline: float | None = None,
) -> Outcome:
    """Health, version, then the configured paths; each with bounded retries and backoff.

    With a `deadline` (time.monotonic() seconds), no request or wait starts that could end after
    it: the caller (a Lambda function) must answer before its own timeout.
    """
    checks = [(Check("/healthz"), False), (Check("/version"), True)]
    checks += [(check, False) for check in settings.checks]
    problems: list[str] = []

    def no_time_for(seconds: float) -> bool:
        return deadline is not None and time.monotonic() + seconds > deadline

    for check, is_version in checks:
        delay = settings.backoff
        for attempt in range(1, settings.attempts + 1):
            if no_time_for(settings.timeout):
                problems.append(f"GET {check.path}: not checked, out of time for this round")
                return Outcome(problems)
            problem = _attempt(target, check, settings, is_version)
            if problem is None:
                break
            LOG.warning("attempt %d/%d: %s", attempt, settings.attempts, problem)
            if attempt == settings.attempts:
                problems.append(problem)
            elif no_time_for(delay + settings.timeout):
                problems.append(problem)
                return Outcome(problems)
            else:
                sleep(delay)
                delay *= 2
    return Outcome(problems)


def _check(text: str) -> Check:
    path, _, status = text.rpartition(":")
    if not path.startswith("/") or not status.isdigit():
        raise argparse.ArgumentTypeError(f"expected PATH:STATUS such as /:200, got {text!r}")
    return Check(path, int(status))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Smoke-test one deployed version.")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=443)
    parser.add_argument("--scheme", choices=["https", "http"], default="https")
    parser.add_argument("--server-name")
    parser.add_argument("--expected-version", required=True)
    parser.add_argument("--check", type=_check, action="append", default=[])
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--attempts", type=int, default=5)
    parser.add_argument("--backoff", type=float, default=5.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    outcome = run_checks(
        Target(args.host, args.port, args.scheme, args.server_name),
        Settings(
            expected_version=args.expected_version,
            checks=tuple(args.check) or (Check("/"),),
            timeout=args.timeout,
            attempts=args.attempts,
            backoff=args.backoff,
        ),
    )
    print(("PASS " if outcome.ok else "FAIL ") + outcome.summary())
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
