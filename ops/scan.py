"""`make scan` and the pipeline's SecurityScan step: one script, one Trivy, one set of settings.

Scans, and what fails them:
  ignores    an entry of .trivyignore.yaml without a statement, expired, or more than 90 days
             ahead; entries expiring within 30 days are warned about          (offline)
  base       a FROM line of the service Dockerfile neither pinned by digest nor under an
             unexpired waiver (ops/pin_base.py); waivers warned 30 days ahead (offline)
  secrets    any secret in the source tree                                    (offline)
  dockerfile HIGH/CRITICAL misconfigurations of the service Dockerfile        (offline)
  templates  HIGH/CRITICAL misconfigurations of cdk.out's templates           (offline)
  image      the image CDK published, read from the registry by digest (no Docker daemon):
             the asset's tag must resolve to one digest in every target's asset repository;
             then HIGH/CRITICAL vulnerabilities with a fix, any secret, HIGH/CRITICAL
             misconfigurations; plus a CycloneDX SBOM that records the digest
             (needs the published image and Trivy's vulnerability database: the pipeline)

Before anything runs, the Trivy binary's SHA-256 is checked against policies/trivy.lock.json and
known-malicious versions are refused.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import platform
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml  # type: ignore[import-untyped]

from components.image_assets import (
    AssetManifestError,
    ImageAsset,
    ImageDestination,
    image_assets,
)
from configuration.toolchain import ROOT
from ops import expiry, pin_base, quiet_interrupts
from ops.waivers import merged_ignore_file

LOCK = ROOT / "policies" / "trivy.lock.json"
IGNORE_FILE = ROOT / ".trivyignore.yaml"
DOCKERFILE_DIR = ROOT / "service" / "runtime"
SEVERITIES = ("HIGH", "CRITICAL")
# The published image: vulnerabilities need Trivy's database (network); the others run offline.
IMAGE_SCANNERS = ("vuln", "secret", "misconfig")
# Never scanned for secrets: installed dependencies and generated output.
SKIP_DIRS = (".git", ".venv", ".lock-venv", "node_modules", "cdk.out", ".cdk.out.partial", "build")
SBOM_DIGEST_PROPERTY = "webapp-delivery:scanned-image"


class ScanError(Exception):
    """The scan cannot run as configured; str() says why and what to do."""


@dataclass(frozen=True)
class Finding:
    id: str
    severity: str
    target: str
    where: str
    title: str

    def line(self) -> str:
        return f"  {self.severity:<8} {self.id:<24} {self.target}{self.where}  {self.title}"


def platform_key() -> str:
    return f"{sys.platform}-{platform.machine()}"


def verify_trivy(binary: Path, lock_file: Path = LOCK) -> str:
    """Check the binary's hash and version against the lock; return the version."""
    lock = json.loads(lock_file.read_text())
    if not binary.is_file():
        raise ScanError(
            f"{binary}: Trivy is not installed; run `make setup` (it installs {lock['package']})."
        )
    expected = lock["sha256"].get(platform_key())
    if expected is None:
        raise ScanError(
            f"{lock_file}: no checksum for platform {platform_key()}; add the SHA-256 of the "
            f"Trivy {lock['version']} binary for it after verifying it independently."
        )
    actual = hashlib.sha256(binary.read_bytes()).hexdigest()
    if actual != expected:
        raise ScanError(
            f"{binary}: SHA-256 {actual} does not match {expected} in {lock_file.name}; "
            "refusing to run an unverified scanner."
        )
    output = subprocess.run(  # noqa: S603 - the binary's hash was just verified
        [str(binary), "--version", "--format", "json"], capture_output=True, text=True, check=True
    ).stdout
    version = str(json.loads(output)["Version"])
    check_version(version, lock)
    return version


def check_version(version: str, lock: dict[str, Any]) -> None:
    if version in lock["refused_versions"]:
        raise ScanError(
            f"Trivy {version} is a known-malicious release (GHSA-69fq-xp46-6x23); refusing it."
        )
    if version != lock["version"]:
        raise ScanError(f"Trivy {version} is installed but {lock['version']} is pinned.")


@dataclass(frozen=True)
class IgnoreReview:
    """What the ignore file's entries mean on a given day: problems fail the scan, warnings
    announce the entries that will expire soon."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_ignore_file(path: Path, today: dt.date) -> IgnoreReview:
    """Review the ignore file on `today`: entries without a statement, expired, or too far out
    are problems; entries expiring within expiry.WARN_DAYS are warnings."""
    review = IgnoreReview()
    if not path.exists():
        return review
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        review.problems.append(f"{path.name}: not valid YAML: {error}")
        return review
    latest = expiry.latest(today)
    renew = (
        f"to renew it, review the finding and the statement, then set expired_at to a date at "
        f"most {expiry.MAX_DAYS} days ahead (at the latest {latest}); see docs/security.md, "
        "'Rotating the ignores'"
    )
    for section, entries in data.items():
        for index, entry in enumerate(entries or []):
            where = f"{path.name}: {section}[{index}] ({entry.get('id', 'no id')})"
            statement = str(entry.get("statement") or "").strip()
            if len(statement) < 20:
                review.problems.append(f"{where}: needs a statement saying why it is acceptable")
            expires = entry.get("expired_at")
            if not isinstance(expires, dt.date):
                review.problems.append(f"{where}: needs expired_at: YYYY-MM-DD (at most {latest})")
                continue
            state = expiry.state(expires, today)
            if state == "expired":
                review.problems.append(
                    f"{where}: expired on {expires}, so the finding is no longer accepted. "
                    f"Fix the finding, or {renew}."
                )
            elif state == "too far":
                review.problems.append(
                    f"{where}: expires {expires}, more than {expiry.MAX_DAYS} days ahead "
                    f"(latest allowed {latest})"
                )
            elif state == "soon":
                days = (expires - today).days
                review.warnings.append(
                    f"{where}: expires on {expires}, in {days} day(s); after that the scan fails. "
                    f"Fix the finding, or {renew}."
                )
    return review


class Trivy:
    """Runs the verified binary with the settings shared by every scan."""

    def __init__(self, binary: Path, reports: Path, ignore_file: Path | None = IGNORE_FILE) -> None:
        self.binary = binary
        self.reports = reports
        self.ignore_file = ignore_file

    def _run(self, args: list[str], report: str, output_format: str = "json") -> Path:
        self.reports.mkdir(parents=True, exist_ok=True)
        output = self.reports / report
        argv = [str(self.binary), *args, "--quiet", "--format", output_format]
        argv += ["--output", str(output)]
        if self.ignore_file is not None and self.ignore_file.exists():
            argv += ["--ignorefile", str(self.ignore_file)]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
        if result.returncode != 0:
            raise ScanError(f"trivy {args[0]} failed: {result.stderr.strip()[-2000:]}")
        if not output.is_file():
            raise ScanError(f"trivy {args[0]} wrote no report to {output}.")
        return output

    def _json(self, args: list[str], report: str) -> dict[str, Any]:
        output = self._run(args, report)
        try:
            return json.loads(output.read_text())  # type: ignore[no-any-return]
        except json.JSONDecodeError as error:
            raise ScanError(f"{output}: Trivy's report is not JSON ({error}).") from error

    def secrets(self, root: Path, skip_dirs: tuple[str, ...] = SKIP_DIRS) -> list[Finding]:
        report = self._json(
            ["fs", "--scanners", "secret", "--skip-dirs", ",".join(skip_dirs), str(root)],
            "secrets.json",
        )
        return _secrets(report)

    def dockerfiles(self, target: Path) -> list[Finding]:
        return self._config(target, "dockerfile", "dockerfile.json")

    def templates(self, target: Path) -> list[Finding]:
        # Only CloudFormation: the cloud assembly also holds a copy of the Dockerfile (the image
        # asset), which dockerfiles() scans at its source.
        return self._config(target, "cloudformation", "templates.json")

    def _config(self, target: Path, scanner: str, report: str) -> list[Finding]:
        # Trivy does not follow a symlinked directory (the pipeline links cdk.out to the synth
        # output): scan the real path, and refuse a scan that found nothing to scan at all.
        real = target.resolve()
        argv = ["config", "--skip-check-update", "--misconfig-scanners", scanner]
        data = self._json([*argv, "--severity", ",".join(SEVERITIES), str(real)], report)
        if not data.get("Results"):
            raise ScanError(
                f"{target}: Trivy found no Dockerfile or template to scan; "
                "a scan of nothing must not pass (synthesize first?)."
            )
        return _misconfigurations(data)

    def image(
        self, reference: str, report: str, scanners: tuple[str, ...] = IMAGE_SCANNERS
    ) -> list[Finding]:
        """Scan `reference` (`registry/repository@sha256:...`) straight from the registry: no
        Docker daemon (`--image-src remote`); Trivy signs in to ECR with the AWS credentials of
        its environment (https://trivy.dev/docs/latest/advanced/private-registries/)."""
        data = self._json(
            [
                "image",
                "--image-src",
                "remote",
                "--scanners",
                ",".join(scanners),
                "--ignore-unfixed",
                reference,
            ],
            report,
        )
        return image_findings(data)

    def sbom(self, reference: str, report: str) -> Path:
        return self._run(["image", "--image-src", "remote", reference], report, "cyclonedx")


def _secrets(report: dict[str, Any]) -> list[Finding]:
    return [
        Finding(s["RuleID"], s["Severity"], r["Target"], f":{s.get('StartLine', '?')}", s["Title"])
        for r in report.get("Results") or []
        for s in r.get("Secrets") or []
    ]


def _misconfigurations(report: dict[str, Any]) -> list[Finding]:
    findings: dict[Finding, None] = {}  # each finding once, in Trivy's order
    for result in report.get("Results") or []:
        for item in result.get("Misconfigurations") or []:
            if item.get("Severity") not in SEVERITIES or item.get("Status", "FAIL") != "FAIL":
                continue
            where = _resource(item.get("CauseMetadata") or {})
            finding = Finding(item["ID"], item["Severity"], result["Target"], where, item["Title"])
            findings[finding] = None
    return list(findings)


def image_findings(report: dict[str, Any]) -> list[Finding]:
    """What fails an image: HIGH/CRITICAL vulnerabilities that have a fix, any secret, and
    HIGH/CRITICAL misconfigurations (from one `trivy image` JSON report)."""
    vulnerabilities = [
        Finding(
            v["VulnerabilityID"],
            v["Severity"],
            f"{v['PkgName']} {v.get('InstalledVersion', '')}",
            f" -> {v['FixedVersion']}",
            v.get("Title", ""),
        )
        for r in report.get("Results") or []
        for v in r.get("Vulnerabilities") or []
        if v.get("Severity") in SEVERITIES and v.get("FixedVersion")
    ]
    return vulnerabilities + _secrets(report) + _misconfigurations(report)


def record_digest(sbom: Path, reference: str) -> None:
    """Make sure the SBOM names the exact image it describes (`registry/repository@digest`):
    Trivy records it as the image's RepoDigest when it reads the image by digest; if it did not,
    add it as a property of the SBOM's subject."""
    try:
        data = json.loads(sbom.read_text())
    except json.JSONDecodeError as error:
        raise ScanError(f"{sbom}: the SBOM is not JSON ({error}).") from error
    if reference in json.dumps(data):
        return
    component = data.setdefault("metadata", {}).setdefault("component", {})
    component.setdefault("properties", []).append(
        {"name": SBOM_DIGEST_PROPERTY, "value": reference}
    )
    sbom.write_text(json.dumps(data, indent=2) + "\n")


def _resource(cause: dict[str, Any]) -> str:
    """Where a misconfiguration is: for a template, the resource's logical id and its line (Trivy
    names the resource by file and lines only, so two listeners of one template would otherwise
    print as the same finding twice); for a Dockerfile, the instruction's line."""
    resource = str(cause.get("Resource") or "")
    line = cause.get("StartLine")
    if resource and "/" not in resource:
        return f" ({resource})"
    for code in (cause.get("Code") or {}).get("Lines") or []:
        if code.get("FirstCause"):
            match = re.match(r'\s*"([A-Za-z0-9]+)"\s*:', str(code.get("Content", "")))
            if match:
                return f" ({match[1]}, line {line})"
    return f":{line}" if line else ""


class Registry(Protocol):
    def digest(self, destination: ImageDestination) -> str:
        """The digest the destination's tag resolves to in its repository."""
        ...


class EcrRegistry:
    """Resolves tags in the targets' ECR asset repositories (ecr:DescribeImages across accounts:
    the scan's role may call it on those repositories, and each repository's policy must let the
    pipeline account read; see docs/security.md, 'Security scanning')."""

    def __init__(self, client_for: Callable[[str], Any] | None = None) -> None:
        self._client_for = client_for or _ecr_client
        self._clients: dict[str, Any] = {}

    def digest(self, destination: ImageDestination) -> str:
        from botocore.exceptions import (  # type: ignore[import-untyped]
            BotoCoreError,
            ClientError,
        )

        region = destination.region
        if region not in self._clients:
            self._clients[region] = self._client_for(region)
        where = f"{destination.target}: {destination.reference()}"
        try:
            response = self._clients[region].describe_images(
                registryId=destination.account,
                repositoryName=destination.repository,
                imageIds=[{"imageTag": destination.tag}],
            )
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            message = error.response.get("Error", {}).get("Message", "")
            if code in ("ImageNotFoundException", "RepositoryNotFoundException"):
                raise ScanError(
                    f"{where}: not found ({code}). The Assets stage publishes every target's copy "
                    "before the scan; is the target bootstrapped (make bootstrap) and did "
                    "publishing succeed?"
                ) from error
            if code in ("AccessDeniedException", "AccessDenied"):
                raise ScanError(
                    f"{where}: access denied ({message}). The scan's role may read the targets' "
                    "asset repositories, and the repository's policy in account "
                    f"{destination.account} must allow the pipeline account to read "
                    "(docs/security.md, 'Security scanning')."
                ) from error
            raise ScanError(f"{where}: {code or 'error'}: {message}") from error
        except BotoCoreError as error:
            raise ScanError(f"{where}: {error}") from error
        details = response.get("imageDetails") or []
        if not details or not details[0].get("imageDigest"):
            raise ScanError(f"{where}: ECR returned no image digest for the tag.")
        return str(details[0]["imageDigest"])


def _ecr_client(region: str) -> Any:
    import boto3  # type: ignore[import-untyped]

    return boto3.client("ecr", region_name=region)


@dataclass(frozen=True)
class ResolvedImage:
    asset: ImageAsset
    digest: str
    problems: list[str]

    @property
    def reference(self) -> str:
        """The scanned image, by digest, in the first target's asset repository."""
        return self.asset.destinations[0].reference(self.digest)


def resolve(asset: ImageAsset, registry: Registry) -> ResolvedImage:
    """The digest the asset's tag resolves to in the first target's repository, and a problem for
    every target whose repository holds something else under the same tag."""
    if not asset.destinations:
        raise ScanError(f"image asset {asset.asset_hash}: published to no target.")
    first, *others = asset.destinations
    digest = registry.digest(first)
    problems = []
    for other in others:
        other_digest = registry.digest(other)
        if other_digest != digest:
            problems.append(
                f"{other.target} would run another image than the one scanned: tag {other.tag} "
                f"is {other_digest} in {other.reference()} but {digest} in {first.reference()} "
                f"({first.target}, scanned). Delete the tag in {other.target}'s repository and "
                "release again, so that publishing pushes the same image everywhere."
            )
    return ResolvedImage(asset, digest, problems)


def run(
    *,
    trivy: Trivy,
    cloud_assembly: Path,
    today: dt.date,
    registry: Registry | None = None,
    source_root: Path = ROOT,
    dockerfile_dir: Path = DOCKERFILE_DIR,
    out: Callable[[str], object] = print,
) -> bool:
    """Run every scan; print what each found; True when all pass."""
    review = check_ignore_file(trivy.ignore_file, today) if trivy.ignore_file else IgnoreReview()
    for warning in review.warnings:
        out(f"WARN ignore file: {warning}")
    for problem in review.problems:
        out(f"FAIL ignore file: {problem}")
    if not review.problems:
        out("PASS ignore file: every entry explained and unexpired")
    ok = not review.problems
    try:
        base_problems, base_warnings = pin_base.review(dockerfile_dir / "Dockerfile", today)
    except pin_base.PinError as error:
        raise ScanError(str(error)) from error
    for warning in base_warnings:
        out(f"WARN base image: {warning}")
    for problem in base_problems:
        out(f"FAIL base image: {problem}")
    if not base_problems:
        out("PASS base image: pinned by digest, or under an unexpired waiver")
    ok = ok and not base_problems
    findings: dict[str, list[Finding]] = {
        "secrets in the source tree": trivy.secrets(source_root),
        "Dockerfile misconfigurations (HIGH, CRITICAL)": trivy.dockerfiles(dockerfile_dir),
        "template misconfigurations (HIGH, CRITICAL)": trivy.templates(cloud_assembly),
    }
    if registry is not None:  # the published images: the pipeline's scan
        try:
            assets = image_assets(cloud_assembly)
        except AssetManifestError as error:
            raise ScanError(str(error)) from error
        if not assets:
            raise ScanError(f"{cloud_assembly}: no container image asset to scan.")
        for asset in assets:
            resolved = resolve(asset, registry)
            short = asset.asset_hash[:12]
            out(f"Image {short}: {resolved.reference}")
            for destination in asset.destinations:
                out(f"  {destination.target:<12} {destination.reference()}")
            name = f"one digest in every target (image {short})"
            out(f"{'PASS' if not resolved.problems else 'FAIL'} {name}")
            for problem in resolved.problems:
                out(f"  {problem}")
            ok = ok and not resolved.problems
            label = (
                f"image {short} by digest: vulnerabilities with a fix, secrets, misconfigurations"
            )
            findings[label] = trivy.image(resolved.reference, f"image-{short}.json")
            sbom = trivy.sbom(resolved.reference, f"sbom-{short}.cyclonedx.json")
            record_digest(sbom, resolved.reference)
    for name, items in findings.items():
        out(f"{'PASS' if not items else 'FAIL'} {name}: {len(items)} finding(s)")
        for finding in items:
            out(finding.line())
        ok = ok and not items
    if registry is None:
        out(
            "SKIP the published image (one digest in every target, vulnerabilities, SBOM): it "
            "exists only once the pipeline has published it, and the vulnerability database "
            "needs the network, so it is scanned in the pipeline's SecurityScan step."
        )
    out(f"Reports: {trivy.reports}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Security scan with the pinned Trivy.")
    parser.add_argument("--cdk-out", type=Path, default=ROOT / "cdk.out")
    parser.add_argument("--reports", type=Path, default=ROOT / "build" / "scan")
    parser.add_argument(
        "--image", action="store_true", help="also check and scan the published image (pipeline)"
    )
    args = parser.parse_args(argv)
    trivy_binary = Path(sys.executable).parent / "trivy"
    try:
        version = verify_trivy(trivy_binary)
        print(f"Trivy {version}, SHA-256 verified against {LOCK.relative_to(ROOT)}.")
        # The config's own waivers (plain_http_reason), recorded by synth (ops/waivers.py).
        ignore = merged_ignore_file(IGNORE_FILE, args.cdk_out, args.reports)
        ok = run(
            trivy=Trivy(trivy_binary, args.reports, ignore),
            cloud_assembly=args.cdk_out,
            registry=EcrRegistry() if args.image else None,
            today=dt.date.today(),
        )
    except ScanError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    quiet_interrupts()
    sys.exit(main())
