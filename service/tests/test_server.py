"""The service's own tests: a real server on a loopback port, real HTTP requests."""

from __future__ import annotations

import json
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
import server


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    httpd = server.make_server("127.0.0.1", 0, version="abc123", name="webapp")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _get(url: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_health_endpoint_reports_ok(base_url: str) -> None:
    assert _get(f"{base_url}/healthz") == (200, {"status": "ok"})


def test_version_endpoint_reports_the_build(base_url: str) -> None:
    assert _get(f"{base_url}/version") == (200, {"version": "abc123", "service": "webapp"})


def test_query_strings_are_ignored_for_routing(base_url: str) -> None:
    assert _get(f"{base_url}/healthz?probe=1")[0] == 200


def test_unknown_path_is_404(base_url: str) -> None:
    status, body = _get(f"{base_url}/nope")
    assert status == 404
    assert body["path"] == "/nope"


def test_head_has_no_body(base_url: str) -> None:
    request = urllib.request.Request(f"{base_url}/healthz", method="HEAD")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
        assert response.read() == b""


def test_keep_alive_serves_several_requests_on_one_connection(base_url: str) -> None:
    import http.client

    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    for _ in range(3):
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        assert response.status == 200
        response.read()
    connection.close()


def test_dockerfile_runs_as_non_root_on_a_pinned_base() -> None:
    dockerfile = (Path(__file__).resolve().parents[1] / "runtime" / "Dockerfile").read_text()
    from_line = next(line for line in dockerfile.splitlines() if line.startswith("FROM "))
    image = from_line.split()[1]
    tag = image.rsplit(":", 1)[1]
    assert tag != "latest" and any(ch.isdigit() for ch in tag), from_line
    user_lines = [line for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert user_lines and user_lines[-1].split()[1].split(":")[0] not in {"0", "root"}
