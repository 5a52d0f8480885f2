"""Customer-managed KMS keys that one AWS service may use, and log groups encrypted with them."""

from __future__ import annotations

from typing import Any

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

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
