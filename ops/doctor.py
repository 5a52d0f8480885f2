"""`make doctor`: a preflight of the real accounts before the first deploy (and whenever a run
fails for reasons outside the code).

For the config, with the operator's credentials (the `profile` of each account, or the default
credentials), it checks:
  - the credentials work and belong to the account they are used for (`--profile`, make's
    PROFILE, stands in for the pipeline account's);
  - each stage's availability zones exist in its account;
  - every account and region the pipeline deploys to is bootstrapped, under the project's
    qualifier, at the version the app needs; each target trusts the pipeline account; every account
    runs CloudFormation with the project's execution policies rather than AdministratorAccess;
  - the boundary and execution policies in each account are the ones the repository generates
    (a difference is named statement by statement: run `make bootstrap APPLY=1` again);
  - the CodeConnections connection is AVAILABLE (a PENDING one fails the first run at Source);
  - each configured certificate exists, is issued, in the stage's account and region;
  - the GitHub token secret exists, when that source is used.
It prints a table (check, where, result, what to do) and exits 1 when anything fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from configuration import ConfigError, DeploymentConfig, load_config
from configuration.toolchain import ROOT
from ops import SessionFor, aws_error_kind, boto_session, quiet_interrupts
from ops.bootstrap import (
    Account,
    cdk_role_name,
    current_document,
    decode_policy,
    pipeline_trust,
    plan,
)

DEFAULT_REQUIRED_VERSION = 8


@dataclass(frozen=True)
class Check:
    name: str
    where: str
    ok: bool
    detail: str
    fix: str = ""


class MissingCredentialsError(Exception):
    pass


def required_bootstrap_version(cloud_assembly: Path) -> int:
    """The highest bootstrap version any synthesized stack asks for."""
    versions = [DEFAULT_REQUIRED_VERSION]
    for manifest in cloud_assembly.rglob("manifest.json"):
        for artifact in json.loads(manifest.read_text()).get("artifacts", {}).values():
            version = artifact.get("properties", {}).get("requiresBootstrapStackVersion")
            if version is not None:
                versions.append(int(version))
    return max(versions)


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", type(error).__name__))


def check_credentials(session: Any, account: str, profile: str | None) -> Check:
    where = f"{account}" + (f" (profile {profile})" if profile else "")
    try:
        actual = session.client("sts").get_caller_identity()["Account"]
    except Exception as error:
        if aws_error_kind(error) == "credentials":
            raise MissingCredentialsError(str(error)) from error
        if aws_error_kind(error) == "network":
            return Check(
                "credentials",
                where,
                False,
                f"cannot reach AWS STS: {type(error).__name__}",
                "check the network connection, proxy (HTTPS_PROXY) and VPN, then run "
                "make doctor again",
            )
        return Check(
            "credentials",
            where,
            False,
            f"cannot call STS: {_error_code(error)}",
            "check the profile's keys or SSO session (`aws sso login`)",
        )
    if actual != account:
        return Check(
            "credentials",
            where,
            False,
            f"credentials belong to {actual}",
            f"set `profile` in the config to a profile for account {account}",
        )
    return Check("credentials", where, True, "valid")


def check_bootstrap(
    session: Any,
    account: str,
    region: str,
    required: int,
    *,
    qualifier: str,
    pipeline_account: str | None,
    execution_policies: list[str],
    principal_patterns: list[str],
) -> list[Check]:
    where = f"{account}/{region}"
    bootstrap = f"make bootstrap APPLY=1 (runs cdk bootstrap aws://{account}/{region})"
    try:
        value = session.client("ssm").get_parameter(Name=f"/cdk-bootstrap/{qualifier}/version")
        version = int(value["Parameter"]["Value"])
    except Exception as error:
        if _error_code(error) == "ParameterNotFound":
            return [
                Check(
                    "bootstrapped",
                    where,
                    False,
                    f"not bootstrapped with qualifier {qualifier}",
                    bootstrap,
                )
            ]
        return [
            Check(
                "bootstrapped",
                where,
                False,
                f"cannot read the bootstrap version: {_error_code(error)}",
                bootstrap,
            )
        ]
    checks = [
        Check(
            "bootstrap version",
            where,
            version >= required,
            f"version {version}, app needs {required}",
            "" if version >= required else f"re-bootstrap with the pinned CLI: {bootstrap}",
        )
    ]
    iam = session.client("iam")
    if pipeline_account is not None:
        checks.append(
            _check_trust(
                iam, account, region, qualifier, pipeline_account, principal_patterns, bootstrap
            )
        )
    execution_role = cdk_role_name("cfn-exec", qualifier, account, region)
    try:
        attached = iam.list_attached_role_policies(RoleName=execution_role)["AttachedPolicies"]
        names = sorted(policy["PolicyName"] for policy in attached)
    except Exception as error:
        checks.append(
            Check(
                "execution policies",
                where,
                False,
                f"{execution_role}: {_error_code(error)}",
                bootstrap,
            )
        )
        return checks
    expected = sorted(execution_policies)
    ok = names == expected
    checks.append(
        Check(
            "execution policies",
            where,
            ok,
            f"CloudFormation runs with {', '.join(names) or 'no policy'}",
            "" if ok else f"expected {', '.join(expected)}: {bootstrap}",
        )
    )
    return checks


def _check_trust(
    iam: Any,
    account: str,
    region: str,
    qualifier: str,
    pipeline_account: str,
    principal_patterns: list[str],
    bootstrap: str,
) -> Check:
    where = f"{account}/{region}"
    deploy_role = cdk_role_name("deploy", qualifier, account, region)
    try:
        document = iam.get_role(RoleName=deploy_role)["Role"]["AssumeRolePolicyDocument"]
    except Exception as error:
        return Check(
            "trusts pipeline", where, False, f"{deploy_role}: {_error_code(error)}", bootstrap
        )
    document = decode_policy(document)
    trusted = pipeline_account in json.dumps(document)
    if not trusted:
        return Check(
            "trusts pipeline",
            where,
            False,
            f"deploy role does not trust {pipeline_account}",
            f"bootstrap with --trust {pipeline_account}: {bootstrap}",
        )
    # Every statement that trusts the pipeline account must name its roles (aws:PrincipalArn,
    # ops/bootstrap_template.py); a target bootstrapped with CDK's own template trusts every
    # principal of the pipeline account.
    wide = [
        statement
        for statement in document.get("Statement", [])
        if pipeline_account in json.dumps(statement.get("Principal", {}))
        and sorted(_principal_arn_patterns(statement)) != sorted(principal_patterns)
    ]
    if wide:
        return Check(
            "trusts pipeline",
            where,
            False,
            f"deploy role trusts every principal of {pipeline_account}, not only "
            f"{', '.join(principal_patterns)}",
            f"{bootstrap}; a bootstrap stack made from CDK's own template is of another variant, "
            "which the CLI does not replace: run the `cdk bootstrap` command `make bootstrap` "
            "prints for this account once with --force (docs/security.md, Trust between accounts)",
        )
    return Check(
        "trusts pipeline",
        where,
        True,
        f"deploy role trusts {', '.join(principal_patterns)}",
        "",
    )


def _principal_arn_patterns(statement: dict[str, Any]) -> list[str]:
    condition = statement.get("Condition", {}).get("ArnLike", {})
    patterns = condition.get("aws:PrincipalArn", [])
    return [patterns] if isinstance(patterns, str) else list(patterns)


def check_policies(session: Any, account: Account) -> list[Check]:
    """Each managed policy `make bootstrap` creates in `account`, compared with the account's:
    a permission the repository added since the last bootstrap fails here, before a push, not
    halfway through a release."""
    iam = session.client("iam")
    checks = []
    fix = "make bootstrap APPLY=1 (the repository's policies changed since the last bootstrap)"
    for policy in account.policies:
        try:
            current = current_document(iam, policy.arn)
        except Exception as error:
            checks.append(Check("policy", policy.arn, False, _error_code(error), fix))
            continue
        if current is None:
            checks.append(Check("policy", policy.arn, False, "missing", fix))
            continue
        differences = _differences(current, policy.document)
        checks.append(
            Check(
                "policy",
                policy.arn,
                not differences,
                "; ".join(differences) if differences else "as in the repository",
                fix if differences else "",
            )
        )
    return checks


BOUNDARY_SUFFIX = "-permissions-boundary"


def check_project_names(session: Any, account: str, project: str) -> Check:
    """Another project in the account whose name extends this one's with a hyphen, or that this
    one's extends (`webapp` and `webapp-admin`): the policies scope names by `<project>-*`, so the
    shorter would reach the longer's roles, log groups, buckets and functions by name
    (docs/security.md, "Project names"). Projects are found by the boundary `make bootstrap`
    creates for each (`<project>-permissions-boundary`)."""
    where = f"{account} (project names)"
    iam = session.client("iam")
    others = set()
    try:
        marker: dict[str, str] = {}
        while True:
            page = iam.list_policies(Scope="Local", **marker)
            for policy in page["Policies"]:
                name = policy["PolicyName"]
                pipeline = name.endswith("-pipeline" + BOUNDARY_SUFFIX)
                if name.endswith(BOUNDARY_SUFFIX) and not pipeline:
                    others.add(name.removesuffix(BOUNDARY_SUFFIX))
            if not page.get("IsTruncated"):
                break
            marker = {"Marker": page["Marker"]}
    except Exception as error:
        return Check("project names", where, False, _error_code(error), "check IAM read access")
    clashing = sorted(
        other
        for other in others - {project}
        if other.startswith(project + "-") or project.startswith(other + "-")
    )
    if clashing:
        return Check(
            "project names",
            where,
            False,
            f"project(s) {', '.join(clashing)} share the name prefix with '{project}'",
            "rename one of the projects (pipeline.project) so neither name starts with the "
            "other's plus '-'; see docs/security.md, 'Project names'",
        )
    return Check("project names", where, True, "no other project shares the prefix")


def _differences(current: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """How the account's policy document differs from the repository's, by statement Sid."""
    if current == wanted:
        return []

    def by_sid(document: dict[str, Any]) -> dict[str, Any]:
        statements = document.get("Statement", [])
        statements = statements if isinstance(statements, list) else [statements]
        return {s.get("Sid", f"#{i}"): s for i, s in enumerate(statements)}

    have, want = by_sid(current), by_sid(wanted)
    differences = [f"statement {sid} missing" for sid in want if sid not in have]
    differences += [f"statement {sid} not in the repository" for sid in have if sid not in want]
    for sid in want.keys() & have.keys():
        if have[sid] != want[sid]:
            gained = sorted(set(_actions(want[sid])) - set(_actions(have[sid])))
            what = f" (lacks {', '.join(gained[:5])}{' ...' if len(gained) > 5 else ''})"
            differences.append(f"statement {sid} differs" + (what if gained else ""))
    return sorted(differences) or ["the document differs"]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement.get("Action", [])
    return list(action) if isinstance(action, list) else [action]


def check_zones(session: Any, account: str, region: str, zones: list[str]) -> Check:
    """The configured zones exist in this account: zone names are mapped per account, and a
    newer account may lack a zone that an older one has."""
    where = f"{account}/{region}"
    try:
        answer = session.client("ec2").describe_availability_zones(
            Filters=[{"Name": "zone-type", "Values": ["availability-zone"]}]
        )
    except Exception as error:
        return Check(
            "availability zones",
            where,
            False,
            f"cannot list them: {_error_code(error)}",
            "allow ec2:DescribeAvailabilityZones for your credentials",
        )
    available = sorted(
        zone["ZoneName"]
        for zone in answer["AvailabilityZones"]
        if zone.get("State", "available") == "available"
    )
    missing = [zone for zone in zones if zone not in available]
    if missing:
        return Check(
            "availability zones",
            where,
            False,
            f"{', '.join(missing)} not available in this account",
            f"choose availability_zones among {', '.join(available)}",
        )
    return Check("availability zones", where, True, ", ".join(zones))


def check_connection(session: Any, arn: str) -> Check:
    client = session.client("codeconnections")
    try:
        status = client.get_connection(ConnectionArn=arn)["Connection"]["ConnectionStatus"]
    except Exception as error:
        return Check(
            "connection",
            arn,
            False,
            _error_code(error),
            "create the connection in the pipeline account and put its ARN in the config",
        )
    if status == "AVAILABLE":
        return Check("connection", arn, True, "AVAILABLE")
    if status == "PENDING":
        return Check(
            "connection",
            arn,
            False,
            "PENDING: the GitHub handshake is not finished",
            "console: Developer Tools > Settings > Connections > select it > "
            "Update pending connection, and install or choose the GitHub app",
        )
    return Check(
        "connection",
        arn,
        False,
        status,
        "recreate the connection; an ERROR connection cannot be repaired",
    )


def check_certificate(session: Any, arn: str, domain: str | None) -> Check:
    try:
        certificate = session.client("acm").describe_certificate(CertificateArn=arn)["Certificate"]
    except Exception as error:
        return Check(
            "certificate",
            arn,
            False,
            _error_code(error),
            "request or import the certificate in the stage's account and region, "
            "and put its ARN in the config",
        )
    status = certificate.get("Status", "UNKNOWN")
    names = {certificate.get("DomainName", "")} | set(
        certificate.get("SubjectAlternativeNames", [])
    )
    if status != "ISSUED":
        return Check(
            "certificate",
            arn,
            False,
            f"status {status}",
            "finish validation (add the DNS validation records)",
        )
    if domain and not any(_covers(name, domain) for name in names):
        return Check(
            "certificate",
            arn,
            False,
            f"not valid for {domain}",
            "use a certificate that covers service.domain_name",
        )
    return Check("certificate", arn, True, "ISSUED")


def _covers(name: str, domain: str) -> bool:
    """Whether a certificate name covers `domain`; a wildcard covers exactly one label."""
    if name.startswith("*."):
        return "." in domain and domain.split(".", 1)[1] == name[2:]
    return name == domain


def check_secret(session: Any, name: str, where: str) -> Check:
    try:
        session.client("secretsmanager").describe_secret(SecretId=name)
    except Exception as error:
        return Check(
            "GitHub token secret",
            f"{where}: {name}",
            False,
            _error_code(error),
            f"create the secret {name} holding a GitHub token in the pipeline account and region",
        )
    return Check("GitHub token secret", f"{where}: {name}", True, "exists")


def run(config: DeploymentConfig, session_for: SessionFor, required: int) -> list[Check]:
    """Every check for `config`; MissingCredentialsError when there are no credentials at all."""
    pipeline = config.pipeline
    bootstrap = plan(config)
    checks: list[Check] = []
    sessions: dict[str, Any] = {}
    for account, profile in ((a.account, a.profile) for a in bootstrap.accounts):
        try:
            session = session_for(profile, pipeline.region)
        except Exception as error:
            if aws_error_kind(error) == "credentials":
                raise MissingCredentialsError(str(error)) from error
            raise
        check = check_credentials(session, account, profile)
        checks.append(check)
        if check.ok:
            sessions[account] = profile

    policies = {
        account.account: [policy.name for policy in account.execution_policies]
        for account in bootstrap.accounts
    }
    for environment in bootstrap.environments:
        account = environment.account
        if account not in sessions:
            continue
        checks += check_bootstrap(
            session_for(sessions[account], environment.region),
            account,
            environment.region,
            required,
            qualifier=pipeline.qualifier,
            pipeline_account=environment.trusted,
            execution_policies=policies[account],
            principal_patterns=pipeline_trust(config).principal_patterns,
        )
    for planned in bootstrap.accounts:
        if planned.account in sessions:
            session = session_for(sessions[planned.account], pipeline.region)
            checks += check_policies(session, planned)
            checks.append(check_project_names(session, planned.account, pipeline.project))

    if pipeline.account in sessions:
        session = session_for(sessions[pipeline.account], pipeline.region)
        if pipeline.source.connection_arn:
            checks.append(check_connection(session, pipeline.source.connection_arn))
        if pipeline.source.github_token_secret:
            checks.append(
                check_secret(
                    session,
                    pipeline.source.github_token_secret,
                    f"{pipeline.account}/{pipeline.region}",
                )
            )
    for stage in config.stages:
        if stage.account in sessions:
            session = session_for(sessions[stage.account], stage.region)
            checks.append(
                check_zones(session, stage.account, stage.region, list(stage.availability_zones))
            )
        if stage.service.certificate_arn and stage.account in sessions:
            session = session_for(sessions[stage.account], stage.region)
            checks.append(
                check_certificate(session, stage.service.certificate_arn, stage.service.domain_name)
            )
    return checks


def table(checks: list[Check]) -> str:
    rows = [("CHECK", "WHERE", "RESULT", "WHAT TO DO")]
    rows += [(c.name, c.where, ("ok   " if c.ok else "FAIL ") + c.detail, c.fix) for c in checks]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}".rstrip()
        for row in rows
    )


def main(argv: list[str] | None = None, session_for: SessionFor = boto_session) -> int:
    parser = argparse.ArgumentParser(description="Preflight the accounts of a deployment config.")
    parser.add_argument("config", type=Path)
    parser.add_argument("--cdk-out", type=Path, default=ROOT / "cdk.out")
    parser.add_argument(
        "--profile",
        help="AWS CLI profile for the pipeline account (make deploy's PROFILE), instead of the "
        "config's pipeline.profile: the doctor checks the credentials the deploy will use",
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        if args.profile:
            pipeline = config.pipeline.model_copy(update={"profile": args.profile})
            config = config.model_copy(update={"pipeline": pipeline})
        checks = run(config, session_for, required_bootstrap_version(args.cdk_out))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except MissingCredentialsError as error:
        print(
            f"error: no AWS credentials available ({error}). The doctor checks the real accounts: "
            "set `profile` for each account in the config (AWS CLI profiles), pass "
            "PROFILE=<profile> for the pipeline account, or export AWS_PROFILE / AWS "
            "credentials, then run `make doctor` again.",
            file=sys.stderr,
        )
        return 2
    print(table(checks))
    failed = [c for c in checks if not c.ok]
    print()
    print(
        f"{len(checks) - len(failed)} passed, {len(failed)} failed"
        if failed
        else f"All {len(checks)} checks passed."
    )
    return 1 if failed else 0


if __name__ == "__main__":
    quiet_interrupts()
    sys.exit(main())
