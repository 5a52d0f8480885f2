"""ECS deployment lifecycle hook (POST_TEST_TRAFFIC_SHIFT): smoke-test the green tasks through the
test listener before they get production traffic.

Answers the hook contract: SUCCEEDED lets the deployment go on, FAILED rolls it back, IN_PROGRESS
asks ECS to call again after `callBackDelay` seconds (green may still be warming up); the round is
carried in `hookDetails`, so waiting is bounded. Configuration comes from the environment, set by
the stack.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from probe import Check, Settings, Target, run_checks

LOG = logging.getLogger("smoke")
LOG.setLevel(logging.INFO)


def settings_from_environment(env: dict[str, str]) -> tuple[Target, Settings, int, int]:
    """The function's environment, which service/smoke_hook.py sets in full: no fallbacks here,
    so the stack is the one place these values are decided."""
    target = Target(
        host=env["TEST_HOST"],
        port=int(env["TEST_PORT"]),
        scheme=env["TEST_SCHEME"],
        server_name=env.get("SERVER_NAME") or None,  # empty without a domain name
    )
    checks = tuple(Check(c["path"], int(c["status"])) for c in json.loads(env["CHECKS"]))
    settings = Settings(
        expected_version=env["EXPECTED_VERSION"],
        checks=checks,
        timeout=float(env["TIMEOUT_SECONDS"]),
        attempts=int(env["ATTEMPTS"]),
        backoff=float(env["BACKOFF_SECONDS"]),
    )
    return target, settings, int(env["MAX_ROUNDS"]), int(env["CALLBACK_DELAY"])


# Time kept back from the function's timeout to answer ECS.
SAFETY_SECONDS = 5.0


def handle(
    event: dict[str, Any], env: dict[str, str], remaining_seconds: float | None = None
) -> dict[str, Any]:
    target, settings, max_rounds, delay = settings_from_environment(env)
    details = event.get("hookDetails") or {}
    round_number = int(details.get("round", "0")) + 1
    deadline = None
    if remaining_seconds is not None:
        deadline = time.monotonic() + remaining_seconds - SAFETY_SECONDS
    outcome = run_checks(target, settings, deadline=deadline)
    revision = event.get("targetServiceRevisionArn", "unknown revision")
    if outcome.ok:
        LOG.info("green (%s) passed the smoke test in round %d", revision, round_number)
        return {"hookStatus": "SUCCEEDED"}
    if round_number < max_rounds:
        LOG.warning(
            "round %d/%d for %s failed, trying again in %ds: %s",
            round_number,
            max_rounds,
            revision,
            delay,
            outcome.summary(),
        )
        return {
            "hookStatus": "IN_PROGRESS",
            "callBackDelay": delay,
            "hookDetails": {"round": str(round_number)},
        }
    LOG.error(
        "green (%s) failed the smoke test after %d rounds, rolling back: %s",
        revision,
        round_number,
        outcome.summary(),
    )
    return {"hookStatus": "FAILED"}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    remaining = context.get_remaining_time_in_millis() / 1000
    return handle(event, dict(os.environ), remaining_seconds=remaining)
