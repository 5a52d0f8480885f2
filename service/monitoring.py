"""What the operators of a stage see and hear: rollback alarms, a dashboard, an alarm topic."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_sns as sns
from constructs import Construct

from components.keys import publisher_key
from configuration import ReleaseConfig

PERIOD = Duration.minutes(1)
# Two one-minute periods: an alarm fires within about two minutes of a bad release taking
# traffic, well inside the shortest bake time (3 minutes).
EVALUATION_PERIODS = 2


class Monitoring(Construct):
    """Deployment alarms (5xx share, unhealthy targets, p99 latency) that roll a release back,
    a KMS-encrypted SNS topic they notify, and a dashboard of the service."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        load_balancer: elbv2.ApplicationLoadBalancer,
        target_groups: list[elbv2.ApplicationTargetGroup],
        release: ReleaseConfig,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self._load_balancer = load_balancer

        # CloudWatch publishes alarm notifications to the encrypted topic.
        key = publisher_key(
            self,
            "TopicKey",
            description="Encrypts the service's alarm notifications",
            removal_policy=removal_policy,
            sid="AllowCloudWatchAlarms",
            service="cloudwatch.amazonaws.com",
        )
        self.topic = sns.Topic(self, "AlarmTopic", master_key=key, enforce_ssl=True)

        lb_metrics = load_balancer.metrics
        requests = lb_metrics.request_count(period=PERIOD)
        errors = lb_metrics.http_code_target(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=PERIOD)
        error_rate = cloudwatch.MathExpression(
            expression="IF(requests > 0, 100 * errors / requests, 0)",
            using_metrics={"requests": requests, "errors": errors},
            label="Target 5xx (% of requests)",
            period=PERIOD,
        )
        unhealthy = cloudwatch.MathExpression(
            expression="MAX([" + ", ".join(f"u{i}" for i in range(len(target_groups))) + "])",
            using_metrics={
                f"u{i}": self._tg_metric(tg, "UnHealthyHostCount", "Maximum")
                for i, tg in enumerate(target_groups)
            },
            label="Unhealthy targets",
            period=PERIOD,
        )
        latency = lb_metrics.target_response_time(statistic="p99", period=PERIOD)

        self.alarms = [
            self._alarm(
                "ErrorRateAlarm",
                error_rate,
                release.max_5xx_percent,
                f"More than {release.max_5xx_percent:g}% of requests end in a target 5xx",
            ),
            self._alarm(
                "UnhealthyTargetsAlarm",
                unhealthy,
                1,
                "A target of the service is failing its health checks",
                comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            ),
            self._alarm(
                "LatencyAlarm",
                latency,
                release.max_p99_latency_ms / 1000,
                f"p99 response time above {release.max_p99_latency_ms} ms",
            ),
        ]

        # Named after the stack (<project>-<stage>-service): the execution policies manage only
        # the project's dashboards by name, and a name CloudFormation generates need not start
        # with the stack's.
        self.dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=Stack.of(self).stack_name
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Requests", left=[requests], width=8),
            cloudwatch.GraphWidget(title="Target 5xx", left=[errors], right=[error_rate], width=8),
            cloudwatch.GraphWidget(
                title="Response time",
                left=[
                    lb_metrics.target_response_time(statistic="p50", period=PERIOD),
                    latency,
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Healthy targets (blue, green)",
                left=[self._tg_metric(tg, "HealthyHostCount", "Minimum") for tg in target_groups],
                width=8,
            ),
            cloudwatch.AlarmStatusWidget(title="Rollback alarms", alarms=self.alarms, width=8),
        )

    def add_service(self, service: ecs.FargateService) -> None:
        """CPU, memory and running tasks: deployments show as the task count doubling."""
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="CPU and memory (%)",
                left=[service.metric_cpu_utilization(), service.metric_memory_utilization()],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Running tasks (deployments)",
                left=[
                    cloudwatch.Metric(
                        namespace="ECS/ContainerInsights",
                        metric_name="RunningTaskCount",
                        dimensions_map={
                            "ClusterName": service.cluster.cluster_name,
                            "ServiceName": service.service_name,
                        },
                        statistic="Average",
                        period=PERIOD,
                    )
                ],
                width=12,
            ),
        )

    def _tg_metric(
        self, target_group: elbv2.ApplicationTargetGroup, name: str, statistic: str
    ) -> cloudwatch.Metric:
        # Built from the load balancer's full name. (CDK's target-group metric helpers would
        # derive the same dimension from a listener ARN, a different expression in the template.)
        return cloudwatch.Metric(
            namespace="AWS/ApplicationELB",
            metric_name=name,
            dimensions_map={
                "LoadBalancer": self._load_balancer.load_balancer_full_name,
                "TargetGroup": target_group.target_group_full_name,
            },
            statistic=statistic,
            period=PERIOD,
        )

    def _alarm(
        self,
        construct_id: str,
        metric: cloudwatch.IMetric,
        threshold: float,
        description: str,
        comparison: cloudwatch.ComparisonOperator = (
            cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
        ),
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=threshold,
            evaluation_periods=EVALUATION_PERIODS,
            datapoints_to_alarm=EVALUATION_PERIODS,
            comparison_operator=comparison,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        action = cloudwatch_actions.SnsAction(self.topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        return alarm
