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


def read_payload(event: dict[str, Any]) -> tuple[str, str, dict[str, str]]:
    """The revision being deployed, the lifecycle stage and the hookDetails of an invocation.

    "Lambda hooks for Amazon ECS service deployments"
    (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/lambda-lifecycle-hooks.html)
    documents the payload with the deployment's fields (serviceArn, targetServiceRevisionArn,
    testTrafficWeights, productionTrafficWeights) nested under `executionDetails`, next to
    `lifecycleStage` and `hookDetails`; the earlier page ("Lifecycle hooks for Amazon ECS
    service deployments", deployment-lifecycle-hooks.html) shows them at the top level. Both are
    read, nested first. hookDetails may arrive as a JSON string (the service configuration
    stores it as one); anything that is not an object counts as empty, so a bad value restarts
    the round count instead of failing the deployment.
    """
    nested = event.get("executionDetails")
    execution = nested if isinstance(nested, dict) else {}
    revision = execution.get("targetServiceRevisionArn") or event.get("targetServiceRevisionArn")
    stage = event.get("lifecycleStage") or execution.get("lifecycleStage")
    details: Any = event.get("hookDetails")
    if isinstance(details, str):
        try:
            details = json.loads(details)
        except ValueError:
            details = None
    if not isinstance(details, dict):
        details = {}
    return (
        str(revision or "unknown revision"),
        str(stage or "unknown stage"),
        {str(k): str(v) for k, v in details.items()},
    )


def _round(details: dict[str, str]) -> int:
    value = details.get("round", "0")
    return int(value) if value.isdigit() else 0


def handle(
    event: dict[str, Any], env: dict[str, str], remaining_seconds: float | None = None
) -> dict[str, Any]:
    target, settings, max_rounds, delay = settings_from_environment(env)
    revision, stage, details = read_payload(event)
    round_number = _round(details) + 1
    deadline = None
    if remaining_seconds is not None:
        deadline = time.monotonic() + remaining_seconds - SAFETY_SECONDS
    outcome = run_checks(target, settings, deadline=deadline)
    if outcome.ok:
        LOG.info("green (%s, %s) passed the smoke test in round %d", revision, stage, round_number)
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
