"""The stage's one stack: its network (created or imported), an ECS cluster (created or imported)
and the web service."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from constructs import Construct

from components.log_bucket import LogBucket
from components.network import Network
from configuration import NetworkConfig, ReleaseConfig, ServiceConfig
from service.infrastructure import WebService


class ServiceStack(Stack):
    """Network, cluster and web service in one stack: the VPC is created here from the config,
    or looked up by `network.vpc_id`. Nothing crosses a stack boundary, so no CloudFormation
    export can block a change of the network (components/network.py).

    An imported cluster always comes with its VPC and is referred to by the name derived from
    its ARN: `Cluster.from_cluster_attributes` wants a name, and a cluster without a VPC cannot
    place Fargate tasks.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        network: NetworkConfig,
        availability_zones: list[str],
        service: ServiceConfig,
        release: ReleaseConfig,
        service_name: str,
        production: bool,
        removal_policy: RemovalPolicy,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self._zones = availability_zones
        vpc: ec2.IVpc
        self.network: Network | None = None
        test_sources: list[str] = []
        if network.vpc_id is None:
            self.network = Network(
                self,
                "Network",
                network=network,
                zones=len(availability_zones),
                removal_policy=removal_policy,
            )
            vpc, test_sources = self.network.vpc, self.network.nat_public_ips
        else:
            # Opted into importing an existing VPC: needs credentials or cdk.context.json.
            vpc = ec2.Vpc.from_lookup(self, "Vpc", vpc_id=network.vpc_id)

        cluster: ecs.ICluster
        if service.cluster_name is not None:
            cluster = ecs.Cluster.from_cluster_attributes(
                self,
                "Cluster",
                cluster_name=service.cluster_name,
                vpc=vpc,
                security_groups=[],
            )
        else:
            cluster = ecs.Cluster(
                self,
                "Cluster",
                vpc=vpc,
                container_insights_v2=ecs.ContainerInsights.ENABLED,
            )

        access_logs = LogBucket(self, "AccessLogs", removal_policy=removal_policy)
        self.web = WebService(
            self,
            "Web",
            cluster=cluster,
            vpc=vpc,
            service=service,
            release=release,
            test_sources=test_sources,
            service_name=service_name,
            production=production,
            access_logs=access_logs.bucket,
            removal_policy=removal_policy,
        )
        CfnOutput(
            self, "ServiceUrl", value=self.web.url, description="Public endpoint of the service"
        )
        self.dns_output = CfnOutput(
            self,
            "LoadBalancerDnsName",
            value=self.web.load_balancer.load_balancer_dns_name,
            description="Point the service's domain name here (alias or CNAME)",
        )
        self.version_output = CfnOutput(
            self, "ServiceVersion", value=self.web.version, description="The release deployed"
        )

    @property
    def availability_zones(self) -> list[str]:
        # Explicit zones from the config replace the context lookup Stack would otherwise do.
        return self._zones
