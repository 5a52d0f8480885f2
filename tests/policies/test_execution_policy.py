"""The execution policies and permissions boundaries: generated from the resource schemas, only
real IAM actions, least privilege where IAM allows it, and boundaries that let every role do what
its own policies grant (decided by the IAM policy evaluator, not by matching names)."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from policies import iam_data
from policies.deploy_check import (
    Call,
    StackTemplate,
    Target,
    _Resources,
    evaluate,
    read_stacks,
)
from policies.execution_policy import (
    BOUNDARY_FILES,
    CREATES,
    NAME_SCOPED,
    POLICY_FILES,
    READ_ONLY,
    TAGS_IN_CREATE_CALL,
    AccountKind,
    UnknownActionError,
    actions_of,
    generate_all,
    generated_name,
    handler_actions,
    load_boundary,
    load_policies,
    real_actions,
    render,
    resource_policy_grants,
    role_policy_documents,
    star_only_actions,
    unknown_actions,
)

from ..conftest import Synthesized
from ..simulate import boundary_policy, default_key_policy, execution_policies


@pytest.fixture(scope="module")
def all_synths(
    default_synth: Synthesized, imported_synth: Synthesized, five_stage_synth: Synthesized
) -> list[Synthesized]:
    return [default_synth, imported_synth, five_stage_synth]


def test_the_committed_policies_are_what_make_policies_generates(
    all_synths: list[Synthesized],
) -> None:
    for path, content in generate_all(s.outdir for s in all_synths).items():
        committed = json.loads(path.read_text())
        assert committed == content, f"run `make policies` and review the diff of {path.name}"


def _all_documents() -> list[tuple[str, dict[str, Any]]]:
    documents = [
        (f"{kind} {policy['name']}", policy["document"])
        for kind in POLICY_FILES
        for policy in load_policies(kind)
    ]
    documents += [(f"{kind} boundary", load_boundary(kind)["document"]) for kind in BOUNDARY_FILES]
    return documents


def test_every_action_of_every_committed_policy_is_a_real_iam_action() -> None:
    for name, document in _all_documents():
        assert unknown_actions(document) == [], name


def test_every_action_the_stacks_grant_their_roles_is_real(all_synths: list[Synthesized]) -> None:
    documents = 0
    for synthesized in all_synths:
        for stack in read_stacks(synthesized.outdir):
            for document in role_policy_documents(stack.template):
                documents += 1
                assert unknown_actions(document) == [], stack.name
    assert documents > 20


def test_a_planted_unknown_action_is_found() -> None:
    document = {
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:REST.PUT.OBJECT"], "Resource": "*"},
            {"Effect": "Allow", "Action": "s3:GetNothing*", "Resource": "*"},
        ]
    }
    assert unknown_actions(document) == ["s3:GetNothing*", "s3:REST.PUT.OBJECT"]


def test_make_policies_refuses_a_schema_name_iam_does_not_define() -> None:
    with pytest.raises(UnknownActionError, match=r"s3:REST\.GET\.OBJECT.*handler-actions\.toml"):
        real_actions(["s3:GetObject", "s3:REST.GET.OBJECT"], "AWS::Example handler")
    # Listed ones become the action AWS documents for the API.
    assert real_actions(["s3:DeleteBucketCors"], "x") == {"s3:PutBucketCORS"}
    assert real_actions(["s3:REST.PUT.OBJECT"], "x") == frozenset()


def test_no_administrator_access_and_no_star_on_star() -> None:
    for kind in POLICY_FILES:
        text = json.dumps(load_policies(kind))
        assert "AdministratorAccess" not in text
        for policy in load_policies(kind):
            for statement in policy["document"]["Statement"]:
                actions = actions_of(statement)
                assert "*" not in actions
                assert not any(action.endswith(":*") for action in actions), statement["Sid"]


def _policies(account: str, kind: AccountKind = "target") -> list[dict[str, Any]]:
    return execution_policies(account, kind)


def _decide(account: str, action: str, resource: str, **context: Any) -> str:
    call = Call(
        "stack",
        "Resource",
        account,
        f"arn:aws:iam::{account}:role/cdk-webapp-cfn-exec-role-{account}-eu-west-1",
        action,
        resource,
        tuple(sorted(context.items())),
    )
    return str(evaluate([call], {account: _policies(account)})[0]["decision"])


def test_roles_are_created_only_with_the_boundary_and_under_the_project_prefix() -> None:
    account = "222222222222"
    boundary = f"arn:aws:iam::{account}:policy/webapp-permissions-boundary"
    role = f"arn:aws:iam::{account}:role/webapp-staging-service-TaskRole-ABC"
    assert _decide(account, "iam:CreateRole", role, **{"iam:PermissionsBoundary": boundary}) == (
        "Allowed"
    )
    assert _decide(account, "iam:CreateRole", role) == "ImplicitlyDenied"
    other = f"arn:aws:iam::{account}:role/someone-else"
    assert _decide(account, "iam:CreateRole", other, **{"iam:PermissionsBoundary": boundary}) == (
        "ImplicitlyDenied"
    )
    assert _decide(account, "iam:DeleteRolePermissionsBoundary", role) == "ExplicitlyDenied"
    assert _decide(account, "iam:CreateUser", f"arn:aws:iam::{account}:user/x") == (
        "ImplicitlyDenied"
    )


def test_asset_reads_only_in_the_accounts_own_asset_buckets() -> None:
    account = "222222222222"
    own = f"arn:aws:s3:::cdk-webapp-assets-{account}-eu-west-1/code.zip"
    assert _decide(account, "s3:GetObject", own, **{"aws:ResourceAccount": account}) == "Allowed"
    # A bucket of that name owned by another account, and another qualifier's bucket.
    assert _decide(account, "s3:GetObject", own, **{"aws:ResourceAccount": "999999999999"}) == (
        "ImplicitlyDenied"
    )
    other = f"arn:aws:s3:::cdk-hnb659fds-assets-{account}-eu-west-1/code.zip"
    assert _decide(account, "s3:GetObject", other, **{"aws:ResourceAccount": account}) == (
        "ImplicitlyDenied"
    )


def test_rendered_policies_fit_iam_size_limit() -> None:
    for kind in POLICY_FILES:
        for policy in load_policies(kind):
            document = render(
                policy["document"],
                partition="aws-us-gov",
                account="123456789012",
                project="p" * 20,
                qualifier="q" * 10,
            )
            assert len(json.dumps(document, separators=(",", ":"))) <= 6144


@pytest.mark.parametrize("stage", ["staging", "prod"])
def test_every_stage_role_carries_the_permissions_boundary(
    default_synth: Synthesized, stage: str
) -> None:
    deployment = default_synth.stage(stage)
    account = deployment.account
    roles = 0
    for stack in deployment.stacks:
        for role in Template.from_stack(stack).find_resources("AWS::IAM::Role").values():
            roles += 1
            assert (
                role["Properties"]["PermissionsBoundary"]
                == f"arn:aws:iam::{account}:policy/webapp-permissions-boundary"
            )
    assert roles >= 4


def test_every_pipeline_role_carries_the_pipeline_boundary(default_synth: Synthesized) -> None:
    roles = Template.from_stack(default_synth.stack).find_resources("AWS::IAM::Role")
    assert len(roles) >= 10
    for role in roles.values():
        assert role["Properties"]["PermissionsBoundary"] == (
            "arn:aws:iam::111111111111:policy/webapp-pipeline-permissions-boundary"
        )


def test_boundaries_deny_identity_changes() -> None:
    for kind in BOUNDARY_FILES:
        boundary = load_boundary(kind)
        deny = next(s for s in boundary["document"]["Statement"] if s["Effect"] == "Deny")
        assert "iam:*" in deny["Action"] and deny["Resource"] == "*"
        allows = [
            a
            for s in boundary["document"]["Statement"]
            if s["Effect"] == "Allow"
            for a in actions_of(s)
        ]
        assert not any(a == "*" or a.endswith(":*") for a in allows)


# A role's grant as the boundary test evaluates it: the role's ARN, the action, the resource it is
# used on, and the request context AWS sends with it.
Grant = tuple[str, str, str, tuple[tuple[str, str], ...]]

# The AWS managed policies the stacks attach to their roles, as AWS publishes them (AWS Managed
# Policy Reference, version noted): (actions, resource) per statement. A role that attaches one not
# listed here fails the boundary test until someone copies it in.
AWS_MANAGED_POLICIES: dict[str, list[tuple[tuple[str, ...], str]]] = {
    # v1: https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSLambdaBasicExecutionRole.html
    "service-role/AWSLambdaBasicExecutionRole": [
        (("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"), "*"),
    ],
    # v3: https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSLambdaVPCAccessExecutionRole.html
    "service-role/AWSLambdaVPCAccessExecutionRole": [
        (
            (
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "ec2:CreateNetworkInterface",
                "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeSubnets",
                "ec2:DeleteNetworkInterface",
                "ec2:AssignPrivateIpAddresses",
                "ec2:UnassignPrivateIpAddresses",
            ),
            "*",
        ),
    ],
    # https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AmazonECSInfrastructureRolePolicyForLoadBalancers.html
    # The read, target-group and listener statements as published (v2; the page shows v6 now);
    # ModifyRule's on application load balancer rules, whose text was not readable here.
    "AmazonECSInfrastructureRolePolicyForLoadBalancers": [
        (
            (
                "elasticloadbalancing:DescribeListeners",
                "elasticloadbalancing:DescribeRules",
                "elasticloadbalancing:DescribeTargetGroups",
                "elasticloadbalancing:DescribeTargetHealth",
            ),
            "*",
        ),
        (
            ("elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"),
            "arn:aws:elasticloadbalancing:*:*:targetgroup/*/*",
        ),
        (
            ("elasticloadbalancing:ModifyListener",),
            "arn:aws:elasticloadbalancing:*:*:listener/app/*/*/*",
        ),
        (
            ("elasticloadbalancing:ModifyListener",),
            "arn:aws:elasticloadbalancing:*:*:listener/net/*/*/*",
        ),
        (
            ("elasticloadbalancing:ModifyRule",),
            "arn:aws:elasticloadbalancing:*:*:listener-rule/app/*/*/*/*",
        ),
    ],
}
MANAGED_POLICY_PREFIX = ":iam::aws:policy/"


def _refers_to(value: Any, logical_id: str) -> bool:
    return value in ({"Ref": logical_id}, {"Fn::GetAtt": [logical_id, "Arn"]})


def _logical_id(value: Any) -> str | None:
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    return None


def _target(resources: _Resources, value: Any, arn_of_id: str) -> Target:
    """A resource a property names: the template's own (with its tags) or one it imports by id."""
    logical_id = _logical_id(value)
    if logical_id is not None and logical_id in resources.resources:
        target = resources.target(logical_id)
        assert target is not None, f"{logical_id} has no ARN"
        return target
    return Target(arn_of_id.format(id=resources.render(value)))


def _uses(resources: _Resources, role: str) -> list[Target]:
    """The resources AWS acts on with `role` where its policies grant on "*": the function's log
    group and, for a function in a VPC, the network interfaces Lambda creates with the function's
    role in its subnets and security groups (untagged: Lambda does not tag them)
    (https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html); the target groups,
    listener rules and their listeners ECS shifts traffic between with a service's
    load-balancer role (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/AmazonECSInfrastructureRolePolicyForLoadBalancers.html)."""
    stack = resources.stack
    prefix = f"arn:{stack.partition}:ec2:{stack.region}:{stack.account}:"
    uses: list[Target] = []
    for logical_id, resource in resources.resources.items():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::Lambda::Function" and _refers_to(properties.get("Role"), role):
            group = properties.get("LoggingConfig", {}).get("LogGroup")
            if group is not None:
                uses.append(_target(resources, group, "{id}"))
            else:  # Lambda's own log group for the function, which it creates untagged
                name = resources.name(logical_id)
                uses.append(
                    Target(
                        f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:"
                        f"log-group:/aws/lambda/{name}"
                    )
                )
            vpc = properties.get("VpcConfig")
            if vpc:
                uses.append(Target(prefix + "network-interface/eni-0123456789abcdef0"))
                uses += [_target(resources, s, prefix + "subnet/{id}") for s in vpc["SubnetIds"]]
                uses += [
                    _target(resources, g, prefix + "security-group/{id}")
                    for g in vpc.get("SecurityGroupIds", [])
                ]
        if resource["Type"] == "AWS::ECS::Service":
            for balancer in properties.get("LoadBalancers", []):
                advanced = balancer.get("AdvancedConfiguration", {})
                if not _refers_to(advanced.get("RoleArn"), role):
                    continue
                named = [
                    balancer.get("TargetGroupArn"),
                    advanced.get("AlternateTargetGroupArn"),
                    advanced.get("ProductionListenerRule"),
                    advanced.get("TestListenerRule"),
                ]
                for value in named:
                    rule = _logical_id(value)
                    if rule is None:
                        continue
                    uses.append(_target(resources, value, "{id}"))
                    listener = resources.resources[rule].get("Properties", {}).get("ListenerArn")
                    if listener is not None:
                        uses.append(_target(resources, listener, "{id}"))
    return uses


def _with_context(
    resources: _Resources, tags: dict[str, tuple[tuple[str, str], ...]], grant: tuple[str, str, str]
) -> Grant:
    """The request context AWS sends: the role's ARN (aws:PrincipalArn, in every signed request:
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-principalarn),
    the resource's tags where the action supports aws:ResourceTag, and the bucket's account where
    it supports s3:ResourceAccount (the stack's own)."""
    role, action, resource = grant
    entry = iam_data.action(action)
    keys = set(entry.condition_keys) if entry is not None else set()
    resource_type = iam_data.classify(resource) if resource != "*" else None
    if resource_type is not None:
        keys |= set(resource_type.condition_keys)
    context: list[tuple[str, str]] = [("aws:PrincipalArn", role)]
    if "aws:ResourceTag/${TagKey}" in keys:
        context += [(f"aws:ResourceTag/{k}", v) for k, v in tags.get(resource, ())]
    if "s3:ResourceAccount" in keys:
        context.append(("s3:ResourceAccount", resources.stack.account))
    return role, action, resource, tuple(context)


def _role_grants(stack: StackTemplate) -> list[Grant]:
    """What the stack's own policies give each of its roles: (role, action, resource, context) of
    every Allow, with wildcards in actions expanded to the real actions they name; AWS managed
    policies attached to a role count on the resources AWS uses them on (_uses)."""
    resources = _Resources(stack)
    roles = {
        logical_id: resources.arn(logical_id) or ""
        for logical_id, r in resources.resources.items()
        if r["Type"] == "AWS::IAM::Role"
    }
    tags: dict[str, tuple[tuple[str, str], ...]] = {}
    for logical_id in resources.resources:
        if resources.own_type(logical_id) is not None:
            target = resources.target(logical_id)
            if target is not None:
                tags[target.arn] = target.tags
                tags[target.arn + ":*"] = target.tags  # a log group's Arn attribute
    default_role = f"arn:{stack.partition}:iam::{stack.account}:role/a-stage-role"
    grants: list[tuple[str, str, str]] = []
    for logical_id, resource in resources.resources.items():
        properties = resource.get("Properties", {})
        documents: list[tuple[list[str], dict[str, Any]]] = []
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            attached = [_logical_id(r) for r in properties.get("Roles", [])]
            principals = [roles[r] for r in attached if r in roles] or [default_role]
            documents.append((principals, properties["PolicyDocument"]))
        elif resource["Type"] == "AWS::IAM::Role":
            documents += [
                ([roles[logical_id]], p["PolicyDocument"]) for p in properties.get("Policies", [])
            ]
            for managed in properties.get("ManagedPolicyArns", []):
                arn = resources.render(managed) or ""
                name = arn.split(MANAGED_POLICY_PREFIX, 1)[-1]
                assert MANAGED_POLICY_PREFIX in arn and name in AWS_MANAGED_POLICIES, (
                    f"{stack.name} {logical_id} attaches {arn}: copy its statements into "
                    "AWS_MANAGED_POLICIES (tests/policies/test_execution_policy.py)"
                )
                uses = _uses(resources, logical_id)
                for actions, pattern in AWS_MANAGED_POLICIES[name]:
                    for action in actions:
                        entry = iam_data.action(action)
                        assert entry is not None, action
                        if not entry.resource_types:
                            grants.append((roles[logical_id], action, "*"))
                            continue
                        for use in uses:
                            concrete = _example(action, use.arn) or (
                                _example(action, use.arn + ":*")
                                if action.startswith("logs:")
                                else None
                            )
                            if concrete is not None and fnmatch.fnmatchcase(concrete, pattern):
                                grants.append((roles[logical_id], action, concrete))
                                tags.setdefault(concrete, use.tags)
        for principals, document in documents:
            grants += _document_grants(resources, principals, document, identity=True)
    for policy in resource_policy_grants(stack.template):
        for statement in policy["Statement"]:
            principal = resources.render(statement["Principal"].get("AWS")) or default_role
            document = {"Statement": [statement]}
            grants += _document_grants(resources, [principal], document, identity=False)
    return [_with_context(resources, tags, g) for g in dict.fromkeys(grants)]


def _document_grants(
    resources: _Resources, principals: list[str], document: dict[str, Any], identity: bool
) -> list[tuple[str, str, str]]:
    rendered = json.loads(resources.render_document(document) or "{}")
    grants: list[tuple[str, str, str]] = []
    for statement in rendered["Statement"]:
        if statement["Effect"] != "Allow":
            continue
        targets = statement["Resource"]
        for pattern in actions_of(statement):
            if "*" in pattern and not identity:
                # A wildcard in a bucket or key policy (CDK's auto-delete grants s3:List*)
                # says what the role may use there, not what it uses; the boundary is
                # judged on the named actions of resource policies.
                continue
            names = iam_data.expand(pattern) if "*" in pattern else [pattern]
            for name in names:
                for target in targets if isinstance(targets, list) else [targets]:
                    for concrete in _uses_of(resources, name, target):
                        grants += [(principal, name, concrete) for principal in principals]
    return grants


def _uses_of(resources: _Resources, action: str, target: str) -> list[str]:
    """Where a role uses a grant: its resource; for a grant on "*" of an action that IAM
    authorizes on resources, the stack's own resources of those types, if it has any (CDK grants the pipeline
    role every key on "*" for the cross-region replication keys, which carry the project tag as
    the stack's own keys do)."""
    concrete = _example(action, target)
    entry = iam_data.action(action)
    if target != "*" or entry is None or not entry.resource_types:
        return [concrete] if concrete is not None else []
    own = []
    for logical_id in resources.resources:
        if resources.own_type(logical_id) is not None:
            arn = resources.arn(logical_id)
            if arn is not None and _applies(action, arn):
                own.append(arn)
    # Nothing of the stack's own fits: judged on "*", which a scoped boundary denies.
    return own or ["*"]


def _example(action: str, arn: str) -> str | None:
    """The resource a granted `action` is used on, where a grant names a pattern: a log group's
    `:*` covers its streams (`:log-stream:...`), a bucket's `/*` its objects. None when IAM does
    not apply the action to that resource at all."""
    if _applies(action, arn):
        return arn
    if arn.endswith(":*") and action.startswith("logs:"):
        stream = arn[:-1] + "log-stream:example"
        return stream if _applies(action, stream) else None
    if arn.endswith("/*"):
        item = arn[:-1] + "example"
        return item if _applies(action, item) else None
    return None


def _applies(action: str, arn: str) -> bool:
    """Whether IAM applies a statement's `action` to its resource `arn`: a statement that grants
    actions on a bucket and on its objects grants each action only on the ARNs of its type."""
    entry = iam_data.action(action)
    if arn == "*" or entry is None:
        return arn == "*"
    if not entry.resource_types:  # actions IAM authorizes on "*" only
        return False
    resource_type = iam_data.classify(arn)
    if resource_type is None:
        return "*" in arn  # a pattern no single type describes: the evaluator decides
    return resource_type.service == entry.service and resource_type.key in dict(
        entry.resource_types
    )


def _boundary_blocked(
    stacks: list[StackTemplate], kind: AccountKind, project: str, qualifier: str
) -> tuple[int, list[str]]:
    """What the `kind` boundary would deny of the grants the `stacks` give their roles: the
    number of calls evaluated, and one line per denied call."""
    calls: list[Call] = []
    policies: dict[str, list[dict[str, Any]]] = {}
    for stack in stacks:
        policies[stack.account] = boundary_policy(
            stack.account, kind, project=project, qualifier=qualifier, partition=stack.partition
        )
        calls += [
            Call(
                stack.name,
                "role policy",
                stack.account,
                role,
                action,
                resource,
                context,
                default_key_policy(stack.account) if action.startswith("kms:") else None,
            )
            for role, action, resource, context in _role_grants(stack)
        ]
    calls = list(dict.fromkeys(calls))
    decisions = evaluate(calls, policies)
    blocked = [
        f"{c.stack}: {c.principal.split('/')[-1]}: {c.action} on {c.resource}: "
        f"{d['decision']} {d.get('error', '')} {'; '.join(d.get('why', []))}"
        for c, d in zip(calls, decisions, strict=True)
        if d["decision"] != "Allowed"
    ]
    return len(calls), blocked


@pytest.mark.parametrize("kind", ["target", "pipeline"])
def test_the_boundary_lets_every_role_do_what_its_policies_grant(
    all_synths: list[Synthesized], kind: AccountKind
) -> None:
    blocked: list[str] = []
    evaluated = 0
    for synthesized in all_synths:  # one config at a time: configs share account ids
        pipeline = synthesized.config.pipeline
        stacks = [
            stack
            for stack in read_stacks(synthesized.outdir)
            if (stack.account == pipeline.account) == (kind == "pipeline")
        ]
        count, denied = _boundary_blocked(stacks, kind, pipeline.project, pipeline.qualifier)
        evaluated += count
        blocked += denied
    assert evaluated > 50
    assert blocked == [], "the permissions boundary would deny:\n" + "\n".join(sorted(blocked))


def test_the_boundary_check_can_fail() -> None:
    """The check above, on a planted grant no boundary allows."""
    stack = StackTemplate(
        "webapp-staging-service",
        "222222222222",
        "eu-west-1",
        {
            "Resources": {
                "Policy": {
                    "Type": "AWS::IAM::Policy",
                    "Properties": {
                        "PolicyDocument": {
                            "Statement": [
                                {"Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": "*"}
                            ]
                        }
                    },
                }
            }
        },
    )
    count, blocked = _boundary_blocked([stack], "target", "webapp", "webapp")
    assert count == 1
    assert len(blocked) == 1 and "dynamodb:PutItem on *: ImplicitlyDenied" in blocked[0]


@pytest.mark.parametrize(
    ("action", "own", "foreign"),
    [
        (
            "logs:DeleteLogGroup",
            "log-group:webapp-staging-service-WebLogs-ABC",
            "log-group:billing-logs",
        ),
        (
            "logs:PutRetentionPolicy",
            "log-group:aws-waf-logs-webapp-prod-service-1a2b",
            "log-group:aws-waf-logs-billing",
        ),
        ("sns:SetTopicAttributes", "webapp-staging-service-Topic-ABC", "billing-alerts"),
        ("sns:Subscribe", "webapp-pipeline-Topic-ABC", "billing-alerts"),
        ("cloudwatch:DeleteAlarms", "alarm:webapp-staging-service-Alarm-ABC", "alarm:billing-5xx"),
    ],
)
def test_log_groups_topics_and_alarms_only_by_the_project_names(
    action: str, own: str, foreign: str
) -> None:
    account = "222222222222"
    service = action.split(":")[0]
    region = "eu-west-1"

    def arn(name: str) -> str:
        return f"arn:aws:{service}:{region}:{account}:{name}"

    context = {"aws:ResourceAccount": account}
    assert _decide(account, action, arn(own), **context) == "Allowed"
    assert _decide(account, action, arn(foreign), **context) == "ImplicitlyDenied"


@pytest.mark.parametrize(
    "action",
    ["iam:UpdateAssumeRolePolicy", "iam:DeleteRole", "iam:UpdateRole", "iam:PutRolePolicy"],
)
def test_a_project_named_role_without_the_boundary_cannot_be_changed(action: str) -> None:
    """`webapp-legacy`, made by hand without the boundary, matches the name prefix: its trust,
    permissions and existence stay out of the pipeline's reach."""
    account = "222222222222"
    legacy = f"arn:aws:iam::{account}:role/webapp-legacy"
    boundary = f"arn:aws:iam::{account}:policy/webapp-permissions-boundary"
    assert _decide(account, action, legacy) == "ImplicitlyDenied"
    assert _decide(account, action, legacy, **{"iam:PermissionsBoundary": boundary}) == "Allowed"


def test_a_bucket_of_the_project_name_in_another_account_is_out_of_reach() -> None:
    """Bucket names are global: `webapp-data` may belong to anyone."""
    account = "222222222222"
    bucket = "arn:aws:s3:::webapp-data"
    own = {"aws:ResourceAccount": account, "s3:ResourceAccount": account}
    foreign = {"aws:ResourceAccount": "999999999999", "s3:ResourceAccount": "999999999999"}
    for action in ("s3:PutBucketPolicy", "s3:DeleteBucket", "s3:PutBucketAcl"):
        assert _decide(account, action, bucket, **own) == "Allowed", action
        assert _decide(account, action, bucket, **foreign) == "ImplicitlyDenied", action


@pytest.mark.parametrize(
    ("action", "own", "foreign"),
    [
        (
            "ecr:BatchGetImage",
            "ecr:eu-west-1:{a}:repository/cdk-webapp-container-assets-{a}-eu-west-1",
            "ecr:eu-west-1:{a}:repository/billing-api",
        ),
        (
            "logs:PutLogEvents",
            "logs:eu-west-1:{a}:log-group:webapp-staging-service-WebLogs-ABC:log-stream:web/1",
            "logs:eu-west-1:{a}:log-group:billing:log-stream:1",
        ),
        (
            "logs:CreateLogStream",
            "logs:eu-west-1:{a}:log-group:/aws/lambda/webapp-staging-service-Hook-ABC:log-stream:1",
            "logs:eu-west-1:{a}:log-group:/aws/lambda/billing-hook:log-stream:1",
        ),
    ],
)
def test_the_boundary_keeps_stage_roles_to_the_projects_images_and_logs(
    action: str, own: str, foreign: str
) -> None:
    assert _under_boundary(action, own, None) == "Allowed"
    assert _under_boundary(action, foreign, None) == "ImplicitlyDenied"


def _unconditioned_star_grants(document: dict[str, Any]) -> set[str]:
    return {
        action
        for statement in document["Statement"]
        if statement["Effect"] == "Allow"
        and statement["Resource"] in ("*", ["*"])
        and "Condition" not in statement
        for action in actions_of(statement)
    }


def test_nothing_mutating_is_granted_on_star_without_a_condition_but_the_documented_list() -> None:
    """Reads may stay on "*"; a mutating action there must be one AWS authorizes only on "*",
    listed in handler-actions.toml with why and the page that says so."""
    documented = star_only_actions()
    granted: set[str] = set()
    for kind in POLICY_FILES:
        for policy in load_policies(kind):
            granted |= _unconditioned_star_grants(policy["document"])
    mutating = {a for a in granted if (iam_data.action(a) or _NO).access_level not in READ_ONLY}
    assert mutating == set(documented), (
        f"undocumented: {sorted(mutating - set(documented))}; "
        f"documented but not granted: {sorted(set(documented) - mutating)}"
    )
    for kind in BOUNDARY_FILES:
        boundary = _unconditioned_star_grants(load_boundary(kind)["document"])
        changes = sorted(
            a
            for a in boundary
            if any((iam_data.action(r) or _NO).access_level not in READ_ONLY for r in _real(a))
        )
        assert changes == [], f"{kind} boundary allows changes on '*' without a condition"
    for action, entry in documented.items():
        assert not (iam_data.action(action) or _NO).resource_types, f"{action} has resource types"
        assert entry["reason"] and entry["source"].startswith("https://docs.aws.amazon.com/")


_NO = iam_data.Action("", "", (), ())


def _real(action: str) -> list[str]:
    return iam_data.expand(action) if "*" in action else [action]


def test_a_planted_mutating_star_grant_is_refused() -> None:
    """The generator refuses a mutating "*"-only action nobody documented."""
    from policies.execution_policy import _Facts, _scoped_statements

    with pytest.raises(UnknownActionError, match="ecs:PutAccountSetting"):
        _scoped_statements("ecs", {"ecs:PutAccountSetting"}, _Facts.of({"AWS::ECS::Cluster"}))


def test_dropped_actions_serve_properties_no_template_sets(all_synths: list[Synthesized]) -> None:
    """handler-actions.toml [[unused]] drops a schema's action for a property the stacks do not
    use; if a template starts using it, this fails (and so would the deploy)."""
    from policies.execution_policy import _handler_data

    entries = [e for e in _handler_data()["unused"] if "property" in e]
    assert entries
    for synthesized in all_synths:
        for stack in read_stacks(synthesized.outdir):
            for resource in stack.template["Resources"].values():
                for entry in entries:
                    if resource["Type"] == entry["type"]:
                        assert entry["property"] not in resource.get("Properties", {}), entry


def test_each_creating_call_is_one_its_create_handler_makes() -> None:
    for kind, action in CREATES.items():
        handlers = handler_actions(kind)
        assert action.lower() in {a.lower() for a in handlers["create"]}, (kind, action)


BOUNDARY_ACCOUNT = "222222222222"
STAGE_ROLE = (
    f"arn:aws:iam::{BOUNDARY_ACCOUNT}:role/webapp-staging-service-WebServiceGreenTargetRo-AB12"
)
# CDK's handler that closes the VPC's default security group (CloudFormation's generated name).
DEFAULT_SG_HANDLER = (
    f"arn:aws:iam::{BOUNDARY_ACCOUNT}:role/webapp-staging-service-CustomVpcRestrictDefaultSGCu-AB12"
)


def _under_boundary(
    action: str, resource: str, tag: str | None, principal: str = STAGE_ROLE
) -> str:
    """The boundary's decision for a stage role calling `action` on `resource`, whose project
    tag is `tag` (None: untagged), with the context AWS sends (aws:PrincipalArn always)."""
    context: tuple[tuple[str, str], ...] = (("aws:PrincipalArn", principal),)
    if tag is not None:
        context += (("aws:ResourceTag/project", tag),)
    arn = f"arn:aws:{resource}".format(a=BOUNDARY_ACCOUNT)
    # A KMS key is usable only where its key policy lets IAM policies decide (the default).
    key_policy = default_key_policy(BOUNDARY_ACCOUNT) if action.startswith("kms:") else None
    call = Call("s", "role", BOUNDARY_ACCOUNT, principal, action, arn, context, key_policy)
    decision = evaluate([call], {BOUNDARY_ACCOUNT: boundary_policy(BOUNDARY_ACCOUNT)})[0]
    return str(decision["decision"])


LISTENER = (
    "elasticloadbalancing:eu-west-1:{a}:listener/app/webapp-lb/50dc6c495c0c9188/f2f7dc8efc522ab2"
)
RULE = (
    "elasticloadbalancing:eu-west-1:{a}:listener-rule/app/webapp-lb/50dc6c495c0c9188/"
    "f2f7dc8efc522ab2/9683b2d02a6cabee"
)
TARGET_GROUP = "elasticloadbalancing:eu-west-1:{a}:targetgroup/webapp-green/73e2d6bc24d8a067"
SECURITY_GROUP = "ec2:eu-west-1:{a}:security-group/sg-0123456789abcdef0"


@pytest.mark.parametrize(
    ("action", "resource"),
    [
        ("elasticloadbalancing:ModifyListener", LISTENER),
        ("elasticloadbalancing:ModifyRule", RULE),
        ("elasticloadbalancing:RegisterTargets", TARGET_GROUP),
        ("elasticloadbalancing:DeregisterTargets", TARGET_GROUP),
        ("ec2:CreateNetworkInterface", SECURITY_GROUP),
    ],
)
def test_load_balancer_and_security_group_changes_only_on_the_projects_tagged_resources(
    action: str, resource: str
) -> None:
    """The same ARN shape, told apart by the project tag alone: another team's listener, rule,
    target group or security group (tagged as theirs, or not tagged) is out of reach."""
    assert _under_boundary(action, resource, "webapp") == "Allowed"
    assert _under_boundary(action, resource, "billing") == "ImplicitlyDenied"
    assert _under_boundary(action, resource, None) == "ImplicitlyDenied"


@pytest.mark.parametrize(
    "action",
    [
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:AuthorizeSecurityGroupEgress",
        "ec2:RevokeSecurityGroupIngress",
        "ec2:RevokeSecurityGroupEgress",
    ],
)
def test_only_cdks_default_security_group_handler_changes_an_untagged_group(action: str) -> None:
    """The VPC's default security group cannot carry the tag (EC2 creates it with the VPC), so
    CDK's handler that closes it may change untagged groups; never another project's. No stage
    role changes the rules of the project's own (tagged) groups: CloudFormation does."""
    assert _under_boundary(action, SECURITY_GROUP, "webapp") == "ImplicitlyDenied"
    assert _under_boundary(action, SECURITY_GROUP, None, DEFAULT_SG_HANDLER) == "Allowed"
    assert _under_boundary(action, SECURITY_GROUP, "billing", DEFAULT_SG_HANDLER) == (
        "ImplicitlyDenied"
    )
    other_project = DEFAULT_SG_HANDLER.replace("role/webapp-", "role/billing-")
    assert _under_boundary(action, SECURITY_GROUP, None, other_project) == "ImplicitlyDenied"


@pytest.mark.parametrize(
    "action",
    [
        "ec2:CreateNetworkInterface",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    ],
)
def test_network_interfaces_only_in_the_account(action: str) -> None:
    """Lambda creates the VPC function's network interfaces untagged, so they are scoped by the
    account's ARNs; creating one also needs a project security group (the test above)."""
    own = "ec2:eu-west-1:{a}:network-interface/eni-0123456789abcdef0"
    assert _under_boundary(action, own, None) == "Allowed"
    foreign = own.replace("{a}", "999999999999")
    assert _under_boundary(action, foreign, None) == "ImplicitlyDenied"


@pytest.mark.parametrize(
    ("action", "resource"),
    [
        ("kms:Decrypt", "kms:eu-west-1:{a}:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
        ("kms:GenerateDataKey", "kms:eu-west-1:{a}:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
        ("sns:Publish", "sns:eu-west-1:{a}:webapp-staging-service-Alarms-ABC"),
        ("ssm:GetParameters", "ssm:eu-west-1:{a}:parameter/webapp/feature-flags"),
        ("secretsmanager:GetSecretValue", "secretsmanager:eu-west-1:{a}:secret:webapp/db-AbCdEf"),
        ("ec2:ModifyNetworkInterfaceAttribute", "ec2:eu-west-1:{a}:network-interface/eni-0123"),
    ],
)
def test_what_no_stage_role_is_granted_is_out_of_reach_even_on_the_projects_resources(
    action: str, resource: str
) -> None:
    """No stage role is granted these (the keys are used by the services' own principals: logs,
    CloudWatch alarms), so the boundary allows them on no key, topic, parameter or secret."""
    assert _under_boundary(action, resource, "webapp") == "ImplicitlyDenied"
    assert _under_boundary(action, resource, None) == "ImplicitlyDenied"


def test_the_boundary_allows_only_what_some_stage_role_is_granted(
    all_synths: list[Synthesized],
) -> None:
    granted: set[str] = set()
    for synthesized in all_synths:
        for stack in read_stacks(synthesized.outdir):
            if stack.account != synthesized.config.pipeline.account:
                granted |= {action for _, action, _, _ in _role_grants(stack)}
                for document in resource_policy_grants(stack.template):
                    for statement in document["Statement"]:
                        for pattern in actions_of(statement):
                            granted.update(
                                iam_data.expand(pattern) if "*" in pattern else [pattern]
                            )
    allowed = {
        action
        for statement in load_boundary("target")["document"]["Statement"]
        if statement["Effect"] == "Allow"
        for action in actions_of(statement)
    }
    assert allowed - granted == set(), "no stage role is granted these; drop them from the boundary"


def test_a_generated_name_keeps_the_stack_share_a_real_one_shows() -> None:
    """CloudFormation named the load balancer of stack `elife-xpub--staging`
    `elife-xpu-ElasticL-19CB72BN8E36S`: a 32-character name keeps 9 characters of the stack's."""
    name = generated_name("elife-xpub--staging", "ElasticLoadBalancer", "19CB72BN8E36S", 32)
    assert name == "elife-xpu-ElasticL-19CB72BN8E36S"
    assert generated_name("s", "Logical", "T" * 12, 32) == "s-Logical-TTTTTTTTTTTT"


@pytest.mark.parametrize("project", ["webapp", "platform-services", "abcdefghijklmnopqrst"])
def test_waf_reaches_the_load_balancer_cloudformation_names_for_any_project_name(
    project: str,
) -> None:
    """The web ACL association acts on the load balancer by name (WAF has no tag condition for
    it); the name keeps only the first characters of a long stack name."""
    account = "222222222222"
    policies = execution_policies(account, project=project, qualifier="q")
    stack = f"{project}-eu-staging-blue-service"
    ours = generated_name(stack, "WebLoadBalancer8E8983B1", "ABCDEFABCDEF", 32)
    lb = f"arn:aws:elasticloadbalancing:eu-west-1:{account}:loadbalancer/app/{{}}/50dc6c495c0c9188"
    calls = [
        Call("s", "r", account, f"arn:aws:iam::{account}:role/x", "wafv2:AssociateWebACL", arn)
        for arn in (lb.format(ours), lb.format("billing-WebLoadB-ABCDEFABCDEF"))
    ]
    decisions = [d["decision"] for d in evaluate(calls, {account: policies})]
    assert decisions == ["Allowed", "ImplicitlyDenied"], ours


def test_every_name_scoped_pattern_is_of_the_resource_type_it_is_listed_for() -> None:
    """NAME_SCOPED's ARN patterns, filled in, are ARNs of the catalogue type they scope (a typo
    in a pattern would silently grant nothing, or something else)."""
    for service, types in NAME_SCOPED.items():
        for key, patterns in types.items():
            for pattern in patterns:
                arn = render({"p": pattern}, **RENDER_VALUES)["p"].replace("*", "x1")
                found = iam_data.classify(arn)
                assert found is not None and found.key == key, (service, key, arn, found)


def test_codebuild_projects_are_tagged_only_in_create_and_update_project() -> None:
    """Why AWS::CodeBuild::Project is in TAGS_IN_CREATE_CALL although its schema has no tagging
    section: CodeBuild has no tagging action, and CreateProject takes the request's tags."""
    assert not iam_data.exists("codebuild:TagResource")
    for action in ("codebuild:CreateProject", "codebuild:UpdateProject"):
        assert "aws:RequestTag/${TagKey}" in (iam_data.action(action) or _NO).own_keys
    assert "AWS::CodeBuild::Project" in TAGS_IN_CREATE_CALL


RENDER_VALUES = {
    "partition": "aws",
    "account": "222222222222",
    "project": "webapp",
    "qualifier": "q",
}
