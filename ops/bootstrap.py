"""`make bootstrap`: prepare every account of a config for the pipeline.

Dry run (default) prints what it would do and the exact `cdk bootstrap` commands; `--apply`
(`make bootstrap APPLY=1`) does it. Re-running is safe: policies are created or updated only when
their content differs, and `cdk bootstrap` is idempotent.

Every account is bootstrapped under the project's own qualifier (`pipeline.qualifier`, by default
derived from the project name) and toolkit stack `CDKToolkit-<qualifier>`, so its CDK roles, asset
bucket and repository, and execution policies are the project's own: no other CDK app in the
account changes, and a later `cdk bootstrap` of another project does not overwrite ours.

For each target account: the permissions boundary and the least-privilege CloudFormation execution
policies from policies/ are created as managed policies, then each target region is bootstrapped
with those execution policies and a template whose deploy and publishing roles only the pipeline
stack's roles may assume (ops/bootstrap_template.py). Only non-production targets that import a
VPC trust the pipeline account for lookups. The pipeline account gets its own boundary and
execution policies (policies/pipeline-*.json, no AdministratorAccess) and is bootstrapped in its own
region and in every other region a stage uses (CodePipeline keeps a replication bucket there).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from configuration import ConfigError, DeploymentConfig, load_config, repository_config
from configuration.regions import partition_of
from configuration.toolchain import ROOT
from ops import aws_error_kind, quiet_interrupts
from ops.bootstrap_template import PipelineTrust, TemplateError, write_template
from policies.execution_policy import (
    AccountKind,
    load_boundary,
    load_policies,
    render,
)

BUILD_DIR = ROOT / "build" / "bootstrap"
TEMPLATE_NAME = (
    "bootstrap-template.yaml"  # written by main() into BUILD_DIR (ops/bootstrap_template)
)
MAX_POLICY_VERSIONS = 5  # IAM keeps at most five versions of a managed policy


@dataclass(frozen=True)
class ManagedPolicy:
    account: str
    name: str
    description: str
    document: dict[str, Any]
    partition: str
    boundary: bool = False  # the permissions boundary, rather than an execution policy

    @property
    def arn(self) -> str:
        return f"arn:{self.partition}:iam::{self.account}:policy/{self.name}"


@dataclass(frozen=True)
class Account:
    """One AWS account of the config, with the credentials the operator uses for it."""

    account: str
    profile: str | None
    role: AccountKind
    policies: tuple[ManagedPolicy, ...] = ()

    @property
    def execution_policies(self) -> list[ManagedPolicy]:
        """The policies CloudFormation runs with in this account (bootstrap's
        --cloudformation-execution-policies)."""
        return [policy for policy in self.policies if not policy.boundary]


@dataclass(frozen=True)
class Environment:
    """One account and region to bootstrap, and the account its CDK roles must trust (None for
    the pipeline account's own environments)."""

    account: str
    region: str
    trusted: str | None


@dataclass
class Plan:
    accounts: list[Account] = field(default_factory=list)
    commands: list[tuple[str, list[str]]] = field(default_factory=list)  # (account, argv)
    environments: list[Environment] = field(default_factory=list)  # in the commands' order
    qualifier: str = ""


def lookup_environments(config: DeploymentConfig) -> set[tuple[str, str]]:
    """(account, region) of the targets whose CDK lookup role trusts the pipeline account.
    Lookups are needed only to import an existing VPC (`network.vpc_id`), and are trusted only
    for non-production targets: production imports are looked up with that account's own
    credentials and committed to cdk.context.json."""
    return {
        (stage.account, stage.region)
        for stage in config.stages
        if stage.network.vpc_id and not stage.production
    }


def pipeline_trust(config: DeploymentConfig) -> PipelineTrust:
    """Who in the pipeline account the targets' CDK roles trust (ops/bootstrap_template.py)."""
    pipeline = config.pipeline
    return PipelineTrust(pipeline.project, partition_of(pipeline.region), pipeline.account)


def cdk_role_name(kind: str, qualifier: str, account: str, region: str) -> str:
    """The name CDK's bootstrap template gives a role (`kind`: deploy, cfn-exec, lookup, ...)."""
    return f"cdk-{qualifier}-{kind}-role-{account}-{region}"


def toolkit_stack_name(qualifier: str) -> str:
    """The bootstrap stack of the project's qualifier. One environment holds one stack of a name,
    so the default `CDKToolkit` would be updated, and its qualifier replaced, for every other app.
    https://docs.aws.amazon.com/cdk/v2/guide/bootstrapping-customizing.html"""
    return f"CDKToolkit-{qualifier}"


def plan(config: DeploymentConfig) -> Plan:
    """Everything `bootstrap` does for `config`, in order."""
    pipeline = config.pipeline
    project = pipeline.project
    qualifier = pipeline.qualifier
    own_bootstrap = [
        "--qualifier",
        qualifier,
        "--toolkit-stack-name",
        toolkit_stack_name(qualifier),
    ]
    result = Plan(qualifier=qualifier)

    targets: dict[str, list[tuple[str, bool, str | None]]] = {}
    for stage in config.stages:
        targets.setdefault(stage.account, []).append(
            (stage.region, stage.production, stage.profile)
        )
    lookups = lookup_environments(config)

    for account, environments in targets.items():
        partition = partition_of(environments[0][0])
        policies = _account_policies(account, project, qualifier, partition, "target")
        profile = next((p for _, _, p in environments if p), None)
        target = Account(account, profile, "target", policies)
        result.accounts.append(target)
        execution = ",".join(policy.arn for policy in target.execution_policies)
        seen_regions: set[str] = set()
        for region, _production, _profile in environments:
            if region in seen_regions:
                continue
            seen_regions.add(region)
            # The pipeline synthesizes offline and never looks anything up; only a developer's
            # first synth of a non-production stage that imports a VPC needs the lookup role.
            lookup = (account, region) in lookups
            argv = [
                "cdk",
                "bootstrap",
                f"aws://{account}/{region}",
                *own_bootstrap,
                # CDK's template with the trust confined to the pipeline's own roles and the
                # project's stacks (ops/bootstrap_template.py).
                "--template",
                _display(BUILD_DIR / TEMPLATE_NAME),
                "--trust",
                pipeline.account,
                *(["--trust-for-lookup", pipeline.account] if lookup else []),
                "--cloudformation-execution-policies",
                execution,
                "--termination-protection",
                *(["--profile", profile] if profile else []),
            ]
            result.commands.append((account, argv))
            result.environments.append(Environment(account, region, pipeline.account))

    pipeline_regions = [
        pipeline.region,
        *sorted({s.region for s in config.stages} - {pipeline.region}),
    ]
    pipeline_policies = _account_policies(
        pipeline.account, project, qualifier, partition_of(pipeline.region), "pipeline"
    )
    if pipeline.source.github_token_secret:
        pipeline_policies += (_source_secret_policy(config),)
    pipeline_account = Account(pipeline.account, pipeline.profile, "pipeline", pipeline_policies)
    if pipeline.account not in targets:
        result.accounts.insert(0, pipeline_account)
    pipeline_execution = ",".join(p.arn for p in pipeline_account.execution_policies)
    pipeline_commands = [
        (
            pipeline.account,
            [
                "cdk",
                "bootstrap",
                f"aws://{pipeline.account}/{region}",
                *own_bootstrap,
                "--cloudformation-execution-policies",
                pipeline_execution,
                "--termination-protection",
                *(["--profile", pipeline.profile] if pipeline.profile else []),
            ],
        )
        for region in pipeline_regions
    ]
    result.commands = pipeline_commands + result.commands
    result.environments = [
        Environment(pipeline.account, region, None) for region in pipeline_regions
    ] + result.environments
    return result


def _account_policies(
    account: str, project: str, qualifier: str, partition: str, kind: AccountKind
) -> tuple[ManagedPolicy, ...]:
    values = {
        "partition": partition,
        "account": account,
        "project": project,
        "qualifier": qualifier,
    }
    stacks = {"target": "stage", "pipeline": "pipeline"}[kind]
    sources = [
        (
            load_boundary(kind),
            f"Permissions boundary of every role the {stacks} stacks create",
            True,
        )
    ]
    sources += [
        (
            policy,
            f"CloudFormation execution policy for the {stacks} stacks (least privilege)",
            False,
        )
        for policy in load_policies(kind)
    ]
    return tuple(
        ManagedPolicy(
            account,
            source["name"].replace("{project}", project),
            description,
            render(source["document"], **values),
            partition,
            is_boundary,
        )
        for source, description, is_boundary in sources
    )


def _source_secret_policy(config: DeploymentConfig) -> ManagedPolicy:
    """With a GitHub token source, the pipeline stack holds a dynamic reference to the secret,
    which CloudFormation resolves with the execution role: it may read that one secret.
    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/dynamic-references-secretsmanager.html"""
    pipeline = config.pipeline
    partition = partition_of(pipeline.region)
    name = pipeline.source.github_token_secret
    return ManagedPolicy(
        pipeline.account,
        f"{pipeline.project}-pipeline-cfn-source-secret",
        "CloudFormation execution policy: resolve the pipeline's GitHub token secret",
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ResolveTheSourceSecret",
                    "Effect": "Allow",
                    "Action": "secretsmanager:GetSecretValue",
                    # Secrets Manager appends six random characters to a secret's name.
                    "Resource": f"arn:{partition}:secretsmanager:{pipeline.region}:"
                    f"{pipeline.account}:secret:{name}-??????",
                }
            ],
        },
        partition,
    )


def describe(result: Plan, policy_dir: Path) -> str:
    lines = [
        "# Bootstrap plan (dry run; `make bootstrap APPLY=1` carries it out)",
        f"# Qualifier {result.qualifier} (toolkit stack {toolkit_stack_name(result.qualifier)}): "
        "the project's own CDK roles, asset bucket and",
        "# execution policies in every account; no other CDK app's bootstrap changes.",
        "",
    ]
    for account in result.accounts:
        via = (
            f" with profile {account.profile}"
            if account.profile
            else " with the default credentials"
        )
        lines.append(f"# Account {account.account} ({account.role}){via}")
        for policy in account.policies:
            path = policy_dir / account.account / f"{policy.name}.json"
            lines.append(f"#   create or update managed policy {policy.arn}")
            lines.append(f"#     from {_display(path)}")
    lines.append("")
    for _, argv in result.commands:
        lines.append(" ".join(argv))
    return "\n".join(lines)


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def write_policy_files(result: Plan, policy_dir: Path) -> None:
    for account in result.accounts:
        for policy in account.policies:
            path = policy_dir / account.account / f"{policy.name}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(policy.document, indent=2) + "\n")


class Session(Protocol):
    def client(self, service_name: str, /) -> Any: ...


class BootstrapError(Exception):
    """A step failed; str() tells the operator what to do."""


def current_document(iam: Any, arn: str) -> dict[str, Any] | None:
    """The default version's document of a managed policy in the account, or None if the
    policy does not exist."""
    try:
        current = iam.get_policy(PolicyArn=arn)["Policy"]
    except iam.exceptions.NoSuchEntityException:
        return None
    default = iam.get_policy_version(PolicyArn=arn, VersionId=current["DefaultVersionId"])
    return decode_policy(default["PolicyVersion"]["Document"])


def decode_policy(document: Any) -> dict[str, Any]:
    """A policy document as IAM returns it: boto3 decodes it, other clients get it URL-encoded.
    https://docs.aws.amazon.com/IAM/latest/APIReference/API_PolicyVersion.html"""
    if isinstance(document, str):
        from urllib.parse import unquote

        document = json.loads(unquote(document))
    return document  # type: ignore[no-any-return]


def ensure_policy(iam: Any, policy: ManagedPolicy) -> str:
    """Create the managed policy, or make its default version equal `policy.document`.

    Returns "created", "updated" or "unchanged".
    """
    document = current_document(iam, policy.arn)
    if document is None:
        iam.create_policy(
            PolicyName=policy.name,
            PolicyDocument=json.dumps(policy.document),
            Description=policy.description,
        )
        return "created"
    if document == policy.document:
        return "unchanged"
    versions = iam.list_policy_versions(PolicyArn=policy.arn)["Versions"]
    if len(versions) >= MAX_POLICY_VERSIONS:
        oldest = min(
            (v for v in versions if not v["IsDefaultVersion"]), key=lambda v: v["CreateDate"]
        )
        iam.delete_policy_version(PolicyArn=policy.arn, VersionId=oldest["VersionId"])
    iam.create_policy_version(
        PolicyArn=policy.arn, PolicyDocument=json.dumps(policy.document), SetAsDefault=True
    )
    return "updated"


def check_account(session: Session, account: Account) -> None:
    actual = session.client("sts").get_caller_identity()["Account"]
    if actual != account.account:
        how = (
            f"profile {account.profile}"
            if account.profile
            else "the default credentials (set `profile` for this account in the config)"
        )
        raise BootstrapError(
            f"{how} belong to account {actual}, not to {account.account}; use credentials of "
            f"account {account.account} for it."
        )


def apply(
    result: Plan,
    session_for: Callable[[str | None], Session],
    run: Callable[[Sequence[str]], int],
    out: Callable[[str], None] = print,
) -> None:
    """Carry out the plan: policies through boto3, then the `cdk bootstrap` commands."""
    for account in result.accounts:
        session = session_for(account.profile)
        check_account(session, account)
        iam = session.client("iam")
        regions = [e.region for e in result.environments if e.account == account.account]
        for region in regions:
            check_qualifier_is_ours(iam, account, region, result.qualifier)
        for policy in account.policies:
            out(f"{account.account}: {policy.name}: {ensure_policy(iam, policy)}")
    for _account, argv in result.commands:
        out("$ " + " ".join(argv))
        code = run(argv)
        if code != 0:
            raise BootstrapError(
                f"`{' '.join(argv)}` exited with {code}; fix the cause shown above and run "
                "`make bootstrap APPLY=1` again (completed steps are skipped)."
            )


def check_qualifier_is_ours(iam: Any, account: Account, region: str, qualifier: str) -> None:
    """Refuse to take over a qualifier another app bootstrapped: its execution role would lose
    its policies to ours (one execution role per qualifier, account and region)."""
    role = cdk_role_name("cfn-exec", qualifier, account.account, region)
    try:
        attached = iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
    except iam.exceptions.NoSuchEntityException:
        return  # not bootstrapped with this qualifier yet
    ours = {policy.name for policy in account.execution_policies}
    foreign = sorted(p["PolicyName"] for p in attached if p["PolicyName"] not in ours)
    if foreign:
        raise BootstrapError(
            f"account {account.account} ({region}) is already bootstrapped with qualifier "
            f"{qualifier}, and its execution role {role} runs with {', '.join(foreign)}, which "
            "this project did not create: another app uses that qualifier. Set a qualifier of "
            "this project's own as `pipeline.qualifier` in the config (docs/security.md, Bootstrap "
            "qualifier). (If those policies are this project's from before, detach them and run "
            "`make bootstrap APPLY=1` again.)"
        )


def _boto_session(profile: str | None) -> Session:
    import boto3  # type: ignore[import-untyped]

    return boto3.Session(profile_name=profile)  # type: ignore[no-any-return]


def _run(argv: Sequence[str]) -> int:
    # The argv is built by plan() from validated config values, never from free text.
    return subprocess.run(list(argv), check=False).returncode  # noqa: S603


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bootstrap the accounts of a deployment config.")
    parser.add_argument("config", type=Path)
    parser.add_argument("--apply", action="store_true", help="carry out the plan")
    args = parser.parse_args(argv)
    try:
        config = load_config(ROOT / repository_config(str(args.config)))
        result = plan(config)
        write_policy_files(result, BUILD_DIR)
        write_template(BUILD_DIR / TEMPLATE_NAME, pipeline_trust(config))
        print(describe(result, BUILD_DIR))
        if args.apply:
            print()
            apply(result, _boto_session, _run)
    except (ConfigError, BootstrapError, TemplateError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # credentials and API errors, told plainly
        print(
            f"error: bootstrap failed: {type(error).__name__}: {error}.{_next_step(error)}",
            file=sys.stderr,
        )
        return 1
    return 0


def _next_step(error: Exception) -> str:
    """What to do about the failures a first run meets most: no credentials, no network."""
    kind = aws_error_kind(error)
    if kind == "credentials":
        return (
            " Nothing was changed in that account. Give each account credentials: set `profile` "
            "for it in the config (an AWS CLI profile; `aws configure sso` or `aws configure` "
            "creates one), or export AWS_PROFILE; `make doctor` shows which accounts work. Then "
            "run `make bootstrap APPLY=1` again (completed steps are skipped)."
        )
    if kind == "network":
        return (
            " AWS could not be reached: check the network connection, proxy (HTTPS_PROXY) and "
            "VPN, then run `make bootstrap APPLY=1` again (completed steps are skipped)."
        )
    return ""


if __name__ == "__main__":
    quiet_interrupts()
    sys.exit(main())
