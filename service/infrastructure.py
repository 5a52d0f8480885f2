"""The web service component: the repo's container image on Fargate behind a load balancer."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from components.log_key import log_encryption_key
from configuration import ServiceConfig

RUNTIME_DIR = Path(__file__).resolve().parent / "runtime"
HEALTH_PATH = "/healthz"


class WebService(Construct):
    """A Fargate service running `service/runtime` behind an internet-facing ALB.

    The ALB terminates TLS with the stage's ACM certificate (HTTP only redirects), or serves plain
    HTTP where the config records why; a WAF web ACL with AWS managed rules sits in front. Tasks
    run in private subnets without public IPs, as a non-root user on a read-only root filesystem,
    and accept traffic only from the load balancer's security group.
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
        production: bool,
        access_logs: s3.IBucket,
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

        key = log_encryption_key(
            self,
            "LogKey",
            description=f"Encrypts the {service_name} container and WAF logs",
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
            # Not secrets: a port, a name and the release id. Secrets go in `secrets=`.
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
            deletion_protection=production,
        )
        self.load_balancer.log_access_logs(access_logs, prefix="alb")

        if service.certificate_arn is not None:
            listener = self.load_balancer.add_listener(
                "HttpsListener",
                port=443,
                protocol=elbv2.ApplicationProtocol.HTTPS,
                certificates=[elbv2.ListenerCertificate.from_arn(service.certificate_arn)],
                ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
                open=True,
            )
            self.load_balancer.add_redirect(source_port=80, target_port=443)
            self.url = f"https://{self.load_balancer.load_balancer_dns_name}"
        else:
            listener = self.load_balancer.add_listener("HttpListener", port=80, open=True)
            self.url = f"http://{self.load_balancer.load_balancer_dns_name}"
        self.listener = listener

        # Tasks talk HTTPS only: to ECR, CloudWatch Logs and AWS APIs through the NAT gateways.
        # DNS and time reach the VPC's resolver and time service, which security groups do not
        # filter. Inbound traffic comes only from the load balancer (added by add_targets).
        self.security_group = ec2.SecurityGroup(
            self,
            "TaskSecurityGroup",
            vpc=vpc,
            description=f"{service_name} tasks: HTTPS out, load balancer in",
            allow_all_outbound=False,
        )
        self.security_group.add_egress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to AWS APIs and the image registry"
        )

        self.service = ecs.FargateService(
            self,
            "Service",
            security_groups=[self.security_group],
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

        self.web_acl = _web_acl(self, service_name)
        wafv2.CfnWebACLAssociation(
            self,
            "WebAclAssociation",
            resource_arn=self.load_balancer.load_balancer_arn,
            web_acl_arn=self.web_acl.attr_arn,
        )
        waf_logs = logs.LogGroup(
            self,
            "WebAclLogs",
            # WAF accepts only log groups whose name starts with this prefix.
            log_group_name=f"aws-waf-logs-{Stack.of(self).stack_name}",
            encryption_key=key,
            retention=logs.RetentionDays.THREE_MONTHS,
            removal_policy=removal_policy,
        )
        wafv2.CfnLoggingConfiguration(
            self,
            "WebAclLogging",
            resource_arn=self.web_acl.attr_arn,
            log_destination_configs=[
                Stack.of(self).format_arn(
                    service="logs",
                    resource="log-group",
                    resource_name=waf_logs.log_group_name,
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
        )


def _web_acl(scope: Construct, service_name: str) -> wafv2.CfnWebACL:
    """AWS managed rule groups for common exploits and known bad inputs, plus a rate limit."""

    def visibility(metric: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
        return wafv2.CfnWebACL.VisibilityConfigProperty(
            cloud_watch_metrics_enabled=True,
            metric_name=metric,
            sampled_requests_enabled=True,
        )

    def managed(priority: int, name: str) -> wafv2.CfnWebACL.RuleProperty:
        return wafv2.CfnWebACL.RuleProperty(
            name=name,
            priority=priority,
            override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
            statement=wafv2.CfnWebACL.StatementProperty(
                managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                    vendor_name="AWS", name=name
                )
            ),
            visibility_config=visibility(name),
        )

    rate_limit = wafv2.CfnWebACL.RuleProperty(
        name="RateLimitPerIp",
        priority=0,
        action=wafv2.CfnWebACL.RuleActionProperty(block={}),
        statement=wafv2.CfnWebACL.StatementProperty(
            rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                limit=2000, aggregate_key_type="IP"
            )
        ),
        visibility_config=visibility("RateLimitPerIp"),
    )
    return wafv2.CfnWebACL(
        scope,
        "WebAcl",
        scope="REGIONAL",
        default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
        visibility_config=visibility(f"{service_name}-web-acl"),
        rules=[
            rate_limit,
            managed(1, "AWSManagedRulesCommonRuleSet"),
            managed(2, "AWSManagedRulesKnownBadInputsRuleSet"),
            managed(3, "AWSManagedRulesAmazonIpReputationList"),
        ],
    )
