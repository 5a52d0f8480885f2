"""The Trivy scan: the same script `make scan` and the pipeline run. It passes on the project and
fails on planted bad inputs; the scanner itself is pinned and verified."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import pytest

from ops.scan import (
    DOCKERFILE_DIR,
    IGNORE_FILE,
    LOCK,
    ScanError,
    Trivy,
    check_ignore_file,
    check_version,
    docker_asset_directory,
    platform_key,
    run,
    verify_trivy,
)

from ..conftest import ROOT, Synthesized

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
        with_image=False,
        today=today or dt.date.today(),
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
    assert any(line.startswith("SKIP image vulnerabilities") for line in lines)
    assert (tmp_path / "reports" / "templates.json").exists()


def _clean_dir(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
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


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("  - id: AWS-0053\n    expired_at: 2027-01-01\n", "needs a statement"),
        (
            "  - id: AWS-0053\n    statement: The load balancer is public by design.\n",
            "needs expired_at",
        ),
        (
            "  - id: AWS-0053\n    statement: The load balancer is public by design.\n    expired_at: 2026-11-27\n",
            "expired on 2026-11-27",
        ),
        (
            "  - id: AWS-0053\n    statement: The load balancer is public by design.\n    expired_at: 2027-06-01\n",
            "more than 90 days ahead",
        ),
    ],
)
def test_unexplained_expired_or_far_ignores_fail(tmp_path: Path, entry: str, problem: str) -> None:
    path = tmp_path / ".trivyignore.yaml"
    path.write_text("misconfigurations:\n" + entry)
    problems = check_ignore_file(path, TODAY)
    assert len(problems) == 1 and problem in problems[0], problems


def test_an_ignore_problem_fails_the_scan(verified: Path, tmp_path: Path) -> None:
    ignore = tmp_path / ".trivyignore.yaml"
    ignore.write_text(IGNORE_FILE.read_text())
    far_future = dt.date(2030, 1, 1)
    ok, lines = _run(
        verified,
        tmp_path,
        cloud_assembly=_small_assembly(tmp_path),
        source=_clean_dir(tmp_path, "src"),
        docker=DOCKERFILE_DIR,
        ignore=ignore,
        today=far_future,
    )
    assert not ok
    assert any("FAIL ignore file" in line and "expired" in line for line in lines)


def test_committed_ignores_are_valid_today() -> None:
    assert check_ignore_file(IGNORE_FILE, dt.date.today()) == []


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


def test_image_is_built_from_the_published_asset(default_synth: Synthesized) -> None:
    directory = docker_asset_directory(default_synth.outdir)
    assert directory.name.startswith("asset.")
    assert (directory / "Dockerfile").read_text() == (DOCKERFILE_DIR / "Dockerfile").read_text()


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
