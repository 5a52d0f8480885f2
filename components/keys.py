"""Customer-managed KMS keys that one AWS service may use, and log groups encrypted with them."""

from __future__ import annotations

from typing import Any

from aws_cdk import ArnFormat, RemovalPolicy, Stack, Stage
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct, IConstruct

# One retention for every log group of the project: long enough to investigate a release.
LOG_RETENTION = logs.RetentionDays.THREE_MONTHS


def service_key(
    scope: Construct,
    construct_id: str,
    *,
    description: str,
    removal_policy: RemovalPolicy,
    sid: str,
    service: str,
    actions: list[str],
    conditions: dict[str, Any],
) -> kms.Key:
    """A rotating key whose policy lets `service` use it, under `conditions`.

    CDK does not add such statements on its own; without them the service's writes fail at
    deploy or run time ("KMS key ... is not allowed to be used").
    """
    key = kms.Key(
        scope,
        construct_id,
        description=description,
        enable_key_rotation=True,
        removal_policy=removal_policy,
    )
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid=sid,
            principals=[iam.ServicePrincipal(service)],
            actions=actions,
            resources=["*"],
            conditions=conditions,
        )
    )
    return key


def publisher_key(
    scope: Construct,
    construct_id: str,
    *,
    description: str,
    removal_policy: RemovalPolicy,
    sid: str,
    service: str,
) -> kms.Key:
    """A key for an encrypted SNS topic that `service` publishes to from this account."""
    return service_key(
        scope,
        construct_id,
        description=description,
        removal_policy=removal_policy,
        sid=sid,
        service=service,
        actions=["kms:Decrypt", "kms:GenerateDataKey*"],
        conditions={"StringEquals": {"aws:SourceAccount": Stack.of(scope).account}},
    )


def log_encryption_key(
    scope: Construct, construct_id: str, *, description: str, removal_policy: RemovalPolicy
) -> kms.Key:
    """A key CloudWatch Logs in this account and region may use for its log groups."""
    stack = Stack.of(scope)
    return service_key(
        scope,
        construct_id,
        description=description,
        removal_policy=removal_policy,
        sid="AllowCloudWatchLogsInThisAccount",
        service=f"logs.{stack.region}.amazonaws.com",
        actions=[
            "kms:Encrypt*",
            "kms:Decrypt*",
            "kms:ReEncrypt*",
            "kms:GenerateDataKey*",
            "kms:Describe*",
        ],
        conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": log_group_arn(scope, "*")}},
    )


def log_group_arn(scope: Construct, name: str) -> str:
    """The ARN of log group `name` in this account and region, without the `:*` suffix that
    `LogGroup.log_group_arn` carries (the form WAF logging and KMS encryption contexts expect)."""
    return Stack.of(scope).format_arn(
        service="logs",
        resource="log-group",
        resource_name=name,
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


def encrypted_log_group(
    scope: Construct,
    construct_id: str,
    *,
    key: kms.IKey,
    removal_policy: RemovalPolicy,
    log_group_name: str | None = None,
) -> logs.LogGroup:
    """A log group encrypted with `key` (made by log_encryption_key), kept LOG_RETENTION."""
    return logs.LogGroup(
        scope,
        construct_id,
        log_group_name=log_group_name,
        encryption_key=key,
        retention=LOG_RETENTION,
        removal_policy=removal_policy,
    )


# AWS services the project's key and topic policies grant to, with the documentation of the
# condition keys each sets when it calls KMS or SNS on the account's behalf. Every such grant must
# carry `aws:SourceAccount` (the account the service acts for), so that the service cannot be used
# as a confused deputy by another account's resources
# (https://docs.aws.amazon.com/IAM/latest/UserGuide/confused-deputy.html).
SOURCE_ACCOUNT_SERVICES = {
    # Topic and key policies for notification rules: the documented policy carries
    # aws:SourceAccount.
    "codestar-notifications.amazonaws.com": (
        "https://docs.aws.amazon.com/dtconsole/latest/userguide/set-up-sns.html"
    ),
    # CloudWatch alarms publishing to an encrypted topic. The SNS guide's key policy carries no
    # condition; AWS's own accelerator grants it with aws:SourceAccount and aws:SourceArn and
    # says both are set (unlike EventBridge's). Not confirmed in a real account: docs/security.md
    # says how to check after the first deploy.
    "cloudwatch.amazonaws.com": (
        "https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html"
        "#compatibility-with-aws-services, "
        "https://aws.github.io/modern-data-architecture-accelerator/typedocs/functions/"
        "_aws-mdaa_cloudwatch-constructs.grantCloudWatchAlarmsTopicAccess.html"
    ),
}
# The documented exception: CloudWatch Logs binds a key to log groups through the encryption
# context, `kms:EncryptionContext:aws:logs:arn` (the log group's ARN, which names the account and
# region); that is the condition AWS's key policy for Logs uses, and it pins the grant to this
# account as aws:SourceAccount would.
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html
LOGS_CONTEXT_KEY = "kms:EncryptionContext:aws:logs:arn"
SOURCE_KEYS = ("aws:sourceaccount", "aws:sourcearn")


def _services(statement: dict[str, Any]) -> list[str]:
    principal = statement.get("Principal")
    if not isinstance(principal, dict) or "Service" not in principal:
        return []
    services = principal["Service"]
    return [services] if isinstance(services, str) else list(services)


def _condition_values(statement: dict[str, Any], key: str) -> list[Any]:
    """The values a statement's Condition gives `key` (case-insensitive), in any operator."""
    values: list[Any] = []
    for operands in (statement.get("Condition") or {}).values():
        for name, value in operands.items():
            if name.lower() == key.lower():
                values += value if isinstance(value, list) else [value]
    return values


def service_grant_problem(statement: dict[str, Any], account: str, region: str) -> str | None:
    """Why an Allow statement for an AWS service principal is not confined to `account`, or
    None when it is (or when it grants no service)."""
    services = _services(statement)
    if statement.get("Effect") != "Allow" or not services:
        return None
    if any(_condition_values(statement, key) for key in SOURCE_KEYS):
        wrong = [v for v in _condition_values(statement, "aws:SourceAccount") if str(v) != account]
        return f"aws:SourceAccount {wrong} is not {account}" if wrong else None
    if services == [f"logs.{region}.amazonaws.com"]:
        arns = _condition_values(statement, LOGS_CONTEXT_KEY)
        if arns and all(str(a).split(":")[3:5] == [region, account] for a in arns):
            return None
    return f"{', '.join(services)} is granted without aws:SourceAccount or aws:SourceArn"


def _stage_path(construct: IConstruct) -> str:
    stage = Stage.of(construct)
    return stage.node.path if stage is not None else ""


def confine_service_grants(scope: Construct) -> None:
    """Give every grant to an AWS service in the key and topic policies under `scope` an
    `aws:SourceAccount` condition of its own stack's account. CDK adds some such grants itself
    without one (a topic's grant to CodeStar Notifications, on the topic and its key), which a
    condition elsewhere in the policy does not cancel: statements are OR-ed.

    A service not in SOURCE_ACCOUNT_SERVICES fails here, at synth, until someone has checked
    which condition keys it sets."""
    from aws_cdk import aws_sns as sns

    stage = _stage_path(scope)
    for construct in scope.node.find_all():
        if _stage_path(construct) != stage:
            continue  # a nested stage is confined on its own, before it is synthesized
        if isinstance(construct, kms.CfnKey):
            prop = "key_policy"
        elif isinstance(construct, sns.CfnTopicPolicy):
            prop = "policy_document"
        else:
            continue
        stack = Stack.of(construct)
        document = stack.resolve(getattr(construct, prop))
        changed = False
        for statement in document.get("Statement", []):
            if service_grant_problem(statement, stack.account, stack.region) is None:
                continue
            unknown = [s for s in _services(statement) if s not in SOURCE_ACCOUNT_SERVICES]
            if unknown:
                raise ValueError(
                    f"{construct.node.path}: a grant to {', '.join(unknown)} has no "
                    "aws:SourceAccount/aws:SourceArn condition; check in AWS's documentation "
                    "which keys the service sets and add it to components/keys.py "
                    "SOURCE_ACCOUNT_SERVICES (or give the grant a condition)."
                )
            condition = statement.setdefault("Condition", {})
            condition.setdefault("StringEquals", {})["aws:SourceAccount"] = stack.account
            changed = True
        if changed:
            setattr(construct, prop, document)
