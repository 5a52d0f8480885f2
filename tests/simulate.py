"""The IAM policy evaluator (policies/iam_simulate.mjs, @cloud-copilot/iam-simulate) for tests
that check one policy's semantics: a trust policy, a repository policy, a role's own policy."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from policies.deploy_check import NODE, SIMULATOR

ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


def simulate(
    calls: list[dict[str, Any]], identity: dict[str, list[Any]] | None = None
) -> list[str]:
    """Each call's decision. A call names its policy `set` (default "caller": allowed everything,
    so that what is tested is the resource side: a trust or repository policy); `identity` adds
    sets of identity policies by name."""
    sets = {"caller": {"identity": [{"name": "caller", "policy": ALLOW_ALL}]}}
    sets.update({name: {"identity": docs} for name, docs in (identity or {}).items()})
    prepared = []
    for call in calls:
        principal = call["principal"]
        prepared.append(
            {
                "set": "caller",
                "account": principal.split(":")[4],
                **call,
                # What AWS puts in every request's context: for a role session, aws:PrincipalArn
                # is the role's ARN (not the session's); for the root user, the root ARN.
                # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-principalarn
                "context": {
                    "aws:PrincipalArn": principal,
                    "aws:PrincipalAccount": principal.split(":")[4],
                    **call.get("context", {}),
                },
            }
        )
    result = subprocess.run(
        [str(NODE), str(SIMULATOR)],
        input=json.dumps({"policySets": sets, "calls": prepared}),
        capture_output=True,
        text=True,
        check=True,
    )
    return [decision["decision"] for decision in json.loads(result.stdout)]
