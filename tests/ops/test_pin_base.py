"""`make pin-base` against a real local registry server, and the rule the scan enforces on the
service Dockerfile's FROM line: a digest, or a waiver with a reason and an expiry."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from ops.pin_base import (
    DOCKERFILE,
    PinError,
    RegistryClient,
    main,
    pin,
    read_base_images,
    review,
)

from ..local_server import serving

TODAY = dt.date(2026, 11, 28)
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [],
    }
).encode()
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
TOKEN = "planted-token"  # noqa: S105 - a local test server's token


@dataclass
class Registry:
    """What the local registry serves, and what it was asked."""

    port: int = 0
    announced_digest: str = MANIFEST_DIGEST
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def registry() -> Iterator[Registry]:
    state = Registry()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append((self.path, dict(self.headers.items())))
            if self.path.startswith("/token?"):
                self._send(200, json.dumps({"token": TOKEN}).encode(), {})
            elif self.path == "/v2/docker/library/python/manifests/3.11.14-slim-bookworm":
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    challenge = (
                        f'Bearer realm="http://{state.host}/token",service="{state.host}",'
                        'scope="repository:docker/library/python:pull"'
                    )
                    self._send(401, b"{}", {"WWW-Authenticate": challenge})
                else:
                    headers = {
                        "Content-Type": "application/vnd.oci.image.index.v1+json",
                        "Docker-Content-Digest": state.announced_digest,
                    }
                    self._send(200, MANIFEST, headers)
            else:
                self._send(404, b"{}", {})

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as server:
        state.port = server.server_address[1]
        yield state


WAIVER = (
    "# base-digest-waiver: expires {date}; the registry was unreachable where this was written\n"
)


def _dockerfile(tmp_path: Path, host: str, *, waiver: str = "", digest: str = "") -> Path:
    path = tmp_path / "Dockerfile"
    suffix = f"@{digest}" if digest else ""
    path.write_text(
        "# The service image.\n"
        + waiver
        + f"FROM {host}/docker/library/python:3.11.14-slim-bookworm{suffix}\n"
        + 'CMD ["python"]\n'
    )
    return path


def test_pins_the_tag_to_the_digest_the_registry_resolves_and_drops_the_waiver(
    registry: Registry, tmp_path: Path
) -> None:
    dockerfile = _dockerfile(tmp_path, registry.host, waiver=WAIVER.format(date="2027-01-01"))
    [change] = pin(dockerfile, RegistryClient(scheme="http"))
    assert change.endswith(f"no digest -> {MANIFEST_DIGEST}")
    assert dockerfile.read_text() == (
        "# The service image.\n"
        f"FROM {registry.host}/docker/library/python:3.11.14-slim-bookworm@{MANIFEST_DIGEST}\n"
        'CMD ["python"]\n'
    )
    # Anonymous pull token for exactly this repository, then the manifest by tag.
    token_request = next(path for path, _ in registry.requests if path.startswith("/token?"))
    assert "scope=repository%3Adocker%2Flibrary%2Fpython%3Apull" in token_request
    accept = registry.requests[-1][1]["Accept"]
    assert accept.startswith("application/vnd.oci.image.index.v1+json")
    assert review(dockerfile, TODAY) == ([], [])


def test_a_pinned_digest_is_replaced_by_the_current_one(registry: Registry, tmp_path: Path) -> None:
    old = "sha256:" + "0" * 64
    dockerfile = _dockerfile(tmp_path, registry.host, digest=old)
    [change] = pin(dockerfile, RegistryClient(scheme="http"))
    assert change.endswith(f"{old} -> {MANIFEST_DIGEST}")
    assert f"@{MANIFEST_DIGEST}\n" in dockerfile.read_text() and old not in dockerfile.read_text()


def test_a_digest_that_does_not_match_the_manifest_is_refused(
    registry: Registry, tmp_path: Path
) -> None:
    registry.announced_digest = "sha256:" + "f" * 64
    dockerfile = _dockerfile(tmp_path, registry.host)
    before = dockerfile.read_text()
    with pytest.raises(PinError, match="refusing to pin either"):
        pin(dockerfile, RegistryClient(scheme="http"))
    assert dockerfile.read_text() == before


def test_offline_it_fails_clearly_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A port nothing listens on: what `make pin-base` meets on a machine without the registry.
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dockerfile = _dockerfile(tmp_path, f"127.0.0.1:{port}")
    before = dockerfile.read_text()
    assert main(["--dockerfile", str(dockerfile)], RegistryClient(scheme="http")) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: cannot reach 127.0.0.1:{port} (")
    assert (
        "Run `make pin-base` where the registry is reachable; the Dockerfile was not changed."
        in (error)
    )
    assert dockerfile.read_text() == before


def test_the_committed_base_image_has_a_digest_or_a_waiver_with_an_expiry() -> None:
    [image] = read_base_images(DOCKERFILE)
    assert image.registry == "public.ecr.aws" and image.tag == "3.11.14-slim-bookworm"
    if image.digest is None:
        assert image.waiver is not None, "FROM needs @sha256:... or a base-digest-waiver above it"
        assert len(image.waiver.reason) >= 20
        # Valid up to its last day (checked on that day, not on today's date: an expiring
        # waiver fails the scan step, never an unrelated test).
        assert review(DOCKERFILE, image.waiver.expires)[0] == []
        assert review(DOCKERFILE, image.waiver.expires + dt.timedelta(days=1))[0] != []


@pytest.mark.parametrize(
    ("waiver", "digest", "problem", "warning"),
    [
        ("", "", "not pinned by digest; run `make pin-base`", None),
        ("", "sha256:" + "1" * 64, None, None),
        (WAIVER.format(date="2026-11-27"), "", "the digest waiver expired on 2026-11-27", None),
        (WAIVER.format(date="2026-11-28"), "", None, "expires on 2026-11-28, in 0 day(s)"),
        (WAIVER.format(date="2026-12-28"), "", None, "expires on 2026-12-28, in 30 day(s)"),
        (WAIVER.format(date="2026-12-29"), "", None, None),
        (WAIVER.format(date="2027-02-26"), "", None, None),  # 90 days: the furthest allowed
        (WAIVER.format(date="2027-02-27"), "", "more than 90 days ahead", None),
        ("# base-digest-waiver: expires 2027-01-01; soon\n", "", "needs a reason", None),
    ],
)
def test_the_scan_rule_for_the_from_line(
    tmp_path: Path, waiver: str, digest: str, problem: str | None, warning: str | None
) -> None:
    dockerfile = _dockerfile(tmp_path, "public.ecr.aws", waiver=waiver, digest=digest)
    problems, warnings = review(dockerfile, TODAY)
    assert [problem in p for p in problems] == ([True] if problem else [])
    assert [warning in w for w in warnings] == ([True] if warning else [])
    for line in problems + warnings:
        assert line.startswith("Dockerfile:")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# base-digest-waiver: until March\nFROM a.io/b:1\n", "expected 'expires YYYY-MM-DD"),
        ("# base-digest-waiver: expires 2027-02-30; x\nFROM a.io/b:1\n", "day is out of range"),
        ("FROM python:3.11\n", "expected the registry's host name first"),
        ("FROM a.io/b:1@sha256:abc\n", "is not a sha256 digest"),
        ("RUN true\n", "no FROM line found"),
    ],
)
def test_a_malformed_dockerfile_is_refused_with_the_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(text)
    with pytest.raises(PinError, match=message) as error:
        read_base_images(path)
    assert str(path) in str(error.value)


def test_build_stages_and_scratch_need_no_digest(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    digest = "sha256:" + "2" * 64
    path.write_text(f"FROM a.io/b:1@{digest} AS build\nFROM build\nFROM scratch\n")
    assert [image.line for image in read_base_images(path)] == [1]
    assert review(path, TODAY) == ([], [])
