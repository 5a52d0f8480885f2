"""An S3 bucket that receives access logs (from load balancers and other buckets)."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct


class LogBucket(Construct):
    """Versioned, TLS-only, private bucket with lifecycle rules, for access logs.

    Encryption is SSE-S3 because neither ELB access logs nor S3 server access logs can be
    delivered to a bucket whose default encryption is SSE-KMS with a customer key.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        destroy = removal_policy == RemovalPolicy.DESTROY
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=True,
            removal_policy=removal_policy,
            auto_delete_objects=destroy,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireLogs",
                    expiration=Duration.days(365),  # a year of access logs, for audits
                    noncurrent_version_expiration=Duration.days(30),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                )
            ],
        )

    def receive_server_access_logs(
        self, source: s3.CfnBucket, source_arn: str, prefix: str
    ) -> None:
        """Turn on `source`'s server access logs into this bucket under `prefix`, and let S3
        deliver them (bucket-policy style). For buckets made elsewhere (CDK Pipelines' artifact
        bucket), whose L2 construct offers no way to add logging afterwards."""
        source.logging_configuration = s3.CfnBucket.LoggingConfigurationProperty(
            destination_bucket_name=self.bucket.bucket_name, log_file_prefix=prefix
        )
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid=f"S3ServerAccessLogs{prefix.strip('/').title().replace('-', '')}",
                principals=[iam.ServicePrincipal("logging.s3.amazonaws.com")],
                actions=["s3:PutObject"],
                resources=[self.bucket.arn_for_objects(f"{prefix}*")],
                conditions={
                    "ArnLike": {"aws:SourceArn": source_arn},
                    "StringEquals": {"aws:SourceAccount": Stack.of(self).account},
                },
            )
        )
