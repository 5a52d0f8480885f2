"""The Lambda function ECS calls after shifting test traffic to green (service/smoke/hook.py)."""

from __future__ import annotations

import json
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from components.keys import encrypted_log_group
from configuration import ReleaseConfig

SMOKE_DIR = Path(__file__).resolve().parent / "smoke"
HANDLER_TIMEOUT = Duration.seconds(60)


class SmokeHook(Construct):
    """A Python function in the VPC's private subnets that probes green through the test
    listener; it may reach that one port and write its own logs, nothing else."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        host: str,
        scheme: str,
        server_name: str | None,
        expected_version: str,
        release: ReleaseConfig,
        log_key: kms.IKey,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="Deployment smoke test: out to the test listener only",
            allow_all_outbound=False,
        )
        # The test listener is reached at the load balancer's public address, through the NAT.
        self.security_group.add_egress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.tcp(release.test_port), "The test listener"
        )
        log_group = encrypted_log_group(self, "Logs", key=log_key, removal_policy=removal_policy)
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=lambda_.Runtime.PYTHON_3_14,
            architecture=lambda_.Architecture.ARM_64,
            # Only the two modules: caches that tools leave in the folder (mypy, pycache)
            # would change the asset hash and redeploy the function on every run.
            code=lambda_.Code.from_asset(
                str(SMOKE_DIR), exclude=["*", ".*", "!hook.py", "!probe.py"]
            ),
            handler="hook.handler",
            timeout=HANDLER_TIMEOUT,
            memory_size=256,
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[self.security_group],
            log_group=log_group,
            description="Smoke-tests green through the test listener before production traffic",
            environment={
                "TEST_HOST": host,
                "TEST_PORT": str(release.test_port),
                "TEST_SCHEME": scheme,
                "SERVER_NAME": server_name or "",
                "EXPECTED_VERSION": expected_version,
                "CHECKS": json.dumps([c.model_dump() for c in release.smoke_checks]),
                "TIMEOUT_SECONDS": "5",
                "ATTEMPTS": "3",
                "BACKOFF_SECONDS": "2",
                # ECS calls again every 15 s while green warms up: at most 6 rounds.
                "MAX_ROUNDS": "6",
                "CALLBACK_DELAY": "15",
            },
        )
        # The role ECS uses to call the hook. Created here rather than by ECS's construct, which
        # would add it only while synthesizing, after the stage's permissions boundary and
        # compliance acknowledgements have been applied.
        self.invoke_role = iam.Role(
            self,
            "InvokeRole",
            assumed_by=iam.ServicePrincipal("ecs.amazonaws.com"),
            description="ECS calls the deployment smoke-test hook",
        )
        self.function.grant_invoke(self.invoke_role)
