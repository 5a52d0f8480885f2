"""The stage's network: a VPC across the configured availability zones."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from components.keys import encrypted_log_group, log_encryption_key
from configuration import NetworkConfig
from configuration.model import PRIVATE_SUBNET_MASK, PUBLIC_SUBNET_MASK


class Network(Construct):
    """A VPC with public subnets (load balancer, NAT) and private subnets (tasks), flow logs on.

    It lives in the same stack as the service that uses it: a VPC in a stack of its own hands its
    ids to the service through CloudFormation exports, and CloudFormation refuses to change or
    remove an export that another stack imports, so changing `nat_gateways` or the zones would
    wedge the stage (docs/operations.md, "Changing the network"). The zones are the stack's
    (`availability_zones` from the config), so synthesis needs no context lookup.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        network: NetworkConfig,
        zones: int,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(network.cidr),
            max_azs=zones,
            nat_gateways=network.nat_gateways,
            # Remove the default security group's rules: nothing should rely on it.
            restrict_default_security_group=True,
            subnet_configuration=[
                # Only the load balancer and NAT gateways live here; both get their own public
                # addresses, so nothing launched here needs one assigned automatically.
                ec2.SubnetConfiguration(
                    name="Public",
                    subnet_type=ec2.SubnetType.PUBLIC,
                    cidr_mask=PUBLIC_SUBNET_MASK,
                    map_public_ip_on_launch=False,
                ),
                ec2.SubnetConfiguration(
                    name="Private",
                    subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS,
                    cidr_mask=PRIVATE_SUBNET_MASK,
                ),
            ],
        )
        flow_log_key = log_encryption_key(
            self,
            "FlowLogKey",
            description="Encrypts the VPC flow logs",
            removal_policy=removal_policy,
        )
        flow_log_group = encrypted_log_group(
            self, "FlowLogs", key=flow_log_key, removal_policy=removal_policy
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )
        # The addresses the private subnets reach the internet from: the deployment smoke test
        # (a Lambda function in the VPC) calls the test listener from these.
        self.nat_public_ips: list[str] = []
        for subnet in self.vpc.public_subnets:
            eip = subnet.node.try_find_child("EIP")
            if isinstance(eip, ec2.CfnEIP):
                self.nat_public_ips.append(eip.attr_public_ip)
