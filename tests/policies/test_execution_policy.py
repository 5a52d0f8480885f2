"""The execution policies and permissions boundaries: generated from the resource schemas, only
real IAM actions, least privilege where IAM allows it, and boundaries that let every role do what
its own policies grant (decided by the IAM policy evaluator, not by matching names)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from configuration import load_config
from policies import iam_data
from policies.deploy_check import Call, StackTemplate, _Resources, evaluate, read_stacks
from policies.execution_policy import (
    BOUNDARY_FILES,
    CREATES,
    POLICY_FILES,
    READ_ONLY,
    UnknownActionError,
    actions_of,
    generate_all,
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

from ..conftest import DEFAULT_CONFIG, Synthesized
from ..simulate import default_key_policy


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


def _policies(account: str, kind: str = "target") -> list[dict[str, Any]]:
    return [
        {
            "name": p["name"],
            "policy": render(
                p["document"],
                partition="aws",
                account=account,
                project="webapp",
                qualifier="webapp",
            ),
        }
        for p in load_policies(kind)  # type: ignore[arg-type]
    ]


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


def _role_grants(stack: StackTemplate) -> list[tuple[str, str]]:
    """(action, resource) of every Allow the stack's own policies give its roles, with wildcards
    in actions expanded to the real actions they name."""
    resources = _Resources(stack)
    grants: list[tuple[str, str]] = []
    identity = role_policy_documents(stack.template)
    for document in [*identity, *resource_policy_grants(stack.template)]:
        rendered = json.loads(resources.render_document(document) or "{}")
        for statement in rendered["Statement"]:
            if statement["Effect"] != "Allow":
                continue
            targets = statement["Resource"]
            for pattern in actions_of(statement):
                if "*" in pattern and document not in identity:
                    # A wildcard in a bucket or key policy (CDK's auto-delete grants s3:List*)
                    # says what the role may use there, not what it uses; the boundary is
                    # judged on the named actions of resource policies.
                    continue
                names = iam_data.expand(pattern) if "*" in pattern else [pattern]
                for name in names:
                    for target in targets if isinstance(targets, list) else [targets]:
                        concrete = _example(name, target)
                        if concrete is not None:
                            grants.append((name, concrete))
    return grants


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


@pytest.mark.parametrize("kind", ["target", "pipeline"])
def test_the_boundary_lets_every_role_do_what_its_policies_grant(
    all_synths: list[Synthesized], kind: str
) -> None:
    blocked: list[str] = []
    evaluated = 0
    for synthesized in all_synths:  # one config at a time: configs share account ids
        calls: list[Call] = []
        policies: dict[str, list[dict[str, Any]]] = {}
        pipeline_account = synthesized.config.pipeline.account
        for stack in read_stacks(synthesized.outdir):
            if (stack.account == pipeline_account) != (kind == "pipeline"):
                continue
            boundary = load_boundary(kind)  # type: ignore[arg-type]
            policies[stack.account] = [
                {
                    "name": "boundary",
                    "policy": render(
                        boundary["document"],
                        partition=stack.partition,
                        account=stack.account,
                        project=synthesized.config.pipeline.project,
                        qualifier=synthesized.config.pipeline.qualifier,
                    ),
                }
            ]
            principal = f"arn:{stack.partition}:iam::{stack.account}:role/a-stage-role"
            calls += [
                Call(
                    stack.name,
                    "role policy",
                    stack.account,
                    principal,
                    action,
                    resource,
                    (),
                    default_key_policy(stack.account) if action.startswith("kms:") else None,
                )
                for action, resource in _role_grants(stack)
            ]
        calls = list(dict.fromkeys(calls))
        evaluated += len(calls)
        decisions = evaluate(calls, policies)
        blocked += [
            f"{c.stack}: {c.action} on {c.resource}: {d['decision']} {d.get('error', '')}"
            for c, d in zip(calls, decisions, strict=True)
            if d["decision"] != "Allowed"
        ]
    assert evaluated > 50
    assert blocked == [], "the permissions boundary would deny:\n" + "\n".join(sorted(blocked))


def test_the_boundary_check_can_fail() -> None:
    account = "222222222222"
    stack = StackTemplate(
        "webapp-staging-service",
        account,
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
    grants = _role_grants(stack)
    boundary = render(
        load_boundary("target")["document"],
        partition="aws",
        account=account,
        project="webapp",
        qualifier=load_config(DEFAULT_CONFIG).pipeline.qualifier,
    )
    calls = [
        Call(stack.name, "p", account, f"arn:aws:iam::{account}:role/r", action, resource)
        for action, resource in grants
    ]
    decisions = evaluate(calls, {account: [{"name": "boundary", "policy": boundary}]})
    assert [d["decision"] for d in decisions] == ["ImplicitlyDenied"]


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
            "sns:Publish",
            "sns:eu-west-1:{a}:webapp-staging-service-Alarms-ABC",
            "sns:eu-west-1:{a}:billing-alerts",
        ),
        (
            "ssm:GetParameters",
            "ssm:eu-west-1:{a}:parameter/webapp/feature-flags",
            "ssm:eu-west-1:{a}:parameter/billing/db-password",
        ),
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
def test_the_boundary_keeps_stage_roles_to_the_projects_topics_parameters_images_and_logs(
    action: str, own: str, foreign: str
) -> None:
    account = "222222222222"
    boundary = render(
        load_boundary("target")["document"],
        partition="aws",
        account=account,
        project="webapp",
        qualifier="webapp",
    )

    def decide(resource: str) -> str:
        arn = "arn:aws:" + resource.format(a=account)
        call = Call("s", "role", account, f"arn:aws:iam::{account}:role/r", action, arn)
        return str(evaluate([call], {account: [{"name": "b", "policy": boundary}]})[0]["decision"])

    assert decide(own) == "Allowed"
    assert decide(foreign) == "ImplicitlyDenied"


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
    for action, entry in documented.items():
        assert not (iam_data.action(action) or _NO).resource_types, f"{action} has resource types"
        assert entry["reason"] and entry["source"].startswith("https://docs.aws.amazon.com/")


_NO = iam_data.Action("", "", (), ())


def test_a_planted_mutating_star_grant_is_refused() -> None:
    """The generator refuses a mutating "*"-only action nobody documented."""
    with pytest.raises(UnknownActionError, match="ecs:PutAccountSetting"):
        generate_statements_for_test({"ecs:PutAccountSetting"})


def generate_statements_for_test(actions: set[str]) -> None:
    from policies.execution_policy import _Facts, _scoped_statements

    _scoped_statements("ecs", actions, _Facts.of({"AWS::ECS::Cluster"}))


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
