"""The web service component: the repo's container image on Fargate behind a load balancer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Aws, Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from components.keys import encrypted_log_group, log_encryption_key, log_group_arn
from configuration import ReleaseConfig, ServiceConfig
from service.monitoring import Monitoring
from service.smoke_hook import SmokeHook

RUNTIME_DIR = Path(__file__).resolve().parent / "runtime"
HEALTH_PATH = "/healthz"
# Release timing (docs/releases.md, "How long a release takes"): a task is healthy after two
# checks 5 s apart; a drained target is released after 10 s.
HEALTH_CHECK_INTERVAL_SECONDS = 5
HEALTHY_THRESHOLD = 2
UNHEALTHY_THRESHOLD = 2
DEREGISTRATION_DELAY_SECONDS = 10
HEALTH_CHECK_GRACE_SECONDS = 15


class WebService(Construct):
    """A Fargate service running `service/runtime` behind an internet-facing ALB, released with
    ECS's native blue/green (or canary, or linear) deployments.

    The ALB terminates TLS with the stage's ACM certificate (HTTP only redirects), or serves plain
    HTTP where the config records why; a WAF web ACL with AWS managed rules sits in front. A test
    listener, reachable only from the VPC's NAT addresses and configured networks, lets the
    lifecycle hook smoke-test green before it gets production traffic; deployment alarms and the
    circuit breaker roll a bad release back. Tasks run in private subnets without public IPs, as
    a non-root user on a read-only root filesystem.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster: ecs.ICluster,
        vpc: ec2.IVpc,
        service: ServiceConfig,
        release: ReleaseConfig,
        service_name: str,
        production: bool,
        access_logs: s3.IBucket,
        test_sources: list[str],
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
        log_group = encrypted_log_group(self, "Logs", key=key, removal_policy=removal_policy)

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
                **service.environment,
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

        # Blue and green: ECS moves the service between them on every release.
        self.blue = self._target_group("BlueTargetGroup", vpc, service.container_port)
        self.green = self._target_group("GreenTargetGroup", vpc, service.container_port)

        tls = service.certificate_arn is not None
        # How clients reach the service: the pipeline's public smoke test uses these too.
        self.scheme = "https" if tls else "http"
        self.port = 443 if tls else 80
        self.production_listener = self._listener(
            "HttpsListener" if tls else "HttpListener",
            port=self.port,
            certificate_arn=service.certificate_arn,
            open_to_world=True,
        )
        if tls:
            self.load_balancer.add_redirect(source_port=80, target_port=443)
        self.test_listener = self._listener(
            "TestListener",
            port=release.test_port,
            certificate_arn=service.certificate_arn,
            open_to_world=False,
        )
        # Who may reach the test listener: the VPC's NAT addresses (where the smoke-test function
        # calls from) and any configured networks, kept in one managed prefix list.
        sources = [Fn.join("", [ip, "/32"]) for ip in test_sources] + list(release.test_cidrs)
        # Never empty: a created VPC has at least one NAT gateway, and the config requires
        # test_cidrs with an imported VPC.
        assert sources, "the test listener needs at least one source"
        # (The L1 construct: the L2 one rejects addresses that are only known at deploy time.)
        prefix_list = ec2.CfnPrefixList(
            self,
            "TestListenerSources",
            prefix_list_name=f"{Stack.of(self).stack_name}-test-sources",
            address_family="IPv4",
            max_entries=len(sources),
            entries=[
                ec2.CfnPrefixList.EntryProperty(cidr=cidr, description="Smoke test source")
                for cidr in sources
            ],
        )
        self.test_listener.connections.allow_default_port_from(
            ec2.Peer.prefix_list(prefix_list.attr_prefix_list_id),
            "Deployment smoke test (NAT addresses of the VPC, configured networks)",
        )

        # The rules ECS rewrites during a release (to a weighted forward over blue and green).
        # Their template depends only on the listeners and the blue group, never on the image,
        # task size, count or environment, so routine releases leave them untouched
        # (aws/aws-cdk#36649: a CloudFormation update of a rule after a release can send traffic
        # back to an empty target group). docs/releases.md: "Changing the listener rules".
        self.production_rule = self._rule("ProductionRule", self.production_listener)
        self.test_rule = self._rule("TestRule", self.test_listener)

        host = service.domain_name or self.load_balancer.load_balancer_dns_name
        self.url = f"{self.scheme}://{host}"

        self.monitoring = Monitoring(
            self,
            "Monitoring",
            load_balancer=self.load_balancer,
            target_groups=[self.blue, self.green],
            release=release,
            removal_policy=removal_policy,
        )
        self.smoke_hook = SmokeHook(
            self,
            "SmokeHook",
            vpc=vpc,
            host=self.load_balancer.load_balancer_dns_name,
            scheme=self.scheme,
            server_name=service.domain_name,
            expected_version=self.version,
            release=release,
            log_key=key,
            removal_policy=removal_policy,
        )

        # Tasks talk HTTPS only: to ECR, CloudWatch Logs and AWS APIs through the NAT gateways.
        # DNS and time reach the VPC's resolver and time service, which security groups do not
        # filter. Inbound traffic comes only from the load balancer.
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
            **_strategy(release),
            bake_time=Duration.minutes(release.bake_minutes),
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            deployment_alarms=ecs.DeploymentAlarmConfig(
                alarm_names=[alarm.alarm_name for alarm in self.monitoring.alarms],
                behavior=ecs.AlarmBehavior.ROLLBACK_ON_ALARM,
            ),
            lifecycle_hooks=[
                ecs.DeploymentLifecycleLambdaTarget(
                    self.smoke_hook.function,
                    "SmokeTestGreen",
                    lifecycle_stages=[ecs.DeploymentLifecycleStage.POST_TEST_TRAFFIC_SHIFT],
                    role=self.smoke_hook.invoke_role,
                )
            ],
            min_healthy_percent=100,
            max_healthy_percent=200,
            # The container answers within a second; two 5 s health checks make it healthy.
            health_check_grace_period=Duration.seconds(HEALTH_CHECK_GRACE_SECONDS),
        )
        self.service.load_balancer_target(
            container_name="App",
            container_port=service.container_port,
            alternate_target=ecs.AlternateTarget(
                "GreenTarget",
                alternate_target_group=self.green,
                production_listener=ecs.ListenerRuleConfiguration.application_listener_rule(
                    self.production_rule
                ),
                test_listener=ecs.ListenerRuleConfiguration.application_listener_rule(
                    self.test_rule
                ),
            ),
        ).attach_to_application_target_group(self.blue)
        self.monitoring.add_service(self.service)

        self.web_acl = _web_acl(self, service_name)
        wafv2.CfnWebACLAssociation(
            self,
            "WebAclAssociation",
            resource_arn=self.load_balancer.load_balancer_arn,
            web_acl_arn=self.web_acl.attr_arn,
        )
        waf_logs = encrypted_log_group(
            self,
            "WebAclLogs",
            key=key,
            removal_policy=removal_policy,
            # WAF accepts only log groups whose name starts with this prefix. The stack id's
            # unique part follows: production keeps the group when its stack is deleted, and a
            # stack created again under the same name must not collide with it.
            log_group_name=Fn.join(
                "",
                [
                    f"aws-waf-logs-{Stack.of(self).stack_name}-",
                    Fn.select(2, Fn.split("/", Aws.STACK_ID)),
                ],
            ),
        )
        wafv2.CfnLoggingConfiguration(
            self,
            "WebAclLogging",
            resource_arn=self.web_acl.attr_arn,
            log_destination_configs=[log_group_arn(self, waf_logs.log_group_name)],
        )

    def _target_group(
        self, construct_id: str, vpc: ec2.IVpc, port: int
    ) -> elbv2.ApplicationTargetGroup:
        return elbv2.ApplicationTargetGroup(
            self,
            construct_id,
            vpc=vpc,
            port=port,
            protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP,
            deregistration_delay=Duration.seconds(DEREGISTRATION_DELAY_SECONDS),
            health_check=elbv2.HealthCheck(
                path=HEALTH_PATH,
                interval=Duration.seconds(HEALTH_CHECK_INTERVAL_SECONDS),
                timeout=Duration.seconds(4),
                healthy_threshold_count=HEALTHY_THRESHOLD,
                unhealthy_threshold_count=UNHEALTHY_THRESHOLD,
            ),
        )

    def _listener(
        self, construct_id: str, *, port: int, certificate_arn: str | None, open_to_world: bool
    ) -> elbv2.ApplicationListener:
        tls = certificate_arn is not None
        return self.load_balancer.add_listener(
            construct_id,
            port=port,
            protocol=elbv2.ApplicationProtocol.HTTPS if tls else elbv2.ApplicationProtocol.HTTP,
            certificates=(
                [elbv2.ListenerCertificate.from_arn(certificate_arn)] if certificate_arn else None
            ),
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS if tls else None,
            open=open_to_world,
            # Only the rule below routes; anything it does not match gets a plain 404.
            default_action=elbv2.ListenerAction.fixed_response(
                404, content_type="text/plain", message_body="Not found"
            ),
        )

    def _rule(
        self, construct_id: str, listener: elbv2.ApplicationListener
    ) -> elbv2.ApplicationListenerRule:
        return elbv2.ApplicationListenerRule(
            self,
            construct_id,
            listener=listener,
            priority=1,
            conditions=[elbv2.ListenerCondition.path_patterns(["/*"])],
            # The shape ECS itself writes: a weighted forward over both groups. Green starts at
            # weight 0, so it is associated with the load balancer (health checks, metrics)
            # before the first release.
            action=elbv2.ListenerAction.weighted_forward(
                [
                    elbv2.WeightedTargetGroup(target_group=self.blue, weight=100),
                    elbv2.WeightedTargetGroup(target_group=self.green, weight=0),
                ]
            ),
        )


def _strategy(release: ReleaseConfig) -> dict[str, Any]:
    """The FargateService arguments of the configured release strategy."""
    step = Duration.minutes(release.step_minutes)
    if release.strategy == "canary":
        return {
            "deployment_strategy": ecs.DeploymentStrategy.CANARY,
            "canary_configuration": ecs.TrafficShiftConfig(
                step_percent=release.canary_percent, step_bake_time=step
            ),
        }
    if release.strategy == "linear":
        return {
            "deployment_strategy": ecs.DeploymentStrategy.LINEAR,
            "linear_configuration": ecs.TrafficShiftConfig(
                step_percent=release.linear_percent, step_bake_time=step
            ),
        }
    return {"deployment_strategy": ecs.DeploymentStrategy.BLUE_GREEN}


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
