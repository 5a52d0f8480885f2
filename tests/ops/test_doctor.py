"""`make doctor` against moto (and botocore's Stubber for CodeConnections, which moto lacks):
every check it makes, passing and failing, and the plain refusal without credentials."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from configuration import load_config
from ops.bootstrap import plan
from ops.bootstrap_template import PipelineTrust
from ops.doctor import (
    Check,
    MissingCredentialsError,
    check_certificate,
    main,
    required_bootstrap_version,
    run,
    table,
)
from policies.execution_policy import load_policies

from ..conftest import Synthesized

ACCOUNT = "123456789012"  # moto's account: the target
PIPELINE = "111111111111"  # the pipeline account, answered by a stubbed STS (profile "pipeline")
REGION = "eu-west-1"
ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
CONNECTION = (
    f"arn:aws:codeconnections:{REGION}:{PIPELINE}:connection/00000000-0000-4000-8000-000000000000"
)


def _config(
    tmp_path: Path, certificate_arn: str, *, source: str = f'connection_arn = "{CONNECTION}"'
) -> Path:
    path = tmp_path / "doctor.toml"
    path.write_text(
        f"""
[pipeline]
project = "webapp"
account = "{PIPELINE}"
region = "{REGION}"
profile = "pipeline"
[pipeline.source]
repository = "example-org/webapp"
branch = "main"
{source}

[[stages]]
name = "staging"
account = "{ACCOUNT}"
region = "{REGION}"
availability_zones = ["{REGION}a", "{REGION}b"]
[stages.service]
certificate_arn = "{certificate_arn}"
domain_name = "app.example.com"
"""
    )
    return path


# One botocore session for every test: each new one loads the endpoint and service models again
# (about 0.1 s a client), and moto starts each test with a fresh boto3 default session.
_BOTOCORE = botocore.session.Session()


def _client(name: str) -> Any:
    return boto3.Session(botocore_session=_BOTOCORE).client(name, region_name=REGION)


class Session:
    """A boto3 session on moto whose CodeConnections client is stubbed (moto does not implement
    it), and whose STS answers for the pipeline account when used with the pipeline's profile
    (moto serves a single account)."""

    def __init__(
        self, region: str, connection_status: str | None, profile: str | None = None
    ) -> None:
        self._session = boto3.Session(botocore_session=_BOTOCORE)
        self._region = region
        self._status = connection_status
        self._profile = profile

    def client(self, name: str) -> Any:
        client = self._session.client(name, region_name=self._region)
        if name == "iam" and self._profile == "pipeline":
            return _PipelineAccountIam(client)
        if name == "sts" and self._profile == "pipeline":
            stubber = Stubber(client)
            stubber.add_response(
                "get_caller_identity",
                {
                    "Account": PIPELINE,
                    "UserId": "AIDAEXAMPLE",
                    "Arn": f"arn:aws:iam::{PIPELINE}:user/operator",
                },
            )
            stubber.activate()
        if name == "codeconnections":
            stubber = Stubber(client)
            if self._status is None:
                stubber.add_client_error("get_connection", "ResourceNotFoundException")
            else:
                stubber.add_response(
                    "get_connection",
                    {"Connection": {"ConnectionArn": CONNECTION, "ConnectionStatus": self._status}},
                    {"ConnectionArn": CONNECTION},
                )
            stubber.activate()
        return client


class _PipelineAccountIam:
    """IAM of the pipeline account on moto's single account: policy ARNs name the pipeline
    account, moto holds the policies under its own."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.exceptions = client.exceptions

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(**kwargs: Any) -> Any:
            if "PolicyArn" in kwargs:
                kwargs["PolicyArn"] = kwargs["PolicyArn"].replace(f":{PIPELINE}:", f":{ACCOUNT}:")
            return method(**kwargs)

        return call


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def _bootstrap(
    version: str = "30",
    trusted: str = PIPELINE,
    confined: bool = True,
    policies: tuple[str, ...] | None = None,
    documents: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Bootstrap moto's account as `make bootstrap` would, under the project's qualifier. Moto
    serves one account, so it holds the pipeline account's roles and policies too. `policies`
    replaces the execution policies attached; `documents` replaces policy documents by name."""
    _client("ssm").put_parameter(Name="/cdk-bootstrap/webapp/version", Value=version, Type="String")
    iam = _client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{trusted}:root"},
                "Action": "sts:AssumeRole",
                # What ops/bootstrap_template.py adds: only the pipeline stack's roles.
                **(
                    {"Condition": PipelineTrust("webapp", "aws", trusted).condition}
                    if confined
                    else {}
                ),
            }
        ],
    }
    certificate = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/00000000-0000-4000-8000-000000000001"
    planned = plan(load_config(_config(Path(tempfile.mkdtemp()), certificate)))
    created: set[str] = set()
    for account in planned.accounts:
        iam.create_role(
            RoleName=f"cdk-webapp-deploy-role-{account.account}-{REGION}",
            AssumeRolePolicyDocument=json.dumps(trust),
        )
        role = f"cdk-webapp-cfn-exec-role-{account.account}-{REGION}"
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))
        for policy in account.policies:
            document = (documents or {}).get(policy.name, policy.document)
            iam.create_policy(PolicyName=policy.name, PolicyDocument=json.dumps(document))
        names = policies if policies is not None else [p.name for p in account.execution_policies]
        for name in names:
            if name not in {p.name for p in account.policies} and name not in created:
                iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(ALLOW_ALL))
                created.add(name)
            iam.attach_role_policy(RoleName=role, PolicyArn=f"arn:aws:iam::{ACCOUNT}:policy/{name}")


def _certificate(domain: str = "app.example.com") -> str:
    acm = _client("acm")
    arn: str = acm.request_certificate(DomainName=domain, ValidationMethod="DNS")["CertificateArn"]
    return arn


def _results(checks: list[Check]) -> dict[str, list[Check]]:
    result: dict[str, list[Check]] = {}
    for check in checks:
        result.setdefault(check.name, []).append(check)
    return result


def _run(
    tmp_path: Path, certificate: str, status: str | None = "AVAILABLE", **kwargs: str
) -> dict[str, list[Check]]:
    config = load_config(_config(tmp_path, certificate, **kwargs))
    return _results(run(config, lambda profile, region: Session(region, status, profile), 21))


@pytest.mark.usefixtures("aws")
def test_a_ready_account_passes_everything_but_an_unvalidated_certificate(tmp_path: Path) -> None:
    _bootstrap()
    results = _run(tmp_path, _certificate())
    assert all(c.ok for c in results["credentials"])
    assert all(c.ok for c in results["bootstrap version"])
    assert all(c.ok for c in results["trusts pipeline"])
    assert all(c.ok for c in results["execution policies"])
    assert len(results["execution policies"]) == 2  # the pipeline account's and the target's
    # Each account's boundary and execution policies.
    expected = 2 + len(load_policies("target")) + len(load_policies("pipeline"))
    assert len(results["policy"]) == expected and all(c.ok for c in results["policy"])
    assert results["connection"][0].ok
    # moto leaves a requested certificate pending validation, as AWS does.
    [certificate] = results["certificate"]
    assert not certificate.ok and "PENDING_VALIDATION" in certificate.detail
    assert "validation" in certificate.fix


@pytest.mark.usefixtures("aws")
def test_missing_bootstrap_is_reported_with_the_command_to_run(tmp_path: Path) -> None:
    [check] = _run(tmp_path, _certificate())["bootstrapped"][:1]
    assert not check.ok and check.detail == "not bootstrapped with qualifier webapp"
    assert f"cdk bootstrap aws://{PIPELINE}/{REGION}" in check.fix


def _policy_with(sid: str) -> tuple[str, dict[str, Any]]:
    """The name and document of the target's planned execution policy holding statement `sid`."""
    certificate = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/00000000-0000-4000-8000-000000000001"
    planned = plan(load_config(_config(Path(tempfile.mkdtemp()), certificate)))
    target = next(a for a in planned.accounts if a.role == "target")
    policy = next(
        p
        for p in target.execution_policies
        if any(s.get("Sid") == sid for s in p.document["Statement"])
    )
    return policy.name, policy.document


@pytest.mark.usefixtures("aws")
def test_a_policy_older_than_the_repository_is_named_statement_by_statement(
    tmp_path: Path,
) -> None:
    name, document = _policy_with("ReadCdkAssets")
    outdated = {
        **document,
        "Statement": [s for s in document["Statement"] if s.get("Sid") != "ReadCdkAssets"],
    }
    _bootstrap(documents={name: outdated})
    failed = [c for c in _run(tmp_path, _certificate())["policy"] if not c.ok]
    assert [c.where for c in failed] == [f"arn:aws:iam::{ACCOUNT}:policy/{name}"]
    assert failed[0].detail == "statement ReadCdkAssets missing"
    assert "make bootstrap APPLY=1" in failed[0].fix


@pytest.mark.usefixtures("aws")
def test_a_statement_that_lacks_actions_is_named_with_them(tmp_path: Path) -> None:
    name, document = _policy_with("ReadCdkAssets")
    changed = json.loads(json.dumps(document))
    for statement in changed["Statement"]:
        if statement.get("Sid") == "ReadCdkAssets":
            statement["Action"] = ["s3:GetObject"]
    _bootstrap(documents={name: changed})
    [failed] = [c for c in _run(tmp_path, _certificate())["policy"] if not c.ok]
    assert failed.detail == "statement ReadCdkAssets differs (lacks s3:GetObjectVersion)"


@pytest.mark.usefixtures("aws")
def test_old_bootstrap_version_fails(tmp_path: Path) -> None:
    _bootstrap(version="14")
    [check, *_] = _run(tmp_path, _certificate())["bootstrap version"]
    assert not check.ok and "version 14, app needs 21" in check.detail


@pytest.mark.usefixtures("aws")
def test_target_that_does_not_trust_the_pipeline_fails(tmp_path: Path) -> None:
    _bootstrap(trusted="999999999999")
    [check] = _run(tmp_path, _certificate())["trusts pipeline"]
    assert not check.ok and f"--trust {PIPELINE}" in check.fix


@pytest.mark.usefixtures("aws")
def test_a_target_trusting_the_whole_pipeline_account_fails(tmp_path: Path) -> None:
    """Bootstrapped with CDK's own template: any principal of the pipeline account may deploy."""
    _bootstrap(confined=False)
    [check] = _run(tmp_path, _certificate())["trusts pipeline"]
    assert not check.ok and "every principal" in check.detail and "--force" in check.fix


@pytest.mark.usefixtures("aws")
def test_administrator_access_instead_of_the_execution_policies_fails(tmp_path: Path) -> None:
    _bootstrap(policies=("AdministratorAccess",))
    checks = _run(tmp_path, _certificate())["execution policies"]
    assert checks and all(not c.ok and "AdministratorAccess" in c.detail for c in checks)


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize(
    ("status", "words"),
    [
        ("PENDING", "Update pending connection"),
        ("ERROR", "recreate"),
        (None, "create the connection"),
    ],
)
def test_connection_that_is_not_available_fails(
    tmp_path: Path, status: str | None, words: str
) -> None:
    _bootstrap()
    [check] = _run(tmp_path, _certificate(), status=status)["connection"]
    assert not check.ok and words in check.fix


@pytest.mark.usefixtures("aws")
def test_missing_certificate_fails(tmp_path: Path) -> None:
    _bootstrap()
    missing = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/11111111-2222-4333-8444-555555555555"
    [check] = _run(tmp_path, missing)["certificate"]
    assert not check.ok and "ResourceNotFoundException" in check.detail


@pytest.mark.usefixtures("aws")
def test_github_token_secret_is_checked_when_used(tmp_path: Path) -> None:
    _bootstrap()
    source = 'github_token_secret = "github-token"'
    [missing] = _run(tmp_path, _certificate(), source=source)["GitHub token secret"]
    assert not missing.ok
    _client("secretsmanager").create_secret(Name="github-token", SecretString="x")
    [present] = _run(tmp_path, _certificate(), source=source)["GitHub token secret"]
    assert present.ok


@pytest.mark.usefixtures("aws")
def test_credentials_of_another_account_fail_and_skip_that_accounts_checks(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, _certificate()))
    other = config.model_copy(
        update={"stages": [config.stages[0].model_copy(update={"account": "222222222222"})]}
    )
    results = _results(
        run(other, lambda profile, region: Session(region, "AVAILABLE", profile), 21)
    )
    failed = [c for c in results["credentials"] if not c.ok]
    assert len(failed) == 1 and "belong to 123456789012" in failed[0].detail
    assert "certificate" not in results


def test_no_credentials_are_refused_plainly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_credentials(profile: str | None, region: str) -> Any:
        raise MissingCredentialsError("Unable to locate credentials")

    config = _config(
        tmp_path, f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/11111111-2222-4333-8444-555555555555"
    )
    assert main([str(config)], session_for=no_credentials) == 2
    assert "no AWS credentials available" in capsys.readouterr().err


@pytest.mark.usefixtures("aws")
def test_table_and_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _bootstrap()
    config = _config(tmp_path, _certificate())
    assert (
        main([str(config)], session_for=lambda profile, region: Session(region, "AVAILABLE")) == 1
    )
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["CHECK", "WHERE", "RESULT", "WHAT", "TO", "DO"]
    assert "FAIL status PENDING_VALIDATION" in out


def test_required_version_is_read_from_the_cloud_assembly(
    default_synth: Synthesized, tmp_path: Path
) -> None:
    assert required_bootstrap_version(default_synth.outdir) == 8
    # A stage's nested assembly asking for more than CDK's default decides it.
    nested = tmp_path / "assembly-Pipeline-prod"
    nested.mkdir()
    (nested / "manifest.json").write_text(
        json.dumps(
            {
                "artifacts": {
                    "Service": {
                        "type": "aws:cloudformation:stack",
                        "properties": {"requiresBootstrapStackVersion": 21},
                    }
                }
            }
        )
    )
    assert required_bootstrap_version(tmp_path) == 21


def test_table_marks_failures() -> None:
    assert "FAIL" in table([Check("x", "y", False, "z")])


def test_botocore_credential_errors_become_the_plain_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real failure modes: no credentials anywhere (STS raises NoCredentialsError) and a
    configured profile that does not exist (boto3.Session raises ProfileNotFound)."""
    from botocore.exceptions import NoCredentialsError, ProfileNotFound

    class NoCredentialsSession:
        def client(self, name: str) -> Any:
            class Client:
                def get_caller_identity(self) -> Any:
                    raise NoCredentialsError()

            return Client()

    config = _config(
        tmp_path, f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/11111111-2222-4333-8444-555555555555"
    )
    assert main([str(config)], session_for=lambda profile, region: NoCredentialsSession()) == 2
    assert "no AWS credentials available (Unable to locate credentials)" in capsys.readouterr().err

    def missing_profile(profile: str | None, region: str) -> Any:
        raise ProfileNotFound(profile="pipeline-admin")

    assert main([str(config)], session_for=missing_profile) == 2
    assert "pipeline-admin" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("domain", "ok"),
    [
        ("app.example.com", True),
        ("a.b.example.com", False),  # a wildcard covers exactly one label
        ("example.com", False),
        ("www.example.org", True),  # a subject alternative name
    ],
)
def test_an_issued_certificate_must_cover_the_domain(domain: str, ok: bool) -> None:
    arn = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/00000000-0000-4000-8000-000000000009"
    client = _BOTOCORE.create_client("acm", region_name=REGION)
    stubber = Stubber(client)
    stubber.add_response(
        "describe_certificate",
        {
            "Certificate": {
                "CertificateArn": arn,
                "DomainName": "*.example.com",
                "SubjectAlternativeNames": ["*.example.com", "www.example.org"],
                "Status": "ISSUED",
            }
        },
        {"CertificateArn": arn},
    )
    stubber.activate()

    class AcmSession:
        def client(self, name: str) -> Any:
            assert name == "acm"
            return client

    check = check_certificate(AcmSession(), arn, domain)
    assert check.ok is ok, check
    assert ok or check.detail == f"not valid for {domain}"


@pytest.mark.usefixtures("aws")
def test_each_configured_zone_must_exist_in_its_account(tmp_path: Path) -> None:
    _bootstrap()
    [present] = _run(tmp_path, _certificate())["availability zones"]
    assert present.ok and present.detail == f"{REGION}a, {REGION}b"
    path = _config(tmp_path, _certificate())
    path.write_text(path.read_text().replace(f'"{REGION}b"]', f'"{REGION}q"]'))
    config = load_config(path)
    [missing] = _results(
        run(config, lambda profile, region: Session(region, "AVAILABLE", profile), 21)
    )["availability zones"]
    assert not missing.ok
    assert missing.where == f"{ACCOUNT}/{REGION}"
    assert missing.detail == f"{REGION}q not available in this account"
    assert f"choose availability_zones among {REGION}a, {REGION}b, {REGION}c" in missing.fix


@pytest.mark.usefixtures("aws")
def test_profile_stands_in_for_the_pipeline_accounts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """make deploy PROFILE=...: the doctor checks with the credentials the deploy will use."""
    _bootstrap()
    path = _config(tmp_path, _certificate())
    path.write_text(path.read_text().replace('profile = "pipeline"\n', ""))
    used: list[str | None] = []

    def session_for(profile: str | None, region: str) -> Session:
        used.append(profile)
        return Session(region, "AVAILABLE", profile)

    main([str(path)], session_for=session_for)
    without = capsys.readouterr().out
    [line] = [
        row for row in without.splitlines() if row.startswith("credentials") and PIPELINE in row
    ]
    assert f"FAIL credentials belong to {ACCOUNT}" in line
    used.clear()
    main([str(path), "--profile", "pipeline"], session_for=session_for)
    out = capsys.readouterr().out
    assert "pipeline" in used
    [line] = [row for row in out.splitlines() if row.startswith("credentials") and PIPELINE in row]
    assert f"{PIPELINE} (profile pipeline)" in line and "ok   valid" in line


def test_an_unreachable_aws_is_reported_as_a_network_problem(tmp_path: Path) -> None:
    """A real socket that refuses connections, as a dead network or proxy does."""
    import socket

    from botocore.config import Config

    from ops.doctor import check_credentials

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: nothing listens

    class Unreachable:
        def client(self, name: str) -> Any:
            return boto3.Session(
                botocore_session=_BOTOCORE,
                aws_access_key_id="AKIAEXAMPLE",
                aws_secret_access_key="example",  # noqa: S106 - never sent anywhere real
            ).client(
                name,
                region_name=REGION,
                endpoint_url=f"http://127.0.0.1:{port}",
                config=Config(retries={"max_attempts": 1}, connect_timeout=2),
            )

    check = check_credentials(Unreachable(), PIPELINE, "pipeline")
    assert not check.ok
    assert check.detail == "cannot reach AWS STS: EndpointConnectionError"
    assert "network connection, proxy (HTTPS_PROXY)" in check.fix
    assert "SSO" not in check.fix


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize("other", ["webapp-admin", "web"])
def test_another_project_whose_name_extends_this_ones_is_reported(
    tmp_path: Path, other: str
) -> None:
    """`webapp-*` matches `webapp-admin`'s roles and log groups: the doctor names the clash,
    found by the other project's boundary. `web` is no clash: `webapp` does not start with `web-`."""
    _bootstrap()
    _client("iam").create_policy(
        PolicyName=f"{other}-permissions-boundary", PolicyDocument=json.dumps(ALLOW_ALL)
    )
    [check, *_] = _run(tmp_path, _certificate())["project names"]
    assert check.ok is (other == "web"), check
    if not check.ok:
        assert other in check.detail and "pipeline.project" in check.fix
