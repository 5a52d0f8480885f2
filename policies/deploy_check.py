"""The deploy-permission check: would CloudFormation, running as each account's execution role,
be allowed every call it makes to create, update and delete every resource the app synthesizes?

For each resource of each synthesized stack (the pipeline account's and every target's) it forms
the requests CloudFormation's handlers make, from the resource schemas' handler permissions:

- the action, translated to a real IAM action where a schema lists an API name instead
  (policies/handler-actions.toml);
- the ARNs the call is authorized on, from AWS's catalogue of the action's resource types
  (policies/iam_data.py): the resource's own ARN, formed as AWS forms it (CloudFormation's
  generated name where the template sets none), and every ARN the resource references (the
  Lambda code object in the CDK asset bucket, roles passed, keys, log groups, buckets, topics...);
- the request context AWS supplies: request and resource tags, `iam:PermissionsBoundary` of the
  role acted on, `iam:PassedToService` of a role passed;

and evaluates each request with an established IAM policy evaluator (`@cloud-copilot/iam-simulate`,
npm, test-only) against the account's execution policies exactly as `make bootstrap` creates them.
It fails on any denial, naming stack, logical id, action, ARN and why no statement allowed it.

What it cannot see (docs/security.md, "What the check proves"): calls a handler makes that
its schema does not list, service-side checks that are not IAM (quotas, key policies of keys the
template does not create, SCPs of an organization), and calls whose resource the template does not
name (counted as "not applicable", printed).

    python -m policies.deploy_check CONFIG CDK_OUT
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.cloud_assembly import AssemblyError, StackTemplate, read_stacks
from configuration import ConfigError, DeploymentConfig, load_config
from configuration.toolchain import ROOT
from ops.bootstrap import cdk_role_name, plan
from policies import iam_data
from policies.execution_policy import (
    CATALOGUE_GAPS,
    CONNECTION_SERVICES,
    CREATE_HANDLERS,
    CREATES,
    DENIED,
    GENERATED_TAIL,
    LOAD_BALANCER_NAME_LIMIT,
    OWN_ARN,
    PROJECT_TAG,
    RESOURCE_POLICIES,
    SERVICE_LINKED_ROLES,
    TAGS_IN_CREATE_CALL,
    creating_call,
    early_call,
    generated_name,
    required_actions,
    resource_schema,
    service_of,
    tagging_of,
    untags,
)

NODE = ROOT / "node_modules" / ".bin" / "node"
SIMULATOR = Path(__file__).resolve().parent / "iam_simulate.mjs"

# The property that holds a resource's physical name, where the template may set one.
NAME_PROPERTY = {
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::CloudWatch::Dashboard": "DashboardName",
    "AWS::CodeBuild::Project": "Name",
    "AWS::CodePipeline::Pipeline": "Name",
    "AWS::ECS::Cluster": "ClusterName",
    "AWS::ECS::Service": "ServiceName",
    "AWS::ECS::TaskDefinition": "Family",
    "AWS::ElasticLoadBalancingV2::LoadBalancer": "Name",
    "AWS::ElasticLoadBalancingV2::TargetGroup": "Name",
    "AWS::IAM::Role": "RoleName",
    "AWS::KMS::Alias": "AliasName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::WAFv2::WebACL": "Name",
}
# Names CloudFormation generates (execution_policy.generated_name), lower case for buckets, within
# the service's limit (64 where not listed).
NAME_LIMIT = {
    "AWS::S3::Bucket": 63,
    "AWS::ElasticLoadBalancingV2::LoadBalancer": LOAD_BALANCER_NAME_LIMIT,
}
# The service a resource type hands the roles it names to (iam:PassedToService of iam:PassRole).
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_iam-condition-keys.html#ck_PassedToService
PASSED_TO = {
    "AWS::CodeBuild::Project": "codebuild.amazonaws.com",
    "AWS::CodePipeline::Pipeline": "codepipeline.amazonaws.com",
    "AWS::EC2::FlowLog": "vpc-flow-logs.amazonaws.com",
    "AWS::ECS::Service": "ecs.amazonaws.com",
    "AWS::ECS::TaskDefinition": "ecs-tasks.amazonaws.com",
    "AWS::Lambda::Function": "lambda.amazonaws.com",
}
# Resource policies (execution_policy.RESOURCE_POLICIES) are evaluated beside the identity policy:
# a KMS key's own key policy (without it no IAM policy can use the key), and the policies of
# buckets and topics the template writes.
# https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html
# Properties that hold policy documents: the ARNs in them are what a principal is granted, not
# what CloudFormation's handler acts on.
POLICY_DOCUMENT_KEYS = frozenset(
    {"PolicyDocument", "AssumeRolePolicyDocument", "KeyPolicy", "Policies"}
)
# Where a resource type names an object it reads from S3 (bucket and key properties).
S3_OBJECTS = {"AWS::Lambda::Function": ("Code", "S3Bucket", "S3Key")}
ID_PREFIX = {
    ("ec2", "vpc"): "vpc-",
    ("ec2", "subnet"): "subnet-",
    ("ec2", "route-table"): "rtb-",
    ("ec2", "elastic-ip"): "eipalloc-",
    ("ec2", "natgateway"): "nat-",
    ("ec2", "internet-gateway"): "igw-",
    ("ec2", "vpc-flow-log"): "fl-",
    ("ec2", "security-group"): "sg-",
    ("ec2", "security-group-rule"): "sgr-",
    ("ec2", "prefix-list"): "pl-",
}


# The key of a tag a template no longer has, which is what CloudFormation's untagging calls name.
REMOVED_TAG = "a-tag-the-template-dropped"
IMPORTED_VPC = re.compile(r"vpc-[0-9a-f]{8,17}")
DYNAMIC_REFERENCE = re.compile(r"\{\{resolve:(secretsmanager|ssm|ssm-secure):([^:}]+)")
FAS_CONTEXT: dict[str, Any] = {
    "aws:ViaAWSService": "true",
    "aws:CalledVia": ["cloudformation.amazonaws.com"],
    "aws:CalledViaFirst": "cloudformation.amazonaws.com",
    "aws:CalledViaLast": "cloudformation.amazonaws.com",
}


class CheckError(Exception):
    """The check could not run (missing tools, an unknown resource type); str() says what to do."""


@dataclass(frozen=True)
class Target:
    """One ARN a call is authorized on, with what AWS knows about that resource."""

    arn: str
    tags: tuple[tuple[str, str], ...] = ()
    boundary: str | None = None  # the permissions boundary of a role
    policy: str | None = None  # its resource policy (JSON), where AWS evaluates one
    own: bool = False  # "*" standing for the resource itself (CATALOGUE_GAPS)


@dataclass(frozen=True)
class Call:
    stack: str
    logical_id: str
    account: str
    principal: str
    action: str
    resource: str
    context: tuple[tuple[str, str | tuple[str, ...]], ...] = ()
    resource_policy: str | None = None
    # The identity policies to evaluate it against (default: its account's) and the account
    # that owns the resource (default: its account; another one makes the call cross-account).
    policy_set: str | None = None
    resource_account: str | None = None

    @property
    def policies(self) -> str:
        return self.policy_set or self.account


@dataclass
class Report:
    calls: list[Call] = field(default_factory=list)
    denials: list[tuple[Call, str, list[str]]] = field(default_factory=list)  # call, decision, why
    not_applicable: int = 0  # schema actions whose resource type this resource does not touch
    # Calls the execution policies deny on purpose (execution_policy.DENIED), with the reason:
    # CloudFormation makes them only for a template change the design forbids.
    denied_on_purpose: list[tuple[Call, str]] = field(default_factory=list)
    # (resource type, action) evaluated on "*": AWS's catalogue names no resource type of that
    # kind for the action.
    catalogue_gaps: set[tuple[str, str]] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.denials

    def summary(self) -> str:
        return (
            f"{len(set(self.calls))} calls evaluated, "
            f"{len(self.denials)} denied; {len(self.denied_on_purpose)} denied on purpose "
            f"({', '.join(sorted({c.action for c, _ in self.denied_on_purpose})) or 'none'}); "
            f"{self.not_applicable} schema actions not applicable to the resource they are "
            f"listed for; {len(self.catalogue_gaps)} evaluated on '*' for want of a resource "
            "type in AWS's catalogue"
        )

    def describe(self) -> str:
        lines = ["deploy-permission check: " + self.summary()]
        for call, decision, why in self.denials:
            context = ", ".join(f"{k}={v}" for k, v in call.context)
            lines.append(
                f"  {call.stack} {call.logical_id}: {call.action} on {call.resource} "
                f"{decision}" + (f" (context {context})" if context else "")
            )
            lines.append(
                "    "
                + (
                    "; ".join(why)
                    if why
                    else "no statement of the execution policies names this action"
                )
            )
        return "\n".join(lines)


class _Resources:
    """The identities (names, ids, ARNs, tags) of one template's resources, as AWS would form
    them once CloudFormation has created them."""

    def __init__(self, stack: StackTemplate) -> None:
        self.stack = stack
        self.resources: dict[str, dict[str, Any]] = stack.template.get("Resources", {})
        self._names: dict[str, str] = {}

    def kind(self, logical_id: str) -> str:
        return str(self.resources[logical_id]["Type"])

    def own_type(self, logical_id: str) -> tuple[str, str] | None:
        kind = self.kind(logical_id)
        if kind.startswith("Custom::") or kind in (
            "AWS::CloudFormation::CustomResource",
            "AWS::CDK::Metadata",
        ):
            return None
        if kind not in OWN_ARN:
            raise CheckError(
                f"{self.stack.name} {logical_id}: resource type {kind} is not in "
                "policies/deploy_check.py OWN_ARN; add how AWS names its ARN (or None)."
            )
        return OWN_ARN[kind]

    def name(self, logical_id: str) -> str:
        if logical_id in self._names:
            return self._names[logical_id]
        kind = self.kind(logical_id)
        properties = self.resources[logical_id].get("Properties", {})
        value = self.render(properties.get(NAME_PROPERTY.get(kind, ""), None))
        if value is None:
            suffix = hashlib.sha256(f"{self.stack.name}/{logical_id}".encode()).hexdigest()
            tail = suffix[:GENERATED_TAIL].upper()
            value = generated_name(self.stack.name, logical_id, tail, NAME_LIMIT.get(kind, 64))
            if kind == "AWS::S3::Bucket":
                value = value.lower()
        self._names[logical_id] = value
        return value

    def id(self, logical_id: str) -> str:
        digest = hashlib.sha256(f"{self.stack.name}/{logical_id}/id".encode()).hexdigest()
        own = self.own_type(logical_id)
        if own in ID_PREFIX:
            return ID_PREFIX[own] + digest[:17]
        if own == ("kms", "key"):
            return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
        return digest[:16]

    def arn(self, logical_id: str) -> str | None:
        own = self.own_type(logical_id)
        if own is None:
            return None
        resource_type = iam_data.resource_types(own[0]).get(own[1])
        if resource_type is None:
            raise CheckError(f"AWS's catalogue has no resource type {own[1]} of {own[0]}")

        def fill(match: re.Match[str]) -> str:
            placeholder = match[1]
            if placeholder == "Partition":
                return self.stack.partition
            if placeholder == "Region":
                return self.stack.region
            if placeholder == "Account":
                return self.stack.account
            if placeholder == "Scope":
                return "regional"
            if placeholder == "TaskDefinitionRevisionNumber":
                return "1"
            if placeholder.endswith("Id") and not placeholder.endswith("NameId"):
                return self.id(logical_id)
            name = self.name(logical_id)
            return name.removeprefix("alias/") if placeholder == "Alias" else name

        return re.sub(r"\$\{([^}]+)\}", fill, resource_type.arn)

    def tags(self, logical_id: str) -> tuple[tuple[str, str], ...]:
        tags = self.resources[logical_id].get("Properties", {}).get("Tags")
        pairs: list[tuple[str, str]] = []
        if isinstance(tags, list):
            for tag in tags:
                key, value = self.render(tag.get("Key")), self.render(tag.get("Value"))
                if key is not None and value is not None:
                    pairs.append((key, value))
        elif isinstance(tags, dict):
            pairs = [(k, v) for k, v in tags.items() if isinstance(v, str)]
        return tuple(sorted(pairs))

    def target(self, logical_id: str) -> Target | None:
        arn = self.arn(logical_id)
        if arn is None:
            return None
        properties = self.resources[logical_id].get("Properties", {})
        boundary = None
        if self.kind(logical_id) == "AWS::IAM::Role":
            boundary = self.render(properties.get("PermissionsBoundary"))
        policy = None
        own_policy = RESOURCE_POLICIES.get(self.kind(logical_id))
        if own_policy is not None and own_policy[1] is None:
            policy = self.render_document(properties.get(own_policy[0]))
        for other in self.resources.values():
            document, attached_to = RESOURCE_POLICIES.get(other["Type"], ("", None))
            if attached_to is None:
                continue
            attached = other.get("Properties", {}).get(attached_to)
            names = attached if isinstance(attached, list) else [attached]
            if any(isinstance(n, dict) and n.get("Ref") == logical_id for n in names):
                policy = self.render_document(other["Properties"].get(document))
        return Target(arn, self.tags(logical_id), boundary, policy)

    def render_document(self, document: Any) -> str | None:
        """A policy document with every intrinsic function resolved, as JSON."""
        if document is None:
            return None

        def resolve(node: Any) -> Any:
            if isinstance(node, dict):
                if len(node) == 1 and next(iter(node)).startswith(("Ref", "Fn::")):
                    return self.render(node) or "UNRESOLVED"
                return {k: resolve(v) for k, v in node.items()}
            if isinstance(node, list):
                return [resolve(v) for v in node]
            return node

        return json.dumps(resolve(document), sort_keys=True)

    # Intrinsic functions, resolved as CloudFormation would resolve them at deploy time.
    def render(self, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float, bool)):
            return str(value).lower() if isinstance(value, bool) else str(value)
        if not isinstance(value, dict) or len(value) != 1:
            return None
        ((function, argument),) = value.items()
        if function == "Ref":
            return self._ref(str(argument))
        if function == "Fn::GetAtt":
            logical_id, attribute = (
                argument if isinstance(argument, list) else str(argument).split(".", 1)
            )
            if logical_id not in self.resources:
                return None
            if attribute == "Arn" or attribute.endswith("Arn"):
                arn = self.arn(logical_id)
                # A log group's Arn attribute ends in ":*" (it covers the group's streams).
                # https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-logs-loggroup.html
                if arn and self.kind(logical_id) == "AWS::Logs::LogGroup":
                    return arn + ":*"
                return arn
            return self.id(logical_id) if "Id" in attribute else self.name(logical_id)
        if function == "Fn::Join":
            separator, parts = argument
            rendered = [self.render(p) for p in parts]
            if any(p is None for p in rendered):
                return None
            return str(separator).join(p for p in rendered if p is not None)
        if function == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument

            def sub(match: re.Match[str]) -> str:
                name = match[1]
                if name in variables:
                    return self.render(variables[name]) or "UNRESOLVED"
                if "." in name:
                    return self.render({"Fn::GetAtt": name}) or "UNRESOLVED"
                return self._ref(name) or "UNRESOLVED"

            return re.sub(r"\$\{([^}!]+)\}", sub, text)
        if function == "Fn::Select":
            index, items = argument
            if isinstance(items, dict) and "Fn::Split" in items:
                delimiter, source = items["Fn::Split"]
                text = self.render(source)
                parts = text.split(delimiter) if text is not None else []
                return parts[index] if isinstance(index, int) and index < len(parts) else None
            if isinstance(items, list) and isinstance(index, int) and index < len(items):
                return self.render(items[index])
            return None
        return None

    def _ref(self, name: str) -> str | None:
        pseudo = {
            "AWS::Partition": self.stack.partition,
            "AWS::AccountId": self.stack.account,
            "AWS::Region": self.stack.region,
            "AWS::URLSuffix": "amazonaws.com.cn"
            if self.stack.partition == "aws-cn"
            else ("amazonaws.com"),
            "AWS::StackName": self.stack.name,
            "AWS::StackId": (
                f"arn:{self.stack.partition}:cloudformation:{self.stack.region}:"
                f"{self.stack.account}:stack/{self.stack.name}/"
                "3c1a2b00-0000-4000-8000-000000000000"
            ),
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.resources:
            kind = self.kind(name)
            if _ref_returns_arn(kind):
                return self.arn(name)
            own = self.own_type(name)
            if own in ID_PREFIX or own == ("kms", "key"):
                return self.id(name)
            return self.name(name)
        parameter = self.stack.template.get("Parameters", {}).get(name)
        if parameter is not None and "Default" in parameter:
            return str(parameter["Default"])
        return None

    def references(self, logical_id: str) -> list[Target]:
        """The resources a resource's properties name: other resources of the template (by Ref or
        GetAtt), ARNs written out, and the S3 objects it reads."""
        properties = self.resources[logical_id].get("Properties", {})
        found: dict[str, Target] = {}

        def visit(node: Any) -> None:
            if isinstance(node, dict):
                node = {k: v for k, v in node.items() if k not in POLICY_DOCUMENT_KEYS}
                if len(node) == 1:
                    ((function, argument),) = node.items()
                    referenced = None
                    if function == "Ref" and isinstance(argument, str):
                        referenced = argument
                    elif function == "Fn::GetAtt":
                        referenced = (
                            argument[0] if isinstance(argument, list) else argument.split(".")[0]
                        )
                    if referenced in self.resources and referenced != logical_id:
                        target = self.target(referenced)
                        if target is not None:
                            found.setdefault(target.arn, target)
                    if function in ("Fn::Join", "Fn::Sub"):
                        text = self.render(node)
                        if text is not None and text.startswith("arn:"):
                            found.setdefault(text, Target(text))
                for child in node.values():
                    visit(child)
            elif isinstance(node, list):
                for child in node:
                    visit(child)
            elif isinstance(node, str) and node.startswith("arn:"):
                found.setdefault(node, Target(node))
            elif isinstance(node, str) and IMPORTED_VPC.fullmatch(node):
                # An imported VPC (config `network.vpc_id`): not the project's, so untagged.
                stack = self.stack
                arn = f"arn:{stack.partition}:ec2:{stack.region}:{stack.account}:vpc/{node}"
                found.setdefault(arn, Target(arn))

        visit(properties)
        # Only this account's resources: a handler acts in the stack's own account; an ARN of
        # another account in the properties is used by the service later (a role it assumes).
        found = {
            arn: target
            for arn, target in found.items()
            if arn.split(":")[4:5] in ([""], [self.stack.account])
        }
        spec = S3_OBJECTS.get(self.kind(logical_id))
        if spec is not None:
            container = properties.get(spec[0], {})
            bucket, key = self.render(container.get(spec[1])), self.render(container.get(spec[2]))
            if bucket and key:
                partition = self.stack.partition
                for arn in (
                    f"arn:{partition}:s3:::{bucket}/{key}",
                    f"arn:{partition}:s3:::{bucket}",
                ):
                    found.setdefault(arn, Target(arn))
        return list(found.values())


def stack_calls(
    stack: StackTemplate,
    qualifier: str,
    actions: dict[str, dict[str, frozenset[str]]] | None = None,
) -> tuple[list[Call], int, set[tuple[str, str]]]:
    """The calls CloudFormation makes, as the execution role, to deploy and delete `stack`.

    `actions`: per resource type and handler, the actions to evaluate (default: what
    `make policies` derives for this stack's resource types alone)."""
    if actions is None:
        actions = required_actions(
            {r["Type"] for r in stack.template.get("Resources", {}).values()}
        )
    principal = f"arn:{stack.partition}:iam::{stack.account}:role/" + cdk_role_name(
        "cfn-exec", qualifier, stack.account, stack.region
    )
    resources = _Resources(stack)
    calls: list[Call] = []
    not_applicable = 0
    catalogue_gaps: set[tuple[str, str]] = set()

    def call(
        logical_id: str,
        action: str,
        resource: str,
        context: dict[str, Any],
        resource_policy: str | None = None,
    ) -> None:
        # CloudFormation makes every resource operation with a forward access session of the
        # role it runs as, so AWS's FAS keys are in every request's context.
        # https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/fas-requests-and-permission-evaluation.html
        # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-calledvia
        context = {**FAS_CONTEXT, **context}
        if resource != "*":
            # The account that owns the resource: the stack's own (CDK's asset bucket included,
            # created there by `make bootstrap`).
            context = {"aws:ResourceAccount": stack.account, **context}
        calls.append(
            Call(
                stack.name,
                logical_id,
                stack.account,
                principal,
                action,
                resource,
                tuple(
                    sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in context.items())
                ),
                resource_policy,
            )
        )

    # CloudFormation resolves the bootstrap version parameter of every CDK stack.
    version = stack.template.get("Parameters", {}).get("BootstrapVersion", {}).get("Default")
    if isinstance(version, str):
        call(
            "BootstrapVersion",
            "ssm:GetParameters",
            f"arn:{stack.partition}:ssm:{stack.region}:{stack.account}:parameter" + version,
            {},
        )

    # Dynamic references: CloudFormation resolves them with the role it runs as.
    # https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/dynamic-references.html
    text = json.dumps(stack.template)
    for service, name in sorted(set(DYNAMIC_REFERENCE.findall(text))):
        if service == "secretsmanager":
            arn = (
                name
                if name.startswith("arn:")
                else (
                    f"arn:{stack.partition}:secretsmanager:{stack.region}:{stack.account}:secret:"
                    f"{name}-AbCdEf"  # Secrets Manager appends six random characters
                )
            )
            call("DynamicReference", "secretsmanager:GetSecretValue", arn, {})
        else:
            path = name if name.startswith("/") else f"/{name}"
            arn = f"arn:{stack.partition}:ssm:{stack.region}:{stack.account}:parameter{path}"
            call("DynamicReference", "ssm:GetParameters", arn, {})

    for logical_id, resource in resources.resources.items():
        kind = resource["Type"]
        if kind == "AWS::CDK::Metadata":
            continue
        own = resources.target(logical_id)
        references = resources.references(logical_id)
        for handler, names in actions[kind].items():
            for action_name in sorted(names):
                entry = iam_data.action(action_name)
                if entry is None:
                    raise CheckError(f"{kind}: {action_name} is not an IAM action")
                required = [key for key, is_required in entry.resource_types if is_required]
                known = [key for key, _ in entry.resource_types]
                targets: list[Target] = []
                if entry.full_name.lower() == "iam:createservicelinkedrole":
                    # It acts on the service-linked role of the resource's own service.
                    service_principal, role = SERVICE_LINKED_ROLES.get(
                        service_of(kind),
                        (
                            f"{service_of(kind)}.amazonaws.com",
                            "AWSServiceRoleFor" + kind.split("::")[1],
                        ),
                    )
                    targets = [
                        Target(
                            f"arn:{stack.partition}:iam::{stack.account}:role/aws-service-role/"
                            f"{service_principal}/{role}"
                        )
                    ]
                elif own is not None and _fits(entry, known, own.arn):
                    targets.append(own)
                # A handler tags and untags its own resource, never the ones it references.
                if entry.full_name.lower() != "iam:createservicelinkedrole" and (
                    "Tagging" not in entry.access_level
                ):
                    targets += [
                        t
                        for t in (_renamed(r, entry.service) for r in references)
                        if _fits(entry, known, t.arn)
                    ]
                if (
                    required
                    and entry.full_name.lower() != "iam:createservicelinkedrole"
                    and not any(_fits(entry, required, t.arn) for t in targets)
                ):
                    # The call needs a resource of a kind this one neither is nor references
                    # (a VPN gateway to attach): the handler does not make it for this resource.
                    targets = []
                if (
                    not targets
                    and required
                    and own is not None
                    and _service(own.arn) == entry.service
                    and entry.service in CATALOGUE_GAPS
                ):
                    # The action acts on this resource, but the catalogue gives it no resource
                    # type of this kind (CATALOGUE_GAPS): evaluated on "*", never skipped.
                    catalogue_gaps.add((kind, entry.full_name))
                    targets = [Target("*", own.tags, own=True)]
                if not targets:
                    if required:
                        not_applicable += 1
                        continue
                    targets = [Target("*")]
                for target in targets:
                    context = _context(entry, handler, kind, target, own, stack.account)
                    # A resource policy applies once the resource exists (not to its creation).
                    creates = handler == "create" and target is own
                    policy = None if creates and entry.name.startswith("Create") else target.policy
                    call(logical_id, entry.full_name, target.arn, context, policy)
    return calls, not_applicable, catalogue_gaps


def _ref_returns_arn(kind: str) -> bool:
    """`Ref` returns a registry resource's primary identifier; for these types that is its ARN
    (ServiceArn, TopicArn, LoadBalancerArn...), for the others a name or an id.
    https://docs.aws.amazon.com/cloudformation-cli/latest/userguide/resource-type-schema.html"""
    if OWN_ARN.get(kind) is None:  # no ARN of its own (custom resources, attachments)
        return False
    identifier = resource_schema(kind).get("primaryIdentifier") or [""]
    return str(identifier[0]).endswith("Arn")


def _fits(action: iam_data.Action, keys: list[str], arn: str) -> bool:
    """Whether `arn` is of one of the resource types `keys` of `action`'s service (any template
    that matches, not only the most specific one)."""
    types = iam_data.resource_types(action.service)
    return any(key in types and types[key].pattern.match(arn) for key in keys)


def _renamed(target: Target, service: str) -> Target:
    """A connection ARN under the prefix of the action evaluated on it (CodeStar Connections
    and CodeConnections name the same connections)."""
    prefix = _service(target.arn)
    if service != prefix and {service, prefix} <= CONNECTION_SERVICES:
        parts = target.arn.split(":")
        return Target(":".join([*parts[:2], service, *parts[3:]]), target.tags)
    return target


def _service(arn: str) -> str:
    parts = arn.split(":")
    return parts[2] if len(parts) > 2 else ""


def _context(
    action: iam_data.Action,
    handler: str,
    kind: str,
    target: Target,
    own: Target | None,
    account: str,
) -> dict[str, Any]:
    """The condition keys AWS puts in the request context of this call, where the action
    supports them (AWS's catalogue lists the keys each action and resource type supports)."""
    keys = set(action.condition_keys)
    resource_type = iam_data.classify(target.arn) if target.arn != "*" else None
    if resource_type is not None:
        keys |= set(resource_type.condition_keys)
    context: dict[str, Any] = {}
    if action.full_name.lower() == "iam:passrole":
        if kind not in PASSED_TO:
            raise CheckError(
                f"{kind} passes a role, but policies/deploy_check.py PASSED_TO does not say to "
                "which service; add it (IAM's iam:PassedToService value)."
            )
        context["iam:PassedToService"] = PASSED_TO[kind]
    if action.full_name.lower() == "iam:createservicelinkedrole":
        # The service the role is for, as its path says: role/aws-service-role/<service>/<name>.
        # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_iam-condition-keys.html#ck_AWSServiceName
        context["iam:AWSServiceName"] = target.arn.split("/")[-2]
    if "s3:ResourceAccount" in keys:
        # The account that owns the bucket: the stack's own (asset buckets included).
        context["s3:ResourceAccount"] = account
    if "iam:PermissionsBoundary" in keys and target.boundary:
        context["iam:PermissionsBoundary"] = target.boundary
    # The resource does not exist before its creating call (CREATES); the tags the template gives
    # it are in that call, and a tagging call made as part of it is authorized as tag-on-create
    # (EC2, ECS and ELB name the creating action in <service>:CreateAction). Every other call
    # finds the resource with its tags, and a referenced resource has its own.
    # https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/supported-iam-actions-tagging.html
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/access_tags.html
    itself = target is own or target.own
    creates = handler == "create" and itself and creating_call(kind, action.full_name)
    tag_on_create = (
        handler == "create"
        and itself
        and "Tagging" in action.access_level
        and "aws:RequestTag/${TagKey}" in keys
    )
    creating = handler in CREATE_HANDLERS
    tags = own.tags if own is not None else ()
    if handler == "create" and itself and not tagging_of(kind).get("tagOnCreate"):
        # Created without its tags (the schema says so): untagged until the handler tags it.
        tags, target = (), Target(target.arn)
    if creates and kind not in TAGS_IN_CREATE_CALL:
        tags = ()  # the handler may create it untagged and tag it in a second call
    if untags(action.full_name):
        # CloudFormation removes only the tags a template no longer has; the project tag is on
        # every version of every template (stages/deployment.py).
        removed = [key for key, _ in tags if key != PROJECT_TAG] or [REMOVED_TAG]
        if "aws:TagKeys" in keys:
            context["aws:TagKeys"] = removed
    elif creating and tags and "aws:RequestTag/${TagKey}" in keys:
        for key, value in tags:
            context[f"aws:RequestTag/{key}"] = value
        if "aws:TagKeys" in keys:
            context["aws:TagKeys"] = [key for key, _ in tags]
    create_action = f"{action.service}:CreateAction"
    if tag_on_create and create_action in keys and kind in TAGS_IN_CREATE_CALL:
        context[create_action] = CREATES[kind].split(":")[1]
    # A type whose handler may tag in a second call: every call its create handler makes on the
    # new resource may come before the tags (CloudFormation's security groups change their rules
    # first: cloudformation-coverage-roadmap#714, aws-cdk#13204).
    untagged_yet = handler == "create" and itself and early_call(kind, action.full_name)
    existing = not (creates or tag_on_create or untagged_yet)
    if existing and target.tags and "aws:ResourceTag/${TagKey}" in keys:
        for key, value in target.tags:
            context[f"aws:ResourceTag/{key}"] = value
    return context


def policy_sets(config: DeploymentConfig) -> dict[str, list[dict[str, Any]]]:
    """Each account's execution policies, exactly as `make bootstrap` creates them."""
    return {
        account.account: [
            {"name": policy.name, "policy": policy.document}
            for policy in account.execution_policies
        ]
        for account in plan(config).accounts
    }


def evaluate(calls: list[Call], policies: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Run the IAM policy evaluator on `calls`, each against its set of identity policies
    (`policies`, keyed by account unless a call names another set)."""
    if (
        not NODE.exists()
        or not (ROOT / "node_modules" / "@cloud-copilot" / "iam-simulate").is_dir()
    ):
        raise CheckError("the IAM policy evaluator is not installed: run `make setup`.")
    missing = sorted({c.policies for c in calls} - set(policies))
    if missing:
        raise CheckError(f"no policies for {', '.join(missing)}")
    request = {
        "policySets": {account: {"identity": docs} for account, docs in policies.items()},
        "calls": [
            {
                "set": c.policies,
                "principal": c.principal,
                "account": c.account,
                **({"resourceAccount": c.resource_account} if c.resource_account else {}),
                "action": c.action,
                "resource": c.resource,
                "context": {k: list(v) if isinstance(v, tuple) else v for k, v in c.context},
                **({"resourcePolicy": json.loads(c.resource_policy)} if c.resource_policy else {}),
            }
            for c in calls
        ],
    }
    # Fixed argv: the pinned Node binary and the evaluator script of this repository.
    result = subprocess.run(  # noqa: S603
        [str(NODE), str(SIMULATOR)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if result.returncode != 0:
        raise CheckError(f"the IAM policy evaluator failed: {result.stderr.strip()[-2000:]}")
    decisions: list[dict[str, Any]] = json.loads(result.stdout)
    return decisions


def check(
    config: DeploymentConfig,
    stacks: Iterable[StackTemplate],
    policies: dict[str, list[dict[str, Any]]] | None = None,
) -> Report:
    """Evaluate every call of every stack against its account's execution policies."""
    report = Report()
    stacks = list(stacks)
    # The actions `make policies` derives for each account kind, from all of its stacks' types.
    groups: dict[bool, set[str]] = {}
    for stack in stacks:
        groups.setdefault(stack.account == config.pipeline.account, set()).update(
            r["Type"] for r in stack.template.get("Resources", {}).values()
        )
    actions = {kind: required_actions(types) for kind, types in groups.items()}
    for stack in stacks:
        calls, not_applicable, gaps = stack_calls(
            stack, config.pipeline.qualifier, actions[stack.account == config.pipeline.account]
        )
        report.not_applicable += not_applicable
        report.catalogue_gaps |= gaps
        report.calls += calls
    unique = list(dict.fromkeys(report.calls))
    # The decision does not depend on which stack or resource made the request: evaluate each
    # distinct request once.
    requests = {_request(call): call for call in unique}
    decided = evaluate(
        list(requests.values()), policies if policies is not None else policy_sets(config)
    )
    by_request = dict(zip(requests, decided, strict=True))
    by_call = {call: by_request[_request(call)] for call in unique}
    denied_on_purpose = {action.lower(): reason for action, reason in DENIED.items()}
    for call in unique:
        decision = by_call[call]
        if decision["decision"] == "ExplicitlyDenied" and call.action.lower() in denied_on_purpose:
            report.denied_on_purpose.append((call, denied_on_purpose[call.action.lower()]))
        elif decision["decision"] != "Allowed":
            why = decision.get("why") or ([decision["error"]] if "error" in decision else [])
            report.denials.append((call, decision["decision"], why))
    return report


def _request(call: Call) -> tuple[object, ...]:
    return (
        call.policies,
        call.resource_account,
        call.account,
        call.principal,
        call.action,
        call.resource,
        call.context,
        call.resource_policy,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("cloud_assembly", type=Path)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        manifest = args.cloud_assembly / "manifest.json"
        stacks = read_stacks(args.cloud_assembly) if manifest.is_file() else []
        if not stacks:
            raise CheckError(f"{args.cloud_assembly}: no stacks found; run `make synth` first.")
        report = check(config, stacks)
    except (ConfigError, CheckError, AssemblyError, iam_data.IamDataMissingError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.describe(), file=sys.stderr if report.denials else sys.stdout)
    if report.denials:
        print(
            "error: the execution policies would deny these calls: run `make policies`, review "
            "the diff, and bootstrap again (`make bootstrap APPLY=1`).",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
