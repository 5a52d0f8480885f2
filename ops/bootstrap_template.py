"""The CDK bootstrap template the targets are bootstrapped with: the pinned CLI's own template
(committed as policies/cdk-bootstrap-template.yaml; a test fails when `cdk bootstrap
--show-template` prints anything else, so a CLI upgrade shows up as a diff to review), with the
smallest changes that confine the trust to the project's pipeline
(https://docs.aws.amazon.com/cdk/v2/guide/bootstrapping-customizing.html: "modify the default
template and deploy it with `cdk bootstrap --template`"):

1. The statements that trust the accounts given to `--trust` (the pipeline account) on the deploy,
   file-publishing and image-publishing roles carry an `aws:PrincipalArn` condition: only roles
   named `<project>-pipeline-*` of the pipeline account, that is the roles of the pipeline stack
   (CloudFormation names a role it creates `<stack name>-<logical id>-<random>`, and the pipeline
   stack is `<project>-pipeline[-<suffix>]`), may assume them. For an IAM role, `aws:PrincipalArn`
   is the role's ARN, not the session's
   (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-principalarn),
   and AWS recommends exactly this, an account principal with an `aws:PrincipalArn` condition, to
   name roles in a trust policy without breaking when they are re-created.
2. The lookup role no longer trusts the `--trust` accounts (CDK's template adds them there too);
   only `--trust-for-lookup` grants lookups, and `make bootstrap` passes it only where a
   non-production stage imports a VPC.
3. The deploy role's CloudFormation actions (CDK's DeployPermissions, CliPermissions and Refactor
   statements) act only on stacks named `<project>-*` in its own account and region;
   `sts:GetCallerIdentity` (which has no resource) stays on "*". Every one of those CloudFormation
   actions is authorized on the stack ARN (Service Authorization Reference, CloudFormation).
4. The container asset repository lets the pipeline's roles read images (the security scan,
   ops/scan.py): cross-account ECR needs the repository policy to allow it as well as the scan
   role's own policy (https://docs.aws.amazon.com/AmazonECR/latest/userguide/repository-policies.html).
   Same `aws:PrincipalArn` condition; read actions only.
5. `BootstrapVariant` names the project's template: the CLI refuses to overwrite a bootstrap stack
   of another variant, so a plain `cdk bootstrap` of the same toolkit stack cannot silently undo
   the changes above.

Everything else is CDK's template, unchanged (tests/ops/test_bootstrap_template.py checks that).
"""

from __future__ import annotations

import copy
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from components.image_assets import IMAGE_READ_ACTIONS
from configuration.toolchain import ROOT

CDK = ROOT / "node_modules" / ".bin" / "cdk"
PINNED_TEMPLATE = ROOT / "policies" / "cdk-bootstrap-template.yaml"
SID = "TrustedAccountsReadImages"
# The roles a `--trust` account may assume, each limited to the pipeline's roles.
TRUSTED_ROLES = ("DeploymentActionRole", "FilePublishingRole", "ImagePublishingRole")
# The deploy role's statements whose CloudFormation actions are limited to the project's stacks.
STACK_SCOPED_SIDS = ("DeployPermissions", "CliPermissions", "Refactor")
VARIANT = "AWS CDK: Default Resources, trust limited to the project's pipeline ({project})"


class TemplateError(Exception):
    """The bootstrap template cannot be prepared; str() says why."""


@dataclass(frozen=True)
class PipelineTrust:
    """Who in the trusted (pipeline) account may use the target's CDK roles, and which stacks
    the deploy role may act on."""

    project: str
    partition: str
    pipeline_account: str

    @property
    def principal_patterns(self) -> list[str]:
        """`aws:PrincipalArn` patterns of the pipeline stack's roles (stack
        `<project>-pipeline[-<suffix>]`, CloudFormation-generated role names)."""
        return [f"arn:{self.partition}:iam::{self.pipeline_account}:role/{self.project}-pipeline-*"]

    @property
    def stack_pattern(self) -> dict[str, str]:
        """The stacks the deploy role may act on: the project's, in the role's own account and
        region (stage stacks are `<project>-<stage>[-<suffix>]-service`)."""
        return {
            "Fn::Sub": "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:"
            f"stack/{self.project}-*/*"
        }

    @property
    def condition(self) -> dict[str, Any]:
        return {"ArnLike": {"aws:PrincipalArn": self.principal_patterns}}


def customize(template: dict[str, Any], trust: PipelineTrust) -> dict[str, Any]:
    """CDK's `template` with the changes listed in the module docstring. Fails loudly if CDK's
    template no longer has the shape they rely on, rather than bootstrapping a wider trust."""
    result = copy.deepcopy(template)
    try:
        resources = result["Resources"]
        result["Conditions"]["HasTrustedAccounts"]
        result["Parameters"]["TrustedAccounts"]
        result["Parameters"]["BootstrapVariant"]["Default"] = VARIANT.format(project=trust.project)
        for role in TRUSTED_ROLES:
            _limit_trusted_statements(resources[role]["Properties"], trust, role)
        lookup = resources["LookupRole"]["Properties"]["AssumeRolePolicyDocument"]
        lookup["Statement"] = [
            s for s in lookup["Statement"] if _trusted_statement(s) is None
        ]  # only TrustedAccountsForLookup (and the account itself) remain
        _scope_deploy_role(resources["DeploymentActionRole"]["Properties"], trust)
        _trusted_image_read(resources["ContainerAssetsRepository"]["Properties"], trust)
    except (KeyError, TypeError, IndexError) as error:
        raise TemplateError(
            f"CDK's bootstrap template has no {error} where ops/bootstrap_template.py expects it "
            "(the roles' trusted-account statements, the deploy role's policy, the container "
            "asset repository's policy); update ops/bootstrap_template.py for the new CLI."
        ) from error
    return result


def _trusted_statement(statement: Any) -> dict[str, Any] | None:
    """The statement inside CDK's `Fn::If: [HasTrustedAccounts, {...}, NoValue]`, or None."""
    if isinstance(statement, dict) and "Fn::If" in statement:
        condition, inner, _ = statement["Fn::If"]
        if condition == "HasTrustedAccounts" and inner.get("Principal") == {
            "AWS": {"Ref": "TrustedAccounts"}
        }:
            return inner  # type: ignore[no-any-return]
    return None


def _limit_trusted_statements(role: dict[str, Any], trust: PipelineTrust, name: str) -> None:
    found = 0
    for statement in role["AssumeRolePolicyDocument"]["Statement"]:
        inner = _trusted_statement(statement)
        if inner is None:
            continue
        found += 1
        existing = inner.get("Condition")
        if existing is None or "Fn::If" not in existing:  # the sts:TagSession statement
            inner["Condition"] = trust.condition
        else:  # sts:AssumeRole: CDK's `Fn::If: [ShouldDenyExternalId, {Null: ...}, NoValue]`
            should_deny, deny, _ = existing["Fn::If"]
            deny = {key: value for key, value in deny.items() if key != "ArnLike"}
            inner["Condition"] = {
                "Fn::If": [should_deny, {**deny, **trust.condition}, trust.condition]
            }
    if found != 2:  # sts:AssumeRole and sts:TagSession
        raise TemplateError(
            f"CDK's bootstrap template: {name} has {found} statements trusting TrustedAccounts, "
            "expected 2 (sts:AssumeRole, sts:TagSession); update ops/bootstrap_template.py."
        )


def _scope_deploy_role(role: dict[str, Any], trust: PipelineTrust) -> None:
    (policy,) = [p for p in role["Policies"] if p["PolicyName"] == "default"]
    statements = policy["PolicyDocument"]["Statement"]
    scoped: list[Any] = []
    for statement in statements:
        if statement.get("Sid") not in STACK_SCOPED_SIDS:
            scoped.append(statement)
            continue
        if statement["Resource"] not in ("*", trust.stack_pattern):
            raise TemplateError(f"deploy role statement {statement['Sid']} is no longer on '*'")
        actions = statement["Action"]
        others = [a for a in actions if not a.startswith("cloudformation:")]
        if others and others != ["sts:GetCallerIdentity"]:
            raise TemplateError(
                f"deploy role statement {statement['Sid']} has actions {others} that "
                "ops/bootstrap_template.py does not know how to scope."
            )
        cloudformation = [a for a in actions if a.startswith("cloudformation:")]
        scoped.append({**statement, "Action": cloudformation, "Resource": trust.stack_pattern})
        if others:
            scoped.append(
                {
                    "Sid": "CallerIdentity",
                    "Effect": "Allow",
                    "Action": others,
                    "Resource": "*",  # sts:GetCallerIdentity has no resource type
                }
            )
    seen = {s.get("Sid") for s in scoped}
    if not set(STACK_SCOPED_SIDS) <= seen:
        raise TemplateError(
            f"deploy role: statements {sorted(set(STACK_SCOPED_SIDS) - seen)} not found"
        )
    statements[:] = scoped


def _trusted_image_read(repository: dict[str, Any], trust: PipelineTrust) -> None:
    statements = repository["RepositoryPolicyText"]["Statement"]
    if not isinstance(statements, list):
        raise TemplateError("CDK's bootstrap template: RepositoryPolicyText.Statement is no list.")
    statements[:] = [s for s in statements if _sid(s) != SID]
    statements.append(
        {
            "Fn::If": [
                "HasTrustedAccounts",
                {
                    "Sid": SID,
                    "Effect": "Allow",
                    "Principal": {"AWS": {"Ref": "TrustedAccounts"}},
                    "Action": IMAGE_READ_ACTIONS,
                    "Condition": trust.condition,
                },
                {"Ref": "AWS::NoValue"},
            ]
        }
    )


def _sid(statement: Any) -> str | None:
    if isinstance(statement, dict) and "Fn::If" in statement:
        statement = statement["Fn::If"][1]
    return statement.get("Sid") if isinstance(statement, dict) else None


def pinned_template(path: Path = PINNED_TEMPLATE) -> dict[str, Any]:
    """CDK's template as committed (the pinned CLI's `--show-template`)."""
    template = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(template, dict):
        raise TemplateError(f"{path}: no template.")
    return template


def cdk_template_text(cdk: Path = CDK) -> str:
    """What the pinned CLI prints for `cdk bootstrap --show-template` (offline)."""
    if not cdk.exists():
        raise TemplateError(f"{cdk}: the CDK CLI is not installed; run `make setup`.")
    result = subprocess.run(  # noqa: S603 - the project's pinned CLI, fixed arguments
        [str(cdk), "bootstrap", "--show-template", "--no-notices"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise TemplateError(f"`cdk bootstrap --show-template` failed: {result.stderr[-2000:]}")
    return result.stdout


def write_template(
    path: Path, trust: PipelineTrust, template: dict[str, Any] | None = None
) -> Path:
    """Write the targets' bootstrap template to `path` (for `cdk bootstrap --template`)."""
    document = customize(template or pinned_template(), trust)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False, width=100))
    return path
