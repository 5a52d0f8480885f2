"""The least-privilege CloudFormation execution policies the target accounts are bootstrapped with.

CloudFormation publishes, for every resource type, the IAM actions its handlers call (create, read,
update, delete, list). cfn-lint ships those resource schemas, so the actions a stage's templates
need can be derived instead of guessed. `make policies` writes them, grouped into managed policies
small enough for IAM's size limit, to `policies/cloudformation-execution-policies.json`; the test
suite fails when a synthesized stage uses a resource type the committed policies do not cover.

IAM itself is scoped further: roles may only be created and changed under the project's name
prefix, only with the project's permissions boundary attached, and the boundary cannot be removed.

    python -m policies.execution_policy cdk.out            # check coverage of a cloud assembly
    python -m policies.execution_policy cdk.out --write    # regenerate the committed policies
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

POLICIES = Path(__file__).resolve().parent
EXECUTION_POLICIES = POLICIES / "cloudformation-execution-policies.json"
PERMISSIONS_BOUNDARY = POLICIES / "permissions-boundary.json"
# "{project}-permissions-boundary": the boundary policy's name, as permissions-boundary.json says.
BOUNDARY_NAME: str = json.loads(PERMISSIONS_BOUNDARY.read_text())["name"]
SCHEMA_REGION = "us-east-1"  # handler permissions do not differ between commercial regions
MAX_POLICY_CHARS = 6000  # IAM: 6,144 characters per managed policy, whitespace excluded

STACK_HANDLERS = frozenset({"create", "read", "update", "delete"})
# Custom resources are Lambda-backed: CloudFormation only invokes the provider function.
CUSTOM_RESOURCE_ACTIONS = frozenset({"lambda:InvokeFunction"})
# Every CDK stack reads the bootstrap version parameter when it is deployed.
STACK_ACTIONS = frozenset({"ssm:GetParameters"})
# Kept out on purpose, though a handler lists them: the permissions boundary must stay on every
# role, and the boundary policy itself must not change.
DENIED = {
    "iam:DeleteRolePermissionsBoundary": "roles must keep the project's permissions boundary",
}
# The services the stages' roles are handed to: tasks, ECS itself (load balancer changes during
# blue/green), Lambda (custom resources, hooks) and VPC flow logs.
PASSED_TO_SERVICES = frozenset(
    {
        "ecs-tasks.amazonaws.com",
        "ecs.amazonaws.com",
        "lambda.amazonaws.com",
        "vpc-flow-logs.amazonaws.com",
    }
)
# IAM actions are written with resource and boundary conditions (see _iam_statements).
# Every change to a role's permissions needs the boundary on that role, so a pre-existing role that
# happens to match the name prefix but has no boundary cannot be given more rights. (These are the
# role actions that support the iam:PermissionsBoundary condition key.)
IAM_WITH_BOUNDARY = frozenset(
    {
        "iam:AttachRolePolicy",
        "iam:CreateRole",
        "iam:DeleteRolePolicy",
        "iam:DetachRolePolicy",
        "iam:PutRolePermissionsBoundary",
        "iam:PutRolePolicy",
    }
)
# S3 actions that do not act on one bucket, so cannot be scoped to the project's buckets.
S3_ACCOUNT_LEVEL = frozenset({"s3:ListAllMyBuckets", "s3:GetAccountPublicAccessBlock"})


@cache
def _schemas() -> tuple[Path, dict[str, str]]:
    import cfnlint.data.schemas as data  # type: ignore[import-untyped]

    base = Path(data.__file__).resolve().parent
    index = json.loads((base / "providers" / f"{SCHEMA_REGION}.json").read_text())
    return base, index


def handler_actions(resource_type: str) -> frozenset[str]:
    """Every IAM action CloudFormation's handlers call for `resource_type`."""
    if (
        resource_type.startswith("Custom::")
        or resource_type == "AWS::CloudFormation::CustomResource"
    ):
        return CUSTOM_RESOURCE_ACTIONS
    if resource_type == "AWS::CDK::Metadata":
        return frozenset()
    base, index = _schemas()
    if resource_type not in index:
        raise KeyError(f"no CloudFormation schema for {resource_type}")
    schema = json.loads((base / "resources" / f"{index[resource_type]}.json").read_text())
    # Stack operations call create, read, update and delete; "list" serves Cloud Control only.
    return frozenset(
        action
        for name, handler in (schema.get("handlers") or {}).items()
        if name in STACK_HANDLERS
        for action in handler.get("permissions", [])
    )


def service_of(resource_type: str) -> str:
    """The IAM service prefix of a resource type (ElasticLoadBalancingV2: elasticloadbalancing)."""
    if resource_type.startswith("Custom::"):
        return "lambda"
    name = resource_type.split("::")[1].lower()
    return {"elasticloadbalancingv2": "elasticloadbalancing", "cdk": "cloudformation"}.get(
        name, name
    )


def required_actions(resource_types: Iterable[str]) -> dict[str, frozenset[str]]:
    """Per resource type, the handler actions of the services the stages deploy.

    Some handlers list actions of unrelated services (a WAF association names every resource kind
    it could attach to, from App Runner to Cognito); only services that the stages deploy count.
    """
    types = set(resource_types)
    services = {service_of(t) for t in types} | {"ssm"}
    result: dict[str, frozenset[str]] = {}
    for resource_type in sorted(types):
        actions = handler_actions(resource_type)
        # Schemas are not consistent about case ("EC2:CreateManagedPrefixList"); IAM is not
        # case-sensitive, so compare and emit actions with a lower-case service prefix.
        normalized = {_normalize(a) for a in actions}
        result[resource_type] = frozenset(
            a for a in normalized if a.split(":")[0] in services and not _for_users_or_groups(a)
        )
    return result


def _normalize(action: str) -> str:
    service, _, name = action.partition(":")
    return f"{service.lower()}:{name}"


def _for_users_or_groups(action: str) -> bool:
    # AWS::IAM::Policy can attach to users and groups; the stages only create role policies.
    return action.startswith("iam:") and ("User" in action or "Group" in action)


def stage_resource_types(cloud_assembly: Path) -> set[str]:
    """Resource types of every stack deployed by a stage (the nested assemblies of the pipeline)."""
    types: set[str] = set()
    for template in cloud_assembly.glob("assembly-*/*.template.json"):
        for resource in json.loads(template.read_text())["Resources"].values():
            types.add(resource["Type"])
    return types


def generate(resource_types: Iterable[str]) -> dict[str, Any]:
    """The execution policies for `resource_types`, with {partition}, {account} and {project}
    placeholders."""
    needed = set().union(*required_actions(resource_types).values()) | STACK_ACTIONS
    needed -= set(DENIED)
    by_service: dict[str, set[str]] = {}
    for action in needed:
        by_service.setdefault(action.split(":")[0], set()).add(action)

    statements: list[dict[str, Any]] = []
    for service, actions in sorted(by_service.items()):
        if service == "iam":
            statements.extend(_iam_statements(actions))
        elif service == "ssm":
            statements.append(
                {
                    "Sid": "ReadBootstrapVersion",
                    "Effect": "Allow",
                    "Action": sorted(actions),
                    "Resource": "arn:{partition}:ssm:*:{account}:parameter/cdk-bootstrap/*",
                }
            )
        elif service == "s3":
            # CloudFormation names the stages' buckets after their stacks: <project>-<stage>-...
            scoped = sorted(actions - S3_ACCOUNT_LEVEL)
            statements.append(
                {
                    "Sid": "S3ProjectBuckets",
                    "Effect": "Allow",
                    "Action": scoped,
                    "Resource": [
                        "arn:{partition}:s3:::{project}-*",
                        "arn:{partition}:s3:::{project}-*/*",
                    ],
                }
            )
            if actions & S3_ACCOUNT_LEVEL:
                statements.append(
                    {
                        "Sid": "S3AccountLevel",
                        "Effect": "Allow",
                        "Action": sorted(actions & S3_ACCOUNT_LEVEL),
                        "Resource": "*",
                    }
                )
        elif service == "lambda":
            statements.append(
                {
                    "Sid": "Lambda",
                    "Effect": "Allow",
                    "Action": sorted(actions),
                    "Resource": [
                        "arn:{partition}:lambda:*:{account}:function:{project}-*",
                        "arn:{partition}:lambda:*:{account}:layer:*",
                    ],
                }
            )
        else:
            statements.append(
                {
                    "Sid": _sid(service),
                    "Effect": "Allow",
                    "Action": sorted(actions),
                    "Resource": "*",
                }
            )
    statements.append(
        {
            "Sid": "KeepPermissionsBoundary",
            "Effect": "Deny",
            "Action": [
                *DENIED,
                "iam:CreatePolicyVersion",
                "iam:DeletePolicy",
                "iam:DeletePolicyVersion",
                "iam:SetDefaultPolicyVersion",
            ],
            "Resource": [
                "arn:{partition}:iam::{account}:role/*",
                "arn:{partition}:iam::{account}:policy/" + BOUNDARY_NAME,
            ],
        }
    )
    return {
        "description": (
            "CloudFormation execution policies for the target accounts, generated by "
            "`make policies` from the resource types the stages deploy. Placeholders are "
            "filled in per account by `make bootstrap`."
        ),
        "policies": _pack(statements),
    }


def _iam_statements(actions: set[str]) -> list[dict[str, Any]]:
    roles = "arn:{partition}:iam::{account}:role/{project}-*"
    boundary = "arn:{partition}:iam::{account}:policy/" + BOUNDARY_NAME
    with_boundary = sorted(actions & IAM_WITH_BOUNDARY)
    pass_role = sorted(actions & {"iam:PassRole"})
    linked = sorted(actions & {"iam:CreateServiceLinkedRole"})
    rest = sorted(actions - IAM_WITH_BOUNDARY - {"iam:PassRole", "iam:CreateServiceLinkedRole"})
    statements: list[dict[str, Any]] = []
    if with_boundary:
        statements.append(
            {
                "Sid": "ChangeProjectRolesOnlyWithTheBoundary",
                "Effect": "Allow",
                "Action": with_boundary,
                "Resource": roles,
                "Condition": {"StringEquals": {"iam:PermissionsBoundary": boundary}},
            }
        )
    if rest:
        statements.append(
            {"Sid": "ManageProjectRoles", "Effect": "Allow", "Action": rest, "Resource": roles}
        )
    if pass_role:
        statements.append(
            {
                "Sid": "PassProjectRoles",
                "Effect": "Allow",
                "Action": pass_role,
                "Resource": roles,
                "Condition": {"StringEquals": {"iam:PassedToService": sorted(PASSED_TO_SERVICES)}},
            }
        )
    if linked:
        statements.append(
            {
                "Sid": "ServiceLinkedRoles",
                "Effect": "Allow",
                "Action": linked,
                "Resource": "arn:{partition}:iam::{account}:role/aws-service-role/*",
            }
        )
    return statements


def _sid(service: str) -> str:
    return "".join(part.title() for part in service.replace("-", " ").split())


def _size(statements: list[dict[str, Any]]) -> int:
    return len(
        json.dumps({"Version": "2012-10-17", "Statement": statements}, separators=(",", ":"))
    )


def _pack(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Split statements into as few managed policies as IAM's size limit allows."""
    groups: list[list[dict[str, Any]]] = []
    for statement in sorted(statements, key=lambda s: _size([s]), reverse=True):
        for group in groups:
            if _size([*group, statement]) <= MAX_POLICY_CHARS:
                group.append(statement)
                break
        else:
            groups.append([statement])
    return [
        {
            "name": f"{{project}}-cfn-execution-{index}",
            "document": {
                "Version": "2012-10-17",
                "Statement": sorted(group, key=lambda s: s["Sid"]),
            },
        }
        for index, group in enumerate(groups, start=1)
    ]


def render(
    document: dict[str, Any], *, partition: str, account: str, project: str
) -> dict[str, Any]:
    """Fill the placeholders of a policy document for one account."""
    text = json.dumps(document)
    for key, value in {"partition": partition, "account": account, "project": project}.items():
        text = text.replace("{" + key + "}", value)
    return json.loads(text)  # type: ignore[no-any-return]


def load_policies(path: Path = EXECUTION_POLICIES) -> list[dict[str, Any]]:
    return json.loads(path.read_text())["policies"]  # type: ignore[no-any-return]


def boundary_name(project: str) -> str:
    """The name of the permissions boundary policy `make bootstrap` creates for `project`."""
    return BOUNDARY_NAME.replace("{project}", project)


def actions_of(statement: dict[str, Any]) -> list[str]:
    """A policy statement's Action, which IAM allows as one string or a list."""
    action = statement["Action"]
    return list(action) if isinstance(action, list) else [action]


def allowed(action: str, policies: list[dict[str, Any]]) -> bool:
    """Whether some Allow statement names `action` (IAM wildcards honoured) and no Deny does."""

    def matches(statement: dict[str, Any]) -> bool:
        return any(
            fnmatch.fnmatchcase(action.lower(), name.lower()) for name in actions_of(statement)
        )

    statements = [s for policy in policies for s in policy["document"]["Statement"]]
    if any(s["Effect"] == "Deny" and matches(s) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and matches(s) for s in statements)


def missing(resource_types: Iterable[str], policies: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Per resource type, the needed actions the policies do not allow (DENIED ones excepted)."""
    gaps: dict[str, list[str]] = {}
    for resource_type, actions in required_actions(resource_types).items():
        lacking = sorted(
            a for a in actions | STACK_ACTIONS if a not in DENIED and not allowed(a, policies)
        )
        if lacking:
            gaps[resource_type] = lacking
    return gaps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cloud_assembly", type=Path, help="a synthesized cdk.out directory")
    parser.add_argument("--write", action="store_true", help=f"rewrite {EXECUTION_POLICIES.name}")
    args = parser.parse_args(argv)
    types = stage_resource_types(args.cloud_assembly)
    if not types:
        print(
            f"error: {args.cloud_assembly}: no stage templates found; run `make synth` first.",
            file=sys.stderr,
        )
        return 2
    if args.write:
        EXECUTION_POLICIES.write_text(json.dumps(generate(types), indent=2) + "\n")
        print(
            f"Wrote {EXECUTION_POLICIES.relative_to(POLICIES.parent)} "
            f"for {len(types)} resource types."
        )
        return 0
    gaps = missing(types, load_policies())
    for resource_type, actions in gaps.items():
        print(f"{resource_type}: not allowed: {', '.join(actions)}", file=sys.stderr)
    if gaps:
        print(
            "error: the execution policies do not cover the stages; run `make policies`.",
            file=sys.stderr,
        )
        return 1
    print(f"The execution policies cover all {len(types)} resource types the stages deploy.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
