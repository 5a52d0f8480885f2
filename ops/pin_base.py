"""`make pin-base`: pin the service image's base (`FROM`) to the digest its tag has now.

A tag can move (a rebuilt base, a re-pushed tag), so the Dockerfile names the base by tag *and*
digest, `FROM registry/repository:tag@sha256:...`: the tag says what it is, the digest fixes
which bytes. This command asks the registry (Docker Registry HTTP API v2, anonymous pull token)
what the tag resolves to now and writes that digest into the Dockerfile. Run it where the
registry is reachable, review the diff, commit.

Where the digest cannot be resolved yet, the FROM line may instead carry a waiver in the comment
directly above it, with an expiry at most 90 days ahead and a reason:

    # base-digest-waiver: expires 2027-02-25; <why the digest is not pinned yet>
    FROM public.ecr.aws/docker/library/python:3.11.14-slim-bookworm

The scan (ops/scan.py, locally and in the pipeline) fails on a FROM line with neither, or with an
expired waiver, and warns 30 days before a waiver expires; `make pin-base` removes the waiver.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from configuration.toolchain import ROOT
from ops import expiry, quiet_interrupts

DOCKERFILE = ROOT / "service" / "runtime" / "Dockerfile"
TIMEOUT_SECONDS = 15
# Index (multi-platform) types first: the digest of the index is what `docker pull` and
# `docker buildx imagetools inspect` report for a tag, and it still selects linux/amd64 at build.
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)

_FROM = re.compile(r"^FROM\s+(?:--platform=\S+\s+)?(?P<image>\S+)(?P<rest>.*)$", re.IGNORECASE)
_WAIVER = re.compile(r"^#\s*base-digest-waiver:\s*(?P<body>.*)$")
_WAIVER_BODY = re.compile(r"^expires (?P<date>\d{4}-\d{2}-\d{2});\s*(?P<reason>.+)$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class PinError(Exception):
    """The base image cannot be pinned or checked; str() says why and what to do."""


@dataclass(frozen=True)
class Waiver:
    line: int  # 1-based line number in the Dockerfile
    expires: dt.date
    reason: str


@dataclass(frozen=True)
class BaseImage:
    """One FROM line: the image it names, split into registry, repository, tag and digest."""

    line: int
    text: str
    registry: str
    repository: str
    tag: str | None
    digest: str | None
    waiver: Waiver | None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"


def parse_reference(reference: str, where: str) -> tuple[str, str, str | None, str | None]:
    """`registry/repository[:tag][@digest]` -> (registry, repository, tag, digest)."""
    name, _, digest = reference.partition("@")
    host, _, path = name.partition("/")
    if not path or not ("." in host or ":" in host or host == "localhost"):
        raise PinError(
            f"{where}: FROM {reference}: expected the registry's host name first "
            "(for example public.ecr.aws/docker/library/python:3.11-slim)."
        )
    repository, tag = path, None
    if ":" in path.rsplit("/", 1)[-1]:
        repository, tag = path.rsplit(":", 1)
    if digest and not _DIGEST.match(digest):
        raise PinError(f"{where}: FROM {reference}: {digest!r} is not a sha256 digest.")
    return host, repository, tag, digest or None


def read_base_images(dockerfile: Path = DOCKERFILE) -> list[BaseImage]:
    """Every FROM line of `dockerfile`, with the waiver in the comment block directly above it."""
    try:
        lines = dockerfile.read_text().splitlines()
    except OSError as error:
        raise PinError(f"{dockerfile}: cannot read it ({error.strerror}).") from error
    images: list[BaseImage] = []
    stages = {"scratch"}  # names that are no image: earlier build stages, and the empty image
    for index, text in enumerate(lines):
        match = _FROM.match(text.strip())
        if not match:
            continue
        alias = re.search(r"\bAS\s+(\S+)", match["rest"], re.IGNORECASE)
        if match["image"].lower() in stages:
            stages.update([alias[1].lower()] if alias else [])
            continue
        stages.update([alias[1].lower()] if alias else [])
        where = f"{dockerfile}:{index + 1}"
        registry, repository, tag, digest = parse_reference(match["image"], where)
        images.append(
            BaseImage(
                index + 1,
                text,
                registry,
                repository,
                tag,
                digest,
                _waiver_above(lines, index, dockerfile),
            )
        )
    if not images:
        raise PinError(f"{dockerfile}: no FROM line found.")
    return images


def _waiver_above(lines: list[str], index: int, dockerfile: Path) -> Waiver | None:
    above = index - 1
    while above >= 0 and lines[above].strip().startswith("#"):
        match = _WAIVER.match(lines[above].strip())
        if match:
            body = _WAIVER_BODY.match(match["body"].strip())
            where = f"{dockerfile}:{above + 1}"
            if body is None:
                raise PinError(
                    f"{where}: base-digest-waiver: {match['body'].strip()!r}: expected "
                    "'expires YYYY-MM-DD; <reason>'."
                )
            try:
                expires = dt.date.fromisoformat(body["date"])
            except ValueError as error:
                raise PinError(f"{where}: base-digest-waiver: {error}.") from error
            return Waiver(above + 1, expires, body["reason"].strip())
        above -= 1
    return None


def review(dockerfile: Path, today: dt.date) -> tuple[list[str], list[str]]:
    """(problems, warnings) for the FROM lines of `dockerfile` on `today`: a base neither pinned
    by digest nor under a valid waiver is a problem; a waiver that expires within 30 days a
    warning."""
    problems: list[str] = []
    warnings: list[str] = []
    latest = expiry.latest(today)
    fix = "run `make pin-base` where the registry is reachable and commit the result"
    for image in read_base_images(dockerfile):
        where = f"{dockerfile.name}:{image.line} (FROM {image.name})"
        waiver = image.waiver
        if image.digest:
            continue
        if waiver is None:
            problems.append(
                f"{where}: the base image is not pinned by digest; {fix}, or add "
                f"'# base-digest-waiver: expires YYYY-MM-DD; <reason>' above it (at most "
                f"{latest})."
            )
        elif len(waiver.reason) < 20:
            problems.append(f"{where}: the waiver needs a reason saying why it is acceptable.")
        elif expiry.state(waiver.expires, today) == "expired":
            problems.append(
                f"{where}: the digest waiver expired on {waiver.expires}; {fix} (it removes the "
                f"waiver), or review the reason and renew it to at most {latest}."
            )
        elif expiry.state(waiver.expires, today) == "too far":
            problems.append(
                f"{where}: the digest waiver expires {waiver.expires}, more than "
                f"{expiry.MAX_DAYS} days ahead (latest allowed {latest})."
            )
        elif expiry.state(waiver.expires, today) == "soon":
            warnings.append(
                f"{where}: the digest waiver expires on {waiver.expires}, in "
                f"{(waiver.expires - today).days} day(s); after that the scan fails. {fix}."
            )
    return problems, warnings


Opener = Callable[[urllib.request.Request], tuple[int, dict[str, str], bytes]]


def _open(request: urllib.request.Request) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers.items()), error.read()


class RegistryClient:
    """The few calls of the Docker Registry HTTP API v2 that resolve a tag to a digest
    (https://distribution.github.io/distribution/spec/api/), with an anonymous pull token where
    the registry asks for one (https://distribution.github.io/distribution/spec/auth/token/)."""

    def __init__(self, scheme: str = "https", opener: Opener = _open) -> None:
        self.scheme = scheme
        self.opener = opener

    def digest(self, registry: str, repository: str, tag: str) -> str:
        url = f"{self.scheme}://{registry}/v2/{repository}/manifests/{tag}"
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        status, response_headers, body = self._get(url, headers)
        if status == 401:
            token = self._token(response_headers, repository)
            headers["Authorization"] = f"Bearer {token}"
            status, response_headers, body = self._get(url, headers)
        if status != 200:
            raise PinError(f"{registry}/{repository}:{tag}: the registry answered HTTP {status}.")
        computed = "sha256:" + hashlib.sha256(body).hexdigest()
        announced = _header(response_headers, "Docker-Content-Digest")
        if announced and announced != computed:
            raise PinError(
                f"{registry}/{repository}:{tag}: the registry announced {announced} but the "
                f"manifest it sent hashes to {computed}; refusing to pin either."
            )
        return computed

    def _get(self, url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - https or a test
        try:
            return self.opener(request)
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise PinError(
                f"cannot reach {urllib.parse.urlsplit(url).netloc} ({reason}). Run "
                "`make pin-base` where the registry is reachable; the Dockerfile was not changed."
            ) from error

    def _token(self, headers: dict[str, str], repository: str) -> str:
        challenge = _header(headers, "WWW-Authenticate") or ""
        if not challenge.lower().startswith("bearer "):
            raise PinError(f"the registry asks for credentials ({challenge!r}); expected Bearer.")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        if "realm" not in fields:
            raise PinError(f"the registry's challenge has no realm: {challenge!r}.")
        query = {"scope": f"repository:{repository}:pull"}
        if "service" in fields:
            query["service"] = fields["service"]
        url = f"{fields['realm']}?{urllib.parse.urlencode(query)}"
        status, _, body = self._get(url, {})
        if status != 200:
            raise PinError(f"the registry refused an anonymous pull token (HTTP {status}).")
        try:
            data = json.loads(body)
        except json.JSONDecodeError as error:
            raise PinError("the registry's token answer is not JSON.") from error
        token = data.get("token") or data.get("access_token")
        if not isinstance(token, str) or not token:
            raise PinError("the registry's token answer holds no token.")
        return token


def _header(headers: dict[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def pin(dockerfile: Path, client: RegistryClient) -> list[str]:
    """Resolve every FROM line's tag to its digest now and write them into `dockerfile`, dropping
    the waivers; nothing is written unless every line resolved. Returns what changed."""
    images = read_base_images(dockerfile)
    lines = dockerfile.read_text().splitlines(keepends=True)
    changes: list[str] = []
    drop: set[int] = set()
    for image in images:
        if image.tag is None:
            raise PinError(
                f"{dockerfile}:{image.line}: FROM {image.name}: no tag to resolve; name the base "
                "by tag and digest (repository:tag@sha256:...)."
            )
        digest = client.digest(image.registry, image.repository, image.tag)
        reference = f"{image.name}:{image.tag}"
        old = f"{reference}@{image.digest}" if image.digest else reference
        new = f"{reference}@{digest}"
        text = lines[image.line - 1]
        lines[image.line - 1] = text.replace(old, new, 1)
        if image.waiver is not None:
            drop.add(image.waiver.line - 1)
        changes.append(f"{reference}: {image.digest or 'no digest'} -> {digest}")
    content = "".join(line for index, line in enumerate(lines) if index not in drop)
    # Written next to the Dockerfile and renamed over it: never a half-written file.
    handle, temporary = tempfile.mkstemp(dir=dockerfile.parent, prefix=".Dockerfile.")
    with os.fdopen(handle, "w") as output:
        output.write(content)
    os.replace(temporary, dockerfile)
    return changes


def main(argv: list[str] | None = None, client: RegistryClient | None = None) -> int:
    parser = argparse.ArgumentParser(description="Pin the service image's base by digest.")
    parser.add_argument("--dockerfile", type=Path, default=DOCKERFILE)
    args = parser.parse_args(argv)
    try:
        changes = pin(args.dockerfile, client or RegistryClient())
    except PinError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for change in changes:
        print(f"Pinned {change}")
    print(f"Wrote {args.dockerfile}; review the diff and commit it.")
    return 0


if __name__ == "__main__":
    quiet_interrupts()
    sys.exit(main())
