"""The IAM policy evaluator (policies/deploy_check.evaluate) for tests that check one policy's
semantics: a trust policy, a repository policy, a role's own policy."""

from __future__ import annotations

import json
from typing import Any

from policies.deploy_check import Call, evaluate
from policies.execution_policy import AccountKind, load_boundary, load_policies, render

ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


def default_key_policy(account: str) -> str:
    """KMS's default key policy (JSON): the account's IAM policies decide who uses the key.
    https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html"""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                }
            ],
        }
    )


def simulate(
    calls: list[dict[str, Any]], identity: dict[str, list[Any]] | None = None
) -> list[str]:
    """Each call's decision. A call names its policy `set` (default "caller": allowed everything,
    so that what is tested is the resource side: a trust or repository policy); `identity` adds
    sets of identity policies by name."""
    sets = {"caller": [{"name": "caller", "policy": ALLOW_ALL}], **(identity or {})}
    prepared = []
    for call in calls:
        principal = call["principal"]
        # What AWS puts in every request's context: for a role session, aws:PrincipalArn is the
        # role's ARN (not the session's); for the root user, the root ARN.
        # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-principalarn
        context = {
            "aws:PrincipalArn": principal,
            "aws:PrincipalAccount": principal.split(":")[4],
            **call.get("context", {}),
        }
        policy = call.get("resourcePolicy")
        prepared.append(
            Call(
                "test",
                "call",
                principal.split(":")[4],
                principal,
                call["action"],
                call["resource"],
                tuple(sorted(context.items())),
                json.dumps(policy) if policy is not None else None,
                policy_set=call.get("set", "caller"),
                resource_account=call.get("resourceAccount"),
            )
        )
    return [decision["decision"] for decision in evaluate(prepared, sets)]


def execution_policies(
    account: str,
    kind: AccountKind = "target",
    *,
    project: str = "webapp",
    qualifier: str = "webapp",
    partition: str = "aws",
) -> list[dict[str, Any]]:
    """The committed execution policies of an account of `kind`, as `make bootstrap` renders
    them, in the evaluator's policy-set form."""
    values = {"partition": partition, "account": account, "project": project}
    return [
        {"name": p["name"], "policy": render(p["document"], **values, qualifier=qualifier)}
        for p in load_policies(kind)
    ]


def boundary_policy(
    account: str,
    kind: AccountKind = "target",
    *,
    project: str = "webapp",
    qualifier: str = "webapp",
    partition: str = "aws",
) -> list[dict[str, Any]]:
    """The committed permissions boundary of an account of `kind`, rendered, as the only policy
    of a policy set: what it denies, no role policy can grant."""
    document = render(
        load_boundary(kind)["document"],
        partition=partition,
        account=account,
        project=project,
        qualifier=qualifier,
    )
    return [{"name": f"{kind} boundary", "policy": document}]
