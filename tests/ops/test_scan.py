"""The Trivy scan: the same script `make scan` and the pipeline run. It passes on the project and
fails on planted bad inputs; the scanner itself is pinned and verified."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import botocore.session
import pytest
import yaml  # type: ignore[import-untyped]
from botocore.stub import Stubber

from components.image_assets import image_assets
from ops.scan import (
    DOCKERFILE_DIR,
    IGNORE_FILE,
    LOCK,
    EcrRegistry,
    ScanError,
    Trivy,
    check_ignore_file,
    check_version,
    image_findings,
    platform_key,
    record_digest,
    run,
    verify_trivy,
)

from ..conftest import ROOT, Synthesized
from ..local_server import serving

TRIVY = Path(sys.executable).parent / "trivy"
TODAY = dt.date(2026, 11, 28)


@pytest.fixture(scope="module")
def verified() -> Path:
    verify_trivy(TRIVY)
    return TRIVY


def _run(
    trivy_bin: Path,
    tmp_path: Path,
    *,
    cloud_assembly: Path,
    source: Path,
    docker: Path,
    ignore: Path | None = IGNORE_FILE,
    today: dt.date | None = None,
) -> tuple[bool, list[str]]:
    lines: list[str] = []
    ok = run(
        trivy=Trivy(trivy_bin, tmp_path / "reports", ignore),
        cloud_assembly=cloud_assembly,
        today=today or TODAY,
        source_root=source,
        dockerfile_dir=docker,
        out=lines.append,
    )
    return ok, lines


def test_project_passes_every_offline_scan(
    verified: Path, tmp_path: Path, default_synth: Synthesized
) -> None:
    ok, lines = _run(
        verified,
        tmp_path,
        cloud_assembly=default_synth.outdir,
        source=ROOT,
        docker=DOCKERFILE_DIR,
    )
    assert ok, "\n".join(lines)
    assert any(line.startswith("SKIP the published image") for line in lines)
    assert (tmp_path / "reports" / "templates.json").exists()


def _clean_dir(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir(parents=True)
    return path


def test_planted_aws_key_pair_fails(verified: Path, tmp_path: Path) -> None:
    source = _clean_dir(tmp_path, "src")
    # Assembled at run time so that this test file itself holds no secret.
    key_id = "AKIA" + "QYLPMN5HHHFPZAM2"
    secret = "wJalrXUtnFEMI" + "/K7MDENG/bPxRfiCYEXAMPLEKEY"[::-1]
    (source / "settings.py").write_text(
        f'aws_access_key_id = "{key_id}"\naws_secret_access_key = "{secret}"\n'
    )
    found = Trivy(verified, tmp_path / "reports", None).secrets(source)
    assert {f.id for f in found} >= {"aws-access-key-id"}, found


def test_planted_root_dockerfile_fails(verified: Path, tmp_path: Path) -> None:
    docker = _clean_dir(tmp_path, "docker")
    (docker / "Dockerfile").write_text(
        'FROM public.ecr.aws/docker/library/python:3.11.14-slim\nCMD ["python"]\n'
    )
    found = Trivy(verified, tmp_path / "reports", None).dockerfiles(docker)
    assert "DS-0002" in {f.id for f in found}, found


OPEN_SSH_TEMPLATE = {
    "Resources": {
        "OpenGroup": {
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {
                "GroupDescription": "open to the world",
                "SecurityGroupIngress": [
                    {
                        "CidrIp": "0.0.0.0/0",
                        "IpProtocol": "tcp",
                        "FromPort": 22,
                        "ToPort": 22,
                        "Description": "ssh",
                    }
                ],
            },
        }
    }
}


def test_planted_open_security_group_fails(verified: Path, tmp_path: Path) -> None:
    templates = _clean_dir(tmp_path, "cdk.out")
    (templates / "Open.template.json").write_text(json.dumps(OPEN_SSH_TEMPLATE))
    found = Trivy(verified, tmp_path / "reports", None).templates(templates)
    assert "AWS-0107" in {f.id for f in found}, found  # unrestricted ingress to SSH


def _small_assembly(tmp_path: Path) -> Path:
    """A cloud assembly of one template: the whole-run tests below are about how a run ends on
    one planted problem (each asserts the line that names it); the project's own templates take
    Trivy seconds longer and are scanned for real in test_project_passes_every_offline_scan."""
    assembly = _clean_dir(tmp_path, "small.out")
    (assembly / "Topic.template.json").write_text(json.dumps(CLEAN_TEMPLATE))
    return assembly


CLEAN_TEMPLATE = {
    "Resources": {
        "Topic": {"Type": "AWS::SNS::Topic", "Properties": {"KmsMasterKeyId": "alias/topics"}}
    }
}


def test_scan_fails_as_a_whole_on_a_planted_finding(verified: Path, tmp_path: Path) -> None:
    docker = _clean_dir(tmp_path, "docker")
    (docker / "Dockerfile").write_text("FROM public.ecr.aws/docker/library/python:3.11.14-slim\n")
    ok, lines = _run(
        verified,
        tmp_path,
        cloud_assembly=_small_assembly(tmp_path),
        source=_clean_dir(tmp_path, "src"),
        docker=docker,
    )
    assert not ok
    assert any(line.startswith("FAIL Dockerfile") for line in lines)
    # Its base has neither a digest nor a waiver (ops/pin_base.py decides; tested there).
    assert any(
        line.startswith("FAIL base image: Dockerfile:1") and "not pinned by digest" in line
        for line in lines
    )


STATEMENT = "    statement: The load balancer is public by design.\n"


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("  - id: AWS-0053\n    expired_at: 2027-01-01\n", "needs a statement"),
        ("  - id: AWS-0053\n" + STATEMENT, "needs expired_at"),
        (
            "  - id: AWS-0053\n" + STATEMENT + "    expired_at: 2026-11-27\n",
            "expired on 2026-11-27, so the finding is no longer accepted. Fix the finding, or to "
            "renew it, review the finding and the statement, then set expired_at to a date at "
            "most 90 days ahead (at the latest 2027-02-26)",
        ),
        (
            "  - id: AWS-0053\n" + STATEMENT + "    expired_at: 2027-02-27\n",
            "more than 90 days ahead",
        ),
    ],
)
def test_unexplained_expired_or_far_ignores_fail(tmp_path: Path, entry: str, problem: str) -> None:
    path = tmp_path / ".trivyignore.yaml"
    path.write_text("misconfigurations:\n" + entry)
    review = check_ignore_file(path, TODAY)
    assert len(review.problems) == 1 and problem in review.problems[0], review
    assert "(AWS-0053)" in review.problems[0]


@pytest.mark.parametrize(
    ("expiry", "warned"),
    [
        (TODAY, True),  # the last day it is accepted
        (TODAY + dt.timedelta(days=30), True),
        (TODAY + dt.timedelta(days=31), False),
        (TODAY + dt.timedelta(days=90), False),  # the furthest allowed
    ],
)
def test_ignores_expiring_within_thirty_days_are_warned_about_not_failed(
    tmp_path: Path, expiry: dt.date, warned: bool
) -> None:
    path = tmp_path / ".trivyignore.yaml"
    path.write_text(f"misconfigurations:\n  - id: AWS-0053\n{STATEMENT}    expired_at: {expiry}\n")
    review = check_ignore_file(path, TODAY)
    assert review.problems == []
    if warned:
        [warning] = review.warnings
        days = (expiry - TODAY).days
        assert f"(AWS-0053): expires on {expiry}, in {days} day(s)" in warning
        assert "renew it" in warning and "Rotating the ignores" in warning
    else:
        assert review.warnings == []


def test_the_day_after_its_expiry_an_ignore_fails(tmp_path: Path) -> None:
    path = tmp_path / ".trivyignore.yaml"
    path.write_text(f"misconfigurations:\n  - id: AWS-0053\n{STATEMENT}    expired_at: {TODAY}\n")
    [problem] = check_ignore_file(path, TODAY + dt.timedelta(days=1)).problems
    assert f"expired on {TODAY}" in problem


def test_an_expired_ignore_fails_the_scan_and_a_soon_expiring_one_only_warns(
    verified: Path, tmp_path: Path
) -> None:
    ignore = tmp_path / ".trivyignore.yaml"
    ignore.write_text(IGNORE_FILE.read_text())
    expiry = _committed_expiries()[0]
    runs = {}
    for name, today in (("expired", expiry + dt.timedelta(days=1)), ("soon", expiry)):
        runs[name] = _run(
            verified,
            tmp_path / name,
            cloud_assembly=_small_assembly(tmp_path / name),
            source=_clean_dir(tmp_path / name, "src"),
            docker=DOCKERFILE_DIR,
            ignore=ignore,
            today=today,
        )
    ok, lines = runs["expired"]
    assert not ok
    assert any(
        line.startswith("FAIL ignore file: .trivyignore.yaml: misconfigurations[0] (AWS-0053)")
        and f"expired on {expiry}" in line
        for line in lines
    ), lines
    ok, lines = runs["soon"]
    assert ok, "\n".join(lines)
    assert any(line.startswith("WARN ignore file:") and "in 0 day(s)" in line for line in lines)


def _committed_expiries() -> list[dt.date]:
    data = yaml.safe_load(IGNORE_FILE.read_text())
    return sorted(entry["expired_at"] for entries in data.values() for entry in entries)


def test_committed_ignores_are_well_formed() -> None:
    # Checked on the day the earliest entry expires, not on today's date: an ignore that runs
    # out fails the scan step (above), never an unrelated test.
    expiries = _committed_expiries()
    assert check_ignore_file(IGNORE_FILE, expiries[0]).problems == []


def test_malicious_versions_are_refused() -> None:
    lock = json.loads(LOCK.read_text())
    for version in ("0.69.4", "0.69.5", "0.69.6"):
        with pytest.raises(ScanError, match="known-malicious"):
            check_version(version, lock)
    with pytest.raises(ScanError, match="is pinned"):
        check_version("0.77.0", lock)


def test_a_binary_with_another_hash_is_refused(tmp_path: Path) -> None:
    lock = json.loads(LOCK.read_text())
    lock["sha256"][platform_key()] = "0" * 64
    fake_lock = tmp_path / "trivy.lock.json"
    fake_lock.write_text(json.dumps(lock))
    with pytest.raises(ScanError, match="does not match"):
        verify_trivy(TRIVY, fake_lock)


def test_lock_agrees_with_the_pinned_wheel() -> None:
    lock = json.loads(LOCK.read_text())
    requirements = (ROOT / "requirements-dev.txt").read_text()
    assert f"{lock['package']} \\" in requirements
    assert lock["package"].split("==")[1].startswith(lock["version"])
    assert lock["version"] not in lock["refused_versions"]


# --- The published image: one digest in every target, scanned by digest ---------------------

DIGEST = "sha256:" + "a" * 64
OTHER_DIGEST = "sha256:" + "b" * 64
STAGING_REPOSITORY = "cdk-webapp-container-assets-222222222222-eu-west-1"
PROD_REPOSITORY = "cdk-webapp-container-assets-333333333333-eu-west-1"
SCANNED = f"222222222222.dkr.ecr.eu-west-1.amazonaws.com/{STAGING_REPOSITORY}@{DIGEST}"

# A stand-in for the Trivy binary: it records its arguments and writes the planted report for
# `image` (JSON) or a minimal SBOM (CycloneDX); the offline scans get an empty clean result.
FAKE_TRIVY = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_TRIVY_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
output = args[args.index("--output") + 1]
form = args[args.index("--format") + 1]
if args[0] == "image" and form == "json":
    body = open(os.environ["FAKE_TRIVY_IMAGE_REPORT"]).read()
elif form == "cyclonedx":
    body = json.dumps({{"bomFormat": "CycloneDX", "metadata": {{"component": {{"name": args[-1]}}}}}})
else:
    body = json.dumps({{"Results": [{{"Target": "planted"}}]}})
open(output, "w").write(body)
"""


@dataclass
class FakeTrivy:
    binary: Path
    log: Path
    report: Path

    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def fake_trivy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTrivy:
    binary = tmp_path / "fake-trivy"
    binary.write_text(FAKE_TRIVY.format(python=sys.executable))
    binary.chmod(0o755)
    fake = FakeTrivy(binary, tmp_path / "trivy.log", tmp_path / "planted-image.json")
    fake.log.write_text("")
    fake.report.write_text(json.dumps({"Results": []}))
    monkeypatch.setenv("FAKE_TRIVY_LOG", str(fake.log))
    monkeypatch.setenv("FAKE_TRIVY_IMAGE_REPORT", str(fake.report))
    return fake


_BOTOCORE = botocore.session.Session()


class StubbedEcr:
    """ECR in eu-west-1 through botocore's Stubber: each describe_images call must ask for the
    asset's tag in the expected account's repository, and gets the planted digest."""

    def __init__(self) -> None:
        self.client = _BOTOCORE.create_client(
            "ecr",
            region_name="eu-west-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - never sent: the Stubber answers
        )
        self.stubber = Stubber(self.client)
        self.stubber.activate()

    def answers(self, account: str, repository: str, tag: str, digest: str) -> None:
        self.stubber.add_response(
            "describe_images",
            {"imageDetails": [{"imageDigest": digest, "imageTags": [tag]}]},
            {
                "registryId": account,
                "repositoryName": repository,
                "imageIds": [{"imageTag": tag}],
            },
        )

    def fails(self, code: str, message: str) -> None:
        self.stubber.add_client_error("describe_images", code, message)

    def registry(self) -> EcrRegistry:
        def client_for(region: str) -> object:
            assert region == "eu-west-1"
            return self.client

        return EcrRegistry(client_for)


def _tag(default_synth: Synthesized) -> str:
    [asset] = image_assets(default_synth.outdir)
    return asset.destinations[0].tag


def _scan_published(
    fake: FakeTrivy, tmp_path: Path, synthesized: Synthesized, prod_digest: str = DIGEST
) -> tuple[bool, list[str], str]:
    """The image scan of the default config, staging's tag answering DIGEST and prod's
    `prod_digest`: (passed, printed lines, the asset's tag)."""
    tag = _tag(synthesized)
    ecr = StubbedEcr()
    ecr.answers("222222222222", STAGING_REPOSITORY, tag, DIGEST)
    ecr.answers("333333333333", PROD_REPOSITORY, tag, prod_digest)
    ok, lines = _run_image_scan(fake, tmp_path, synthesized.outdir, ecr)
    return ok, lines, tag


def _run_image_scan(
    fake: FakeTrivy, tmp_path: Path, cloud_assembly: Path, ecr: StubbedEcr
) -> tuple[bool, list[str]]:
    lines: list[str] = []
    ok = run(
        trivy=Trivy(fake.binary, tmp_path / "reports", None),
        cloud_assembly=cloud_assembly,
        registry=ecr.registry(),
        today=TODAY,
        source_root=_clean_dir(tmp_path, "src"),
        out=lines.append,
    )
    ecr.stubber.assert_no_pending_responses()
    return ok, lines


def test_the_published_image_is_scanned_by_digest_from_the_first_targets_repository(
    fake_trivy: FakeTrivy, tmp_path: Path, default_synth: Synthesized
) -> None:
    ok, lines, tag = _scan_published(fake_trivy, tmp_path, default_synth)
    assert ok, "\n".join(lines)
    assert any(line.startswith("PASS one digest in every target") for line in lines)
    images = [call for call in fake_trivy.calls() if call[0] == "image"]
    assert len(images) == 2  # the scan and the SBOM, both by digest, both from the registry
    for call in images:
        assert SCANNED in call and not [arg for arg in call if arg.endswith(f":{tag}")]
        assert call[1:3] == ["--image-src", "remote"]
    [scan] = [call for call in images if "--scanners" in call]
    assert scan[scan.index("--scanners") + 1] == "vuln,secret,misconfig"
    assert "--ignore-unfixed" in scan
    [sbom] = (tmp_path / "reports").glob("sbom-*.cyclonedx.json")
    assert SCANNED in sbom.read_text()


def test_a_tag_with_another_digest_in_a_later_target_fails_naming_both(
    fake_trivy: FakeTrivy, tmp_path: Path, default_synth: Synthesized
) -> None:
    ok, lines, tag = _scan_published(fake_trivy, tmp_path, default_synth, prod_digest=OTHER_DIGEST)
    assert not ok
    text = "\n".join(lines)
    assert "FAIL one digest in every target" in text
    assert (
        f"prod would run another image than the one scanned: tag {tag} is {OTHER_DIGEST} in "
        f"333333333333.dkr.ecr.eu-west-1.amazonaws.com/{PROD_REPOSITORY}:{tag} but {DIGEST} in "
        f"222222222222.dkr.ecr.eu-west-1.amazonaws.com/{STAGING_REPOSITORY}:{tag} (staging, scanned)"
    ) in text


VULNERABLE = {
    "Results": [
        {
            "Target": "222222222222.dkr.ecr.eu-west-1.amazonaws.com/repo@sha256:aaa (debian 12.12)",
            "Vulnerabilities": [
                {
                    "VulnerabilityID": "CVE-2099-0001",
                    "PkgName": "openssl",
                    "InstalledVersion": "3.0.17-1~deb12u2",
                    "FixedVersion": "3.0.17-1~deb12u3",
                    "Severity": "CRITICAL",
                    "Title": "planted: remote code execution",
                },
                # Neither fails the scan: no fix yet; a fix but LOW.
                {
                    "VulnerabilityID": "CVE-2099-0002",
                    "PkgName": "libc6",
                    "InstalledVersion": "2.36-9",
                    "Severity": "HIGH",
                    "Title": "planted: no fix",
                },
                {
                    "VulnerabilityID": "CVE-2099-0003",
                    "PkgName": "zlib1g",
                    "InstalledVersion": "1:1.2.13",
                    "FixedVersion": "1:1.2.14",
                    "Severity": "LOW",
                    "Title": "planted: low",
                },
            ],
        }
    ]
}


def test_a_vulnerable_image_fails_the_scan(
    fake_trivy: FakeTrivy, tmp_path: Path, default_synth: Synthesized
) -> None:
    fake_trivy.report.write_text(json.dumps(VULNERABLE))
    ok, lines, _ = _scan_published(fake_trivy, tmp_path, default_synth)
    assert not ok
    [failed] = [line for line in lines if line.startswith("FAIL image ")]
    assert "by digest" in failed and failed.endswith("1 finding(s)")
    assert any("CVE-2099-0001" in line and "-> 3.0.17-1~deb12u3" in line for line in lines)
    assert not any("CVE-2099-0002" in line or "CVE-2099-0003" in line for line in lines)


def test_image_findings_are_fixable_vulnerabilities_any_secret_and_serious_misconfigurations() -> (
    None
):
    report = {
        "Results": [
            {
                "Target": "/app/settings.py",
                "Secrets": [
                    {"RuleID": "github-pat", "Severity": "MEDIUM", "Title": "GitHub PAT"},
                ],
            },
            {
                "Target": "Dockerfile",
                "Misconfigurations": [
                    {"ID": "DS-0002", "Severity": "HIGH", "Title": "root user", "Status": "FAIL"},
                    {"ID": "DS-0026", "Severity": "LOW", "Title": "no healthcheck"},
                    {"ID": "DS-0001", "Severity": "HIGH", "Title": "ok", "Status": "PASS"},
                ],
            },
        ]
    }
    assert {f.id for f in image_findings(report)} == {"github-pat", "DS-0002"}


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("AccessDeniedException", "the repository's policy in account 222222222222"),
        ("ImageNotFoundException", "not found (ImageNotFoundException)"),
        ("RepositoryNotFoundException", "is the target bootstrapped"),
    ],
)
def test_registry_errors_stop_the_scan_with_what_to_do(
    fake_trivy: FakeTrivy, tmp_path: Path, default_synth: Synthesized, code: str, message: str
) -> None:
    ecr = StubbedEcr()
    ecr.fails(code, "planted")
    with pytest.raises(ScanError, match=r"staging: 222222222222\.dkr\.ecr") as error:
        _run_image_scan(fake_trivy, tmp_path, default_synth.outdir, ecr)
    assert message in str(error.value)


@dataclass(frozen=True)
class LocalRegistry:
    host: str
    digest: str

    def reference(self) -> str:
        return f"{self.host}/service@{self.digest}"


def _layer(files: dict[str, bytes]) -> tuple[bytes, bytes]:
    """A layer: the tar (whose digest is the config's diff id) and its gzip (the blob)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    return raw, gzip.compress(raw, mtime=0)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def local_registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[LocalRegistry]:
    """A real (minimal) OCI registry on 127.0.0.1 serving one image, by tag or digest, whose
    layer holds a planted AWS key pair. Trivy talks plain HTTP to a registry on localhost."""
    key_id = "AKIA" + "QYLPMN5HHHFPZAM2"  # assembled here so this file holds no secret
    secret = "wJalrXUtnFEMI" + "/K7MDENG/bPxRfiCYEXAMPLEKEY"[::-1]
    raw, blob = _layer(
        {
            "etc/os-release": b'NAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n',
            "etc/debian_version": b"12.12\n",
            "app/settings.py": f'key = "{key_id}"\nsecret = "{secret}"\n'.encode(),
        }
    )
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"User": "10001"},
            "rootfs": {"type": "layers", "diff_ids": [_sha256(raw)]},
            "history": [{"created_by": "COPY settings.py /app/settings.py"}],
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _sha256(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": _sha256(blob),
                    "size": len(blob),
                }
            ],
        }
    ).encode()
    blobs = {_sha256(config): config, _sha256(blob): blob}
    digest = _sha256(manifest)

    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self._answer(with_body=False)

        def do_GET(self) -> None:
            self._answer(with_body=True)

        def _answer(self, *, with_body: bool) -> None:
            status, body, headers = self._route()
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def _route(self) -> tuple[int, bytes, dict[str, str]]:
            blob_digest = self.path.removeprefix("/v2/service/blobs/")
            if self.path == "/v2/":
                return 200, b"{}", {"Content-Type": "application/json"}
            if self.path in ("/v2/service/manifests/latest", f"/v2/service/manifests/{digest}"):
                kind = "application/vnd.oci.image.manifest.v1+json"
                return 200, manifest, {"Content-Type": kind, "Docker-Content-Digest": digest}
            if blob_digest in blobs:
                kind = "application/octet-stream"
                headers = {"Content-Type": kind, "Docker-Content-Digest": blob_digest}
                return 200, blobs[blob_digest], headers
            return 404, b"{}", {"Content-Type": "application/json"}

        def log_message(self, *args: object) -> None:
            pass

    # Its own cache: what Trivy learns about this image stays in the test's directory.
    monkeypatch.setenv("TRIVY_CACHE_DIR", str(tmp_path / "trivy-cache"))
    with serving(Handler) as server:
        yield LocalRegistry(f"127.0.0.1:{server.server_address[1]}", digest)


def test_trivy_reads_the_image_by_digest_from_the_registry_without_a_daemon(
    verified: Path, tmp_path: Path, local_registry: LocalRegistry
) -> None:
    # The real, pinned Trivy against a real registry: the SBOM and the scan the pipeline runs,
    # by digest. Vulnerabilities need Trivy's database (network), so here the image is scanned
    # for secrets and misconfigurations only; the planted key pair in its layer fails it.
    trivy = Trivy(verified, tmp_path / "reports", None)
    reference = local_registry.reference()
    sbom = trivy.sbom(reference, "sbom.cyclonedx.json")
    assert json.loads(sbom.read_text())["metadata"]["component"]["name"] == reference
    before = sbom.read_text()
    record_digest(sbom, reference)
    assert sbom.read_text() == before  # Trivy itself names the digest
    found = trivy.image(reference, "image.json", scanners=("secret", "misconfig"))
    assert {(f.id, f.target) for f in found} >= {("aws-access-key-id", "/app/settings.py")}


def test_the_sbom_records_the_digest_when_trivy_did_not(tmp_path: Path) -> None:
    sbom = tmp_path / "sbom.json"
    sbom.write_text(json.dumps({"bomFormat": "CycloneDX", "metadata": {"component": {}}}))
    record_digest(sbom, SCANNED)
    properties = json.loads(sbom.read_text())["metadata"]["component"]["properties"]
    assert properties == [{"name": "webapp-delivery:scanned-image", "value": SCANNED}]
    # Recorded once: a second pass (or an SBOM in which Trivy named the digest) is left alone.
    before = sbom.read_text()
    record_digest(sbom, SCANNED)
    assert sbom.read_text() == before


def test_a_symlinked_cloud_assembly_is_scanned_for_real(verified: Path, tmp_path: Path) -> None:
    # The pipeline links cdk.out to the synth output; Trivy ignores symlinked directories.
    real = _clean_dir(tmp_path, "synth-output")
    (real / "Open.template.json").write_text(json.dumps(OPEN_SSH_TEMPLATE))
    link = tmp_path / "cdk.out"
    link.symlink_to(real, target_is_directory=True)
    found = Trivy(verified, tmp_path / "reports", None).templates(link)
    assert "AWS-0107" in {f.id for f in found}


def test_a_scan_of_nothing_does_not_pass(verified: Path, tmp_path: Path) -> None:
    with pytest.raises(ScanError, match="no Dockerfile or template to scan"):
        Trivy(verified, tmp_path / "reports", None).templates(_clean_dir(tmp_path, "empty"))
