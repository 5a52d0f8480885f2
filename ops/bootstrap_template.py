"""The CDK bootstrap template the targets are bootstrapped with: the pinned CLI's own template,
plus read access for the trusted (pipeline) account to the container asset repository.

The pipeline's security scan reads the published image from every target's asset repository
(ops/scan.py). Cross-account, ECR needs both an identity policy in the pipeline account (the scan
role's, scoped to those repositories) and a repository policy in the target account
(https://docs.aws.amazon.com/AmazonECR/latest/userguide/repository-policies.html). CDK's template
lets only Lambda and EMR Serverless of the same account pull, so this adds one statement: the
accounts given to `cdk bootstrap --trust` may read images (BatchGetImage, GetDownloadUrlForLayer,
DescribeImages), nothing else. Those accounts can already assume the target's image-publishing
role, which may write to the same repository, so this grants them nothing new.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from configuration.toolchain import ROOT

CDK = ROOT / "node_modules" / ".bin" / "cdk"
SID = "TrustedAccountsReadImages"
READ_ACTIONS = ["ecr:BatchGetImage", "ecr:DescribeImages", "ecr:GetDownloadUrlForLayer"]


class TemplateError(Exception):
    """The bootstrap template cannot be prepared; str() says why."""


def with_trusted_image_read(template: dict[str, Any]) -> dict[str, Any]:
    """`template` with the trusted accounts allowed to read the container asset repository
    (when `--trust` names any). Fails loudly if CDK's template no longer has the shape this
    relies on, rather than bootstrapping without the grant."""
    try:
        repository = template["Resources"]["ContainerAssetsRepository"]["Properties"]
        statements = repository["RepositoryPolicyText"]["Statement"]
        # The condition and the parameter the added statement refers to must exist.
        template["Conditions"]["HasTrustedAccounts"]
        template["Parameters"]["TrustedAccounts"]
    except (KeyError, TypeError) as error:
        raise TemplateError(
            f"CDK's bootstrap template has no {error} where expected (ContainerAssetsRepository's "
            "RepositoryPolicyText, the TrustedAccounts parameter and HasTrustedAccounts "
            "condition); update ops/bootstrap_template.py for the new CLI."
        ) from error
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
                    "Action": READ_ACTIONS,
                },
                {"Ref": "AWS::NoValue"},
            ]
        }
    )
    return template


def _sid(statement: Any) -> str | None:
    if isinstance(statement, dict) and "Fn::If" in statement:
        statement = statement["Fn::If"][1]
    return statement.get("Sid") if isinstance(statement, dict) else None


def cdk_default_template(cdk: Path = CDK) -> dict[str, Any]:
    """The pinned CLI's bootstrap template (`cdk bootstrap --show-template`, offline)."""
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
    template = yaml.safe_load(result.stdout)
    if not isinstance(template, dict):
        raise TemplateError("`cdk bootstrap --show-template` printed no template.")
    return template


def write_template(path: Path, template: dict[str, Any] | None = None) -> Path:
    """Write the targets' bootstrap template to `path` (for `cdk bootstrap --template`)."""
    document = with_trusted_image_read(template or cdk_default_template())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False, width=100))
    return path
