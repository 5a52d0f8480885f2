"""`make scan` and the pipeline's SecurityScan action: one script, one Trivy, one set of settings.

Scans, and what fails them:
  secrets    any secret in the source tree                          (offline)
  dockerfile HIGH/CRITICAL misconfigurations of the service Dockerfile  (offline)
  templates  HIGH/CRITICAL misconfigurations of cdk.out's templates     (offline)
  image      HIGH/CRITICAL vulnerabilities with a fix, in the image built from the very asset
             directory the pipeline publishes; plus a CycloneDX SBOM   (needs the vulnerability
             database, i.e. network, and a Docker engine: the pipeline)

Before anything runs, the Trivy binary's SHA-256 is checked against policies/trivy.lock.json and
known-malicious versions are refused; .trivyignore.yaml entries must carry a statement and an
expiry at most 90 days ahead.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from configuration.toolchain import ROOT
from ops.waivers import merged_ignore_file

LOCK = ROOT / "policies" / "trivy.lock.json"
IGNORE_FILE = ROOT / ".trivyignore.yaml"
DOCKERFILE_DIR = ROOT / "service" / "runtime"
MAX_IGNORE_DAYS = 90
SEVERITIES = "HIGH,CRITICAL"
# Never scanned for secrets: installed dependencies and generated output.
SKIP_DIRS = (".git", ".venv", ".lock-venv", "node_modules", "cdk.out", ".cdk.out.partial", "build")


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


def check_ignore_file(path: Path, today: dt.date) -> list[str]:
    """Problems with the ignore file: entries without a statement, or expired, or too far out."""
    if not path.exists():
        return []
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        return [f"{path.name}: not valid YAML: {error}"]
    problems: list[str] = []
    latest = today + dt.timedelta(days=MAX_IGNORE_DAYS)
    for section, entries in data.items():
        for index, entry in enumerate(entries or []):
            where = f"{path.name}: {section}[{index}] ({entry.get('id', 'no id')})"
            statement = str(entry.get("statement") or "").strip()
            if len(statement) < 20:
                problems.append(f"{where}: needs a statement saying why it is acceptable")
            expiry = entry.get("expired_at")
            if not isinstance(expiry, dt.date):
                problems.append(f"{where}: needs expired_at: YYYY-MM-DD (at most {latest})")
            elif expiry < today:
                problems.append(
                    f"{where}: expired on {expiry}; fix the finding or review and renew"
                )
            elif expiry > latest:
                problems.append(
                    f"{where}: expires {expiry}, more than {MAX_IGNORE_DAYS} days ahead "
                    f"(latest allowed {latest})"
                )
    return problems


class Trivy:
    """Runs the verified binary with the settings shared by every scan."""

    def __init__(self, binary: Path, reports: Path, ignore_file: Path | None = IGNORE_FILE) -> None:
        self.binary = binary
        self.reports = reports
        self.ignore_file = ignore_file

    def _run(self, args: list[str], report: str) -> dict[str, Any]:
        self.reports.mkdir(parents=True, exist_ok=True)
        output = self.reports / report
        argv = [str(self.binary), *args, "--quiet", "--format", "json", "--output", str(output)]
        if self.ignore_file is not None and self.ignore_file.exists():
            argv += ["--ignorefile", str(self.ignore_file)]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
        if result.returncode != 0:
            raise ScanError(f"trivy {args[0]} failed: {result.stderr.strip()[-2000:]}")
        return json.loads(output.read_text())  # type: ignore[no-any-return]

    def secrets(self, root: Path, skip_dirs: tuple[str, ...] = SKIP_DIRS) -> list[Finding]:
        report = self._run(
            ["fs", "--scanners", "secret", "--skip-dirs", ",".join(skip_dirs), str(root)],
            "secrets.json",
        )
        return [
            Finding(
                s["RuleID"],
                s["Severity"],
                r["Target"],
                f":{s.get('StartLine', '?')}",
                s["Title"],
            )
            for r in report.get("Results", [])
            for s in r.get("Secrets") or []
        ]

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
        data = self._run([*argv, "--severity", SEVERITIES, str(real)], report)
        if not data.get("Results"):
            raise ScanError(
                f"{target}: Trivy found no Dockerfile or template to scan; "
                "a scan of nothing must not pass (synthesize first?)."
            )
        findings: dict[Finding, None] = {}  # each finding once, in Trivy's order
        for result in data.get("Results", []):
            for item in result.get("Misconfigurations") or []:
                where = _resource(item.get("CauseMetadata") or {})
                finding = Finding(
                    item["ID"], item["Severity"], result["Target"], where, item["Title"]
                )
                findings[finding] = None
        return list(findings)

    def image(self, image: str) -> list[Finding]:
        data = self._run(
            [
                "image",
                "--scanners",
                "vuln",
                "--severity",
                SEVERITIES,
                "--ignore-unfixed",
                image,
            ],
            "image-vulnerabilities.json",
        )
        self._sbom(image)
        return [
            Finding(
                v["VulnerabilityID"],
                v["Severity"],
                f"{v['PkgName']} {v.get('InstalledVersion', '')}",
                f" -> {v.get('FixedVersion', '')}",
                v.get("Title", ""),
            )
            for r in data.get("Results", [])
            for v in r.get("Vulnerabilities") or []
        ]

    def _sbom(self, image: str) -> None:
        output = self.reports / "sbom.cyclonedx.json"
        argv = [
            str(self.binary),
            "image",
            "--quiet",
            "--format",
            "cyclonedx",
            "--output",
            str(output),
            image,
        ]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
        if result.returncode != 0:
            raise ScanError(f"SBOM generation failed: {result.stderr.strip()[-2000:]}")


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


def docker_asset_directory(cloud_assembly: Path) -> Path:
    """The directory the pipeline builds the service image from (its Docker image asset)."""
    for manifest in sorted(cloud_assembly.rglob("*.assets.json")):
        for asset in json.loads(manifest.read_text()).get("dockerImages", {}).values():
            return manifest.parent / str(asset["source"]["directory"])
    raise ScanError(f"{cloud_assembly}: no Docker image asset found; synthesize first.")


def build_image(directory: Path, tag: str) -> None:
    docker = shutil.which("docker")
    if docker is None:
        raise ScanError("docker is not available; the image scan runs in the pipeline.")
    subprocess.run(  # noqa: S603 - fixed arguments
        [docker, "build", "--platform", "linux/amd64", "--tag", tag, str(directory)], check=True
    )


def run(
    *,
    trivy: Trivy,
    cloud_assembly: Path,
    with_image: bool,
    today: dt.date,
    source_root: Path = ROOT,
    dockerfile_dir: Path = DOCKERFILE_DIR,
    out: Any = print,
) -> bool:
    """Run every scan; print what each found; True when all pass."""
    problems = check_ignore_file(trivy.ignore_file, today) if trivy.ignore_file else []
    for problem in problems:
        out(f"FAIL ignore file: {problem}")
    findings: dict[str, list[Finding]] = {
        "secrets in the source tree": trivy.secrets(source_root),
        "Dockerfile misconfigurations (HIGH, CRITICAL)": trivy.dockerfiles(dockerfile_dir),
        "template misconfigurations (HIGH, CRITICAL)": trivy.templates(cloud_assembly),
    }
    if with_image:
        tag = "scan-target:latest"
        build_image(docker_asset_directory(cloud_assembly), tag)
        findings["image vulnerabilities with a fix (HIGH, CRITICAL)"] = trivy.image(tag)
    ok = not problems
    for name, items in findings.items():
        out(f"{'PASS' if not items else 'FAIL'} {name}: {len(items)} finding(s)")
        for finding in items:
            out(finding.line())
        ok = ok and not items
    if not with_image:
        out(
            "SKIP image vulnerabilities and SBOM: they need Trivy's vulnerability database "
            "(network) and a Docker engine, so they run in the pipeline's SecurityScan action."
        )
    out(f"Reports: {trivy.reports}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Security scan with the pinned Trivy.")
    parser.add_argument("--cdk-out", type=Path, default=ROOT / "cdk.out")
    parser.add_argument("--reports", type=Path, default=ROOT / "build" / "scan")
    parser.add_argument("--image", action="store_true", help="also build and scan the image")
    args = parser.parse_args(argv)
    binary = Path(sys.executable).parent / "trivy"
    try:
        version = verify_trivy(binary)
        print(f"Trivy {version}, SHA-256 verified against {LOCK.relative_to(ROOT)}.")
        # The config's own waivers (plain_http_reason), recorded by synth (ops/waivers.py).
        ignore = merged_ignore_file(IGNORE_FILE, args.cdk_out, args.reports)
        ok = run(
            trivy=Trivy(binary, args.reports, ignore),
            cloud_assembly=args.cdk_out,
            with_image=args.image,
            today=dt.date.today(),
        )
    except ScanError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
