"""A customer-managed KMS key that CloudWatch Logs may use for the log groups of its account."""

from __future__ import annotations

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct


def log_encryption_key(
    scope: Construct, construct_id: str, *, description: str, removal_policy: RemovalPolicy
) -> kms.Key:
    """A rotating key whose policy lets CloudWatch Logs in this account and region use it.

    Without this statement, creating a log group encrypted with the key fails at deploy time
    ("KMS key ... is not allowed to be used"); CDK does not add it on its own.
    """
    stack = Stack.of(scope)
    key = kms.Key(
        scope,
        construct_id,
        description=description,
        enable_key_rotation=True,
        removal_policy=removal_policy,
    )
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="AllowCloudWatchLogsInThisAccount",
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
            actions=[
                "kms:Encrypt*",
                "kms:Decrypt*",
                "kms:ReEncrypt*",
                "kms:GenerateDataKey*",
                "kms:Describe*",
            ],
            resources=["*"],
            conditions={
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name="*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                }
            },
        )
    )
    return key
