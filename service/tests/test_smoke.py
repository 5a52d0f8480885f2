"""The smoke test and the lifecycle hook, against a real HTTP server on a loopback port."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "smoke"))
import hook
import probe

GREEN = "green1234567"
BLUE = "blue12345678"


class Behaviour(BaseHTTPRequestHandler):
    """Answers like a service version would, or fails in a chosen way."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        server: Any = self.server
        server.requests += 1
        mode = server.mode
        if mode == "slow":
            time.sleep(1.0)
        if mode == "500" or (mode == "intermittent" and server.requests <= server.failures):
            return self._reply(500, {"error": "boom"})
        if self.path == "/healthz":
            return self._reply(200, {"status": "ok"})
        if self.path == "/version":
            return self._reply(200, {"version": BLUE if mode == "wrong_version" else GREEN})
        if self.path == "/":
            return self._reply(200, {"message": "hello"})
        return self._reply(404, {"error": "not found"})

    def _reply(self, status: int, body: dict[str, str]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def server() -> Iterator[Any]:
    httpd: Any = ThreadingHTTPServer(("127.0.0.1", 0), Behaviour)
    httpd.daemon_threads = True
    httpd.mode, httpd.requests, httpd.failures = "healthy", 0, 0
    # A short poll interval: shutdown() waits for it (0.5 s by default) after every test.
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _env(port: int, **overrides: str) -> dict[str, str]:
    env = {
        "TEST_HOST": "127.0.0.1",
        "TEST_PORT": str(port),
        "TEST_SCHEME": "http",
        "EXPECTED_VERSION": GREEN,
        "CHECKS": json.dumps([{"path": "/", "status": 200}, {"path": "/missing", "status": 404}]),
        "TIMEOUT_SECONDS": "0.3",
        "ATTEMPTS": "2",
        "BACKOFF_SECONDS": "0.05",
        "MAX_ROUNDS": "3",
        "CALLBACK_DELAY": "15",
    }
    return {**env, **overrides}


def _event(round_number: int | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "targetServiceRevisionArn": "arn:aws:ecs:eu-west-1:1:service-revision/c/s/1"
    }
    if round_number is not None:
        event["hookDetails"] = {"round": str(round_number)}
    return event


def test_healthy_green_succeeds(server: Any) -> None:
    port = server.server_address[1]
    assert hook.handle(_event(), _env(port)) == {"hookStatus": "SUCCEEDED"}


def test_old_version_still_answering_is_not_accepted(
    server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server.mode = "wrong_version"
    result = hook.handle(_event(), _env(server.server_address[1]))
    assert result["hookStatus"] == "IN_PROGRESS"
    assert result["hookDetails"] == {"round": "1"}
    assert "the old version is still serving" in caplog.text


def test_server_errors_fail_after_the_last_round(
    server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server.mode = "500"
    result = hook.handle(_event(round_number=2), _env(server.server_address[1]))
    assert result == {"hookStatus": "FAILED"}
    assert "status 500, expected 200" in caplog.text and "rolling back" in caplog.text


def test_slow_answers_count_as_failures(server: Any) -> None:
    server.mode = "slow"
    outcome = probe.run_checks(
        probe.Target("127.0.0.1", server.server_address[1], "http"),
        probe.Settings(expected_version=GREEN, timeout=0.2, attempts=1),
    )
    assert not outcome.ok
    assert "no answer within 0.2s" in outcome.problems[0]


def test_connection_refused_is_reported() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more.
    result = hook.handle(_event(round_number=2), _env(port))
    assert result == {"hookStatus": "FAILED"}
    outcome = probe.run_checks(
        probe.Target("127.0.0.1", port, "http"), probe.Settings(expected_version=GREEN, attempts=1)
    )
    assert "cannot connect" in outcome.problems[0]


def test_intermittent_then_healthy_passes_within_the_retries(server: Any) -> None:
    server.mode, server.failures = "intermittent", 1
    sleeps: list[float] = []
    outcome = probe.run_checks(
        probe.Target("127.0.0.1", server.server_address[1], "http"),
        probe.Settings(expected_version=GREEN, attempts=3, backoff=0.01),
        sleep=sleeps.append,
    )
    assert outcome.ok, outcome.problems
    assert sleeps == [0.01]


def test_retries_back_off_and_stay_bounded(server: Any) -> None:
    server.mode = "500"
    sleeps: list[float] = []
    outcome = probe.run_checks(
        probe.Target("127.0.0.1", server.server_address[1], "http"),
        probe.Settings(expected_version=GREEN, checks=(), attempts=3, backoff=0.5),
        sleep=sleeps.append,
    )
    assert not outcome.ok
    assert sleeps == [0.5, 1.0, 0.5, 1.0]  # two checks (health, version), three attempts each
    assert server.requests == 6


def test_wrong_status_for_a_configured_path_fails(server: Any) -> None:
    env = _env(server.server_address[1], CHECKS=json.dumps([{"path": "/missing", "status": 200}]))
    result = hook.handle(_event(round_number=2), env)
    assert result == {"hookStatus": "FAILED"}


def test_cli_exit_codes(server: Any) -> None:
    port = str(server.server_address[1])
    args = ["--host", "127.0.0.1", "--port", port, "--scheme", "http", "--attempts", "1"]
    assert probe.main([*args, "--expected-version", GREEN, "--check", "/:200"]) == 0
    assert probe.main([*args, "--expected-version", BLUE]) == 1


def test_the_hook_answers_before_the_function_times_out(server: Any) -> None:
    """A slow green must not run the function past its timeout (a timed-out hook fails the
    deployment at once): the round stops at the deadline and asks ECS to call again."""
    server.mode = "slow"
    port = server.server_address[1]
    started = time.monotonic()
    result = hook.handle(
        _event(),
        _env(port, TIMEOUT_SECONDS="0.5", ATTEMPTS="3"),
        remaining_seconds=hook.SAFETY_SECONDS + 1.2,
    )
    assert time.monotonic() - started < 2.0
    assert result["hookStatus"] == "IN_PROGRESS"
    assert hook.handle(
        _event(round_number=2),
        _env(port, TIMEOUT_SECONDS="0.5"),
        remaining_seconds=hook.SAFETY_SECONDS + 0.1,
    ) == {"hookStatus": "FAILED"}


def test_lambda_entry_point_uses_the_remaining_time(
    server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in _env(server.server_address[1]).items():
        monkeypatch.setenv(key, value)

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 60_000

    assert hook.handler(_event(), Context()) == {"hookStatus": "SUCCEEDED"}


# The payload as "Lambda hooks for Amazon ECS service deployments" describes it (the deployment's
# fields under executionDetails), and as the earlier "Lifecycle hooks" page showed it (the same
# fields at the top level). The ARNs follow the pages' examples.
SERVICE = "arn:aws:ecs:us-west-2:123456789012:service/myCluster/myService"
REVISION = "arn:aws:ecs:us-west-2:123456789012:service-revision/myCluster/myService/01275892"
OLD = "arn:aws:ecs:us-west-2:123456789012:service-revision/myCluster/myService/78652123"
NESTED: dict[str, Any] = {
    "executionDetails": {
        "testTrafficWeights": {REVISION: 100, OLD: 0},
        "productionTrafficWeights": {REVISION: 0, OLD: 100},
        "serviceArn": SERVICE,
        "targetServiceRevisionArn": REVISION,
    },
    "executionId": "a1b2c3d4-5678-90ab-cdef-11111EXAMPLE",
    "lifecycleStage": "POST_TEST_TRAFFIC_SHIFT",
    "resourceArn": "arn:aws:ecs:us-west-2:123456789012:service-deployment/myCluster/myService/1",
}
TOP_LEVEL: dict[str, Any] = {
    "serviceArn": SERVICE,
    "targetServiceRevisionArn": REVISION,
    "testTrafficWeights": {REVISION: 100, OLD: 0},
    "productionTrafficWeights": {REVISION: 0, OLD: 100},
}


@pytest.mark.parametrize("payload", [NESTED, TOP_LEVEL], ids=["executionDetails", "top-level"])
def test_both_documented_payload_shapes_are_read(payload: dict[str, Any]) -> None:
    revision, _, details = hook.read_payload(payload)
    assert revision == REVISION
    assert details == {}
    with_round = {**payload, "hookDetails": {"round": "2"}}
    assert hook.read_payload(with_round)[2] == {"round": "2"}


def test_the_lifecycle_stage_and_odd_hook_details() -> None:
    assert hook.read_payload(NESTED)[1] == "POST_TEST_TRAFFIC_SHIFT"
    assert hook.read_payload({})[:2] == ("unknown revision", "unknown stage")
    # A JSON string (how the service configuration stores hookDetails) is read as an object;
    # anything else starts the count again rather than failing the deployment.
    assert hook.read_payload({**NESTED, "hookDetails": '{"round": "4"}'})[2] == {"round": "4"}
    assert hook.read_payload({**NESTED, "hookDetails": "not json"})[2] == {}
    assert hook.read_payload({**NESTED, "hookDetails": ["round"]})[2] == {}


def test_the_round_count_survives_the_nested_payload(server: Any) -> None:
    server.mode = "500"
    env = _env(server.server_address[1])
    first = hook.handle(NESTED, env)
    assert first == {
        "hookStatus": "IN_PROGRESS",
        "callBackDelay": 15,
        "hookDetails": {"round": "1"},
    }
    last = hook.handle({**NESTED, "hookDetails": {"round": "2"}}, env)
    assert last == {"hookStatus": "FAILED"}
    server.mode = "healthy"
    assert hook.handle({**NESTED, "hookDetails": {"round": "x"}}, env) == {
        "hookStatus": "SUCCEEDED"
    }
