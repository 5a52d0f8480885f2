"""The web service component: the repo's container image on Fargate behind a load balancer."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from configuration import ServiceConfig

RUNTIME_DIR = Path(__file__).resolve().parent / "runtime"
HEALTH_PATH = "/healthz"


class WebService(Construct):
    """A Fargate service running `service/runtime` behind an internet-facing ALB.

    Tasks run in private subnets without public IPs and accept traffic only from the load
    balancer's security group.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster: ecs.ICluster,
        vpc: ec2.IVpc,
        service: ServiceConfig,
        service_name: str,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)

        image = ecr_assets.DockerImageAsset(
            self,
            "Image",
            directory=str(RUNTIME_DIR),
            platform=ecr_assets.Platform.LINUX_AMD64,
        )
        # The asset hash changes exactly when the image's inputs change: a release's identity.
        self.version = image.asset_hash[:12]

        key = kms.Key(
            self,
            "LogKey",
            description=f"Encrypts the {service_name} container logs",
            enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        log_group = logs.LogGroup(
            self,
            "Logs",
            encryption_key=key,
            retention=logs.RetentionDays.THREE_MONTHS,
            removal_policy=removal_policy,
        )

        task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            cpu=service.cpu,
            memory_limit_mib=service.memory,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        task_definition.add_container(
            "App",
            image=ecs.ContainerImage.from_docker_image_asset(image),
            port_mappings=[ecs.PortMapping(container_port=service.container_port)],
            environment={
                "PORT": str(service.container_port),
                "SERVICE_NAME": service_name,
                "SERVICE_VERSION": self.version,
            },
            logging=ecs.LogDrivers.aws_logs(stream_prefix="app", log_group=log_group),
            readonly_root_filesystem=True,
            user="10001:10001",
        )

        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=vpc,
            internet_facing=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            drop_invalid_header_fields=True,
        )
        listener = self.load_balancer.add_listener("HttpListener", port=80, open=True)

        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=cluster,
            task_definition=task_definition,
            desired_count=service.desired_count,
            assign_public_ip=False,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            min_healthy_percent=100,
            max_healthy_percent=200,
            health_check_grace_period=Duration.seconds(30),
        )
        listener.add_targets(
            "Service",
            port=service.container_port,
            protocol=elbv2.ApplicationProtocol.HTTP,
            targets=[self.service],
            deregistration_delay=Duration.seconds(30),
            health_check=elbv2.HealthCheck(
                path=HEALTH_PATH,
                interval=Duration.seconds(10),
                timeout=Duration.seconds(5),
                healthy_threshold_count=2,
                unhealthy_threshold_count=3,
            ),
        )
        self.url = f"http://{self.load_balancer.load_balancer_dns_name}"
