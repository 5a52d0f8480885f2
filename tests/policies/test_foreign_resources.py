"""The negative suite: on the evaluator of the deploy-permission check, calls on resources that are
not the project's are denied, for the target accounts' CloudFormation execution role and for any
stage role under the permissions boundary; the same calls on the project's own resources are
allowed (the controls), so that a denial says something about the policies and not about the case.

A case is what AWS would evaluate: a real action (AWS's catalogue, checked below), an ARN of a
resource type the action is authorized on, and the request context AWS sends, formed from what
the resource carries: for an untagged resource no `aws:ResourceTag` key at all, for one tagged
project=billing `aws:ResourceTag/project=billing` (and the service's own alias of that key, where
the catalogue lists one), `aws:ResourceAccount` of the owner, `iam:PermissionsBoundary` only for a
role that has one. Every case is also evaluated with an allow-all identity policy: it must be
allowed there, so that no case is denied for a malformed request (an ARN the action does not
take, a cross-account call without a resource policy) rather than by the policy it tests.

A stage role is judged on the boundary alone: whatever its own policy grants, it can never do
what the boundary denies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from ops.bootstrap import cdk_role_name
from policies import iam_data
from policies.deploy_check import CATALOGUE_GAPS, FAS_CONTEXT, Call, _fits, evaluate
from policies.execution_policy import (
    PROJECT_TAG,
    boundary_name,
)

from ..conftest import record_figure
from ..simulate import ALLOW_ALL, boundary_policy, default_key_policy, execution_policies

PROJECT = "webapp"
QUALIFIER = "webapp"
ACCOUNT = "222222222222"
OTHER_ACCOUNT = "999999999999"  # another organisation's account
REGION = "eu-west-1"

EXECUTION = "execution role"
BOUNDARY = "boundary"
PIPELINE = "pipeline execution role"  # the pipeline account's (its policies, same test account)
PIPELINE_ROLE = "pipeline boundary"  # any role the pipeline stack creates
PRINCIPALS = {
    EXECUTION: f"arn:aws:iam::{ACCOUNT}:role/"
    + cdk_role_name("cfn-exec", QUALIFIER, ACCOUNT, REGION),
    PIPELINE: f"arn:aws:iam::{ACCOUNT}:role/"
    + cdk_role_name("cfn-exec", QUALIFIER, ACCOUNT, REGION),
    PIPELINE_ROLE: f"arn:aws:iam::{ACCOUNT}:role/{PROJECT}-pipeline-PipelineRole-1A2B3C4D",
    # Any role the stages create: the boundary is its ceiling.
    BOUNDARY: f"arn:aws:iam::{ACCOUNT}:role/{PROJECT}-staging-service-TaskRole-1A2B3C4D",
}
BOUNDARY_ARN = f"arn:aws:iam::{ACCOUNT}:policy/{boundary_name(PROJECT)}"

OURS = {PROJECT_TAG: PROJECT}
BILLING = {PROJECT_TAG: "billing"}  # another team's resource, tagged with its own project
OTHER = {PROJECT_TAG: "other"}


def arn(service: str, resource: str, *, account: str = ACCOUNT, region: str = REGION) -> str:
    return f"arn:aws:{service}:{region}:{account}:{resource}"


@dataclass(frozen=True)
class Case:
    """One request: `principal` (EXECUTION or BOUNDARY) calls `action` on `resource`.

    `tags` are the tags the resource carries, `request_tags` those the request puts on it,
    `removes` the tag keys it takes off; `context` adds keys AWS sends for this call;
    `owner` is the account that owns the resource, `resource_policy` its resource policy (a KMS
    key gets KMS's default key policy of its owner unless it says otherwise)."""

    principal: str
    action: str
    resource: str
    why: str
    tags: dict[str, str] = field(default_factory=dict)
    request_tags: dict[str, str] = field(default_factory=dict)
    removes: tuple[str, ...] = ()
    context: dict[str, Any] = field(default_factory=dict)
    owner: str = ACCOUNT
    resource_policy: dict[str, Any] | None = None

    @property
    def service(self) -> str:
        return self.action.split(":")[0]

    def line(self) -> str:
        return f"{self.principal}: {self.action} on {self.resource}"


# Resources of others, as AWS names them.
FOREIGN_KEY = arn("kms", "key/1234abcd-12ab-34cd-56ef-1234567890ab")  # untagged
OTHER_KEY = arn("kms", "key/5678efab-56ef-78ab-90cd-5678901234cd")  # tagged project=other
BILLING_BUCKET = "arn:aws:s3:::billing-reports"  # same account, not named webapp-*
# Bucket names are global: a bucket named like the project's may belong to anyone. Its owner's
# bucket policy trusts this account (the worst case), so only our side decides.
ELSEWHERE_BUCKET = f"arn:aws:s3:::{PROJECT}-data"
TRUSTING_BUCKET_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Action": "s3:*",
            "Resource": [ELSEWHERE_BUCKET, f"{ELSEWHERE_BUCKET}/*"],
        }
    ],
}
# Made by hand, matching the project's name prefix, with neither the tag nor the boundary.
LEGACY_ROLE = f"arn:aws:iam::{ACCOUNT}:role/{PROJECT}-legacy"
FOREIGN_SG = arn("ec2", "security-group/sg-0b1e2f3a4c5d6e7f8")  # untagged
BILLING_SG = arn("ec2", "security-group/sg-0c2d3e4f5a6b7c8d9")
BILLING_VPC = arn("ec2", "vpc/vpc-0c1d2e3f4a5b6c7d8")
BILLING_ROUTE_TABLE = arn("ec2", "route-table/rtb-0a9b8c7d6e5f4a3b2")
FOREIGN_SUBNET = arn("ec2", "subnet/subnet-0e1f2a3b4c5d6e7f8")  # untagged
NEW_SUBNET = arn("ec2", "subnet/subnet-0f1e2d3c4b5a69788")  # the one a CreateSubnet would make
BILLING_ALB = arn("elasticloadbalancing", "loadbalancer/app/billing-alb/50dc6c495c0c9188")
BILLING_LISTENER = arn(
    "elasticloadbalancing", "listener/app/billing-alb/50dc6c495c0c9188/f2f7dc8efc522ab2"
)
BILLING_RULE = arn(
    "elasticloadbalancing",
    "listener-rule/app/billing-alb/50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee",
)
BILLING_TARGET_GROUP = arn("elasticloadbalancing", "targetgroup/billing-tg/73e2d6bc24d8a067")
BILLING_CLUSTER = arn("ecs", "cluster/billing")
BILLING_SERVICE = arn("ecs", "service/billing/billing-api")
BILLING_LOG_GROUP = arn("logs", "log-group:billing-api")  # untagged
BILLING_WAF_LOG_GROUP = arn("logs", "log-group:aws-waf-logs-billing")
BILLING_TOPIC = arn("sns", "billing-alerts")
BILLING_ALARM = arn("cloudwatch", "alarm:billing-5xx")
BILLING_WEB_ACL = arn("wafv2", "regional/webacl/billing-acl/a1b2c3d4-5678-90ab-cdef-EXAMPLE11111")
BILLING_RULE_GROUP = arn(
    "wafv2", "regional/rulegroup/billing-rules/a1b2c3d4-5678-90ab-cdef-EXAMPLE22222"
)
BILLING_FUNCTION = arn("lambda", "function:billing-export")
BILLING_PARAMETER = arn("ssm", "parameter/billing/db-password")
BILLING_SECRET = arn("secretsmanager", "secret:billing/db-AbCdEf")
BILLING_REPOSITORY = arn("ecr", "repository/billing-api")
BILLING_STACK = arn("cloudformation", "stack/billing-prod/51af3dc0-da77-11e4-872e-1234567db123")

# The project's own resources, named as CloudFormation names them (stack name first) and tagged
# with the project tag, as the Stage applies it.
STACK = f"{PROJECT}-staging-service"
OUR_KEY = arn("kms", "key/0987dcba-09fe-87dc-65ba-ab0987654321")
OUR_BUCKET = f"arn:aws:s3:::{STACK}-accesslogsbucket-1a2b3c4d5e6f"
OUR_ROLE = f"arn:aws:iam::{ACCOUNT}:role/{STACK}-TaskRole-1A2B3C4D"
OUR_SG = arn("ec2", "security-group/sg-0f9e8d7c6b5a49382")
OUR_VPC = arn("ec2", "vpc/vpc-0a1b2c3d4e5f60718")
OUR_ROUTE_TABLE = arn("ec2", "route-table/rtb-0b1c2d3e4f5a6b7c8")
OUR_ALB = arn("elasticloadbalancing", "loadbalancer/app/webapp-WebLo-1A2B3C4D5E6F/6d0ecf831eec9f09")
OUR_LISTENER = arn(
    "elasticloadbalancing",
    "listener/app/webapp-WebLo-1A2B3C4D5E6F/6d0ecf831eec9f09/2a2b2c2d2e2f2a2b",
)
OUR_RULE = arn(
    "elasticloadbalancing",
    "listener-rule/app/webapp-WebLo-1A2B3C4D5E6F/6d0ecf831eec9f09/2a2b2c2d2e2f2a2b/3c3d3e3f3a3b3c3d",
)
OUR_TARGET_GROUP = arn("elasticloadbalancing", "targetgroup/webapp-Blue-1A2B3C4D/4e4f4a4b4c4d4e4f")
OUR_CLUSTER = arn("ecs", f"cluster/{STACK}-Cluster-1A2B3C4D")
OUR_SERVICE = arn("ecs", f"service/{STACK}-Cluster-1A2B3C4D/{STACK}-Service-5E6F7A8B")
OUR_LOG_GROUP = arn("logs", f"log-group:{STACK}-WebLogs-1A2B3C4D")
OUR_WAF_LOG_GROUP = arn("logs", f"log-group:aws-waf-logs-{STACK}-1a2b3c4d")
OUR_TOPIC = arn("sns", f"{STACK}-AlarmTopic-1A2B3C4D")
OUR_ALARM = arn("cloudwatch", f"alarm:{STACK}-ErrorRateAlarm-1A2B3C4D")
OUR_WEB_ACL = arn(
    "wafv2", f"regional/webacl/{STACK}-WebAcl-1A2B3C4D/b2c3d4e5-6789-01bc-def0-EXAMPLE33333"
)
OUR_FUNCTION = arn("lambda", f"function:{STACK}-SmokeHook-1A2B3C4D")

CLAIM = {PROJECT_TAG: PROJECT}  # a tagging request that would make a resource the project's
TASKS = {"iam:PassedToService": "ecs-tasks.amazonaws.com"}

E, B, P, PB = EXECUTION, BOUNDARY, PIPELINE, PIPELINE_ROLE
OUR_KEY_ARN = arn("kms", "key/0a1b2c3d-1111-2222-3333-444455556666")
BILLING_PROJECT = arn("codebuild", "project/billing-build")
BILLING_PIPELINE = arn("codepipeline", "billing-release")
BILLING_DASHBOARD = f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/billing"
BILLING_DEPLOYMENT = arn("ecs", "service-deployment/billing/billing-api/a1b2c3d4e5f6")
OUR_PROJECT = arn("codebuild", f"project/{PROJECT}-pipeline-PipelineBuildSynth-1A2B3C4D")
OUR_PIPELINE = arn("codepipeline", f"{PROJECT}-pipeline-Pipeline-1A2B3C4D")

FOREIGN: list[Case] = [
    Case(
        B,
        "ec2:AuthorizeSecurityGroupIngress",
        OUR_SG,
        "no stage role changes the project's groups' rules (CloudFormation does)",
        OURS,
    ),
    # A role of the pipeline stack, under the pipeline boundary.
    Case(PB, "codebuild:StartBuild", BILLING_PROJECT, "running another team's build", BILLING),
    Case(PB, "codebuild:StartBuild", BILLING_PROJECT, "running an untagged build"),
    Case(PB, "kms:Decrypt", FOREIGN_KEY, "another team's key"),
    Case(PB, "s3:PutObject", f"{BILLING_BUCKET}/report.csv", "another team's bucket"),
    Case(
        PB,
        "sts:AssumeRole",
        f"arn:aws:iam::{ACCOUNT}:role/cdk-hnb659fds-deploy-role-{ACCOUNT}-{REGION}",
        "another CDK app's deploy role (the default qualifier)",
    ),
    Case(PB, "ecr:BatchGetImage", arn("ecr", "repository/billing-api"), "another team's images"),
    # Found by review: calls the generator first left on resources of every name.
    Case(E, "cloudwatch:PutDashboard", BILLING_DASHBOARD, "overwriting another team's dashboard"),
    Case(E, "cloudwatch:DeleteDashboards", BILLING_DASHBOARD, "another team's dashboard"),
    Case(E, "ecs:StopServiceDeployment", BILLING_DEPLOYMENT, "stopping another team's deploy"),
    Case(
        E,
        "wafv2:DisassociateWebACL",
        BILLING_ALB,
        "taking the web ACL off another team's load balancer",
        BILLING,
    ),
    Case(
        E,
        "kms:EnableKeyRotation",
        OTHER_KEY,
        "a key tagged by another project (a new key's early calls accept only untagged ones)",
        OTHER,
    ),
    Case(
        E,
        "iam:CreateServiceLinkedRole",
        f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/elasticbeanstalk.amazonaws.com/"
        "AWSServiceRoleForElasticBeanstalk",
        "a service-linked role of a service the stacks do not use",
        context={"iam:AWSServiceName": "elasticbeanstalk.amazonaws.com"},
    ),
    Case(
        E,
        "ec2:DeleteTags",
        OUR_SG,
        "DeleteTags without keys removes every tag, the project's too",
        OURS,
    ),
    # The pipeline account's execution role.
    Case(P, "codebuild:UpdateProject", BILLING_PROJECT, "another team's build", BILLING),
    Case(P, "codebuild:UpdateProject", BILLING_PROJECT, "an untagged build project"),
    Case(P, "codebuild:DeleteProject", BILLING_PROJECT, "another team's build", BILLING),
    Case(P, "codepipeline:UpdatePipeline", BILLING_PIPELINE, "another team's pipeline", BILLING),
    Case(P, "codepipeline:DeletePipeline", BILLING_PIPELINE, "an untagged pipeline"),
    Case(P, "kms:PutKeyPolicy", FOREIGN_KEY, "another team's key: a new key policy takes it"),
    Case(P, "s3:PutBucketPolicy", BILLING_BUCKET, "another team's bucket"),
    # KMS: any key whose key policy trusts the account (KMS's default) is reachable by IAM.
    Case(E, "kms:PutKeyPolicy", FOREIGN_KEY, "another team's key: a new key policy takes it"),
    Case(E, "kms:ScheduleKeyDeletion", FOREIGN_KEY, "another team's key: destroys its data"),
    Case(E, "kms:DisableKey", FOREIGN_KEY, "another team's key: stops its service"),
    Case(E, "kms:Decrypt", FOREIGN_KEY, "another team's key: reads its data"),
    Case(E, "kms:CreateGrant", OTHER_KEY, "a key of project=other: a grant hands it out", OTHER),
    Case(E, "kms:PutKeyPolicy", OTHER_KEY, "a key of project=other", OTHER),
    Case(
        E,
        "kms:TagResource",
        FOREIGN_KEY,
        "tagging an untagged key project=webapp would claim it",
        request_tags=CLAIM,
    ),
    Case(
        E,
        "kms:TagResource",
        OTHER_KEY,
        "retagging another project's key project=webapp would claim it",
        OTHER,
        request_tags=CLAIM,
    ),
    Case(
        E,
        "kms:UntagResource",
        OTHER_KEY,
        "taking another project's tag off its key",
        OTHER,
        removes=(PROJECT_TAG,),
    ),
    Case(B, "kms:Decrypt", FOREIGN_KEY, "a stage role decrypting with another team's key"),
    Case(B, "kms:Encrypt", FOREIGN_KEY, "a stage role encrypting with another team's key"),
    Case(
        B,
        "kms:GenerateDataKey",
        OTHER_KEY,
        "another project's key, even through a service",
        OTHER,
        context={"kms:ViaService": f"sns.{REGION}.amazonaws.com"},
    ),
    Case(
        B,
        "kms:Decrypt",
        FOREIGN_KEY,
        "kms:ViaService alone does not make a key the project's (another team's secret)",
        context={"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"},
    ),
    # S3: another team's bucket in the account, and a project-named bucket of another account.
    Case(E, "s3:PutBucketPolicy", BILLING_BUCKET, "another team's bucket: opens it to anyone"),
    Case(E, "s3:DeleteBucket", BILLING_BUCKET, "another team's bucket"),
    Case(
        E,
        "s3:PutBucketPolicy",
        ELSEWHERE_BUCKET,
        "a webapp-* bucket of another account",
        owner=OTHER_ACCOUNT,
        resource_policy=TRUSTING_BUCKET_POLICY,
    ),
    Case(
        E,
        "s3:PutBucketAcl",
        ELSEWHERE_BUCKET,
        "a webapp-* bucket of another account",
        owner=OTHER_ACCOUNT,
        resource_policy=TRUSTING_BUCKET_POLICY,
    ),
    Case(B, "s3:GetObject", f"{BILLING_BUCKET}/2026/11.csv", "another team's objects"),
    Case(B, "s3:PutObject", f"{BILLING_BUCKET}/2026/11.csv", "another team's objects"),
    Case(
        B,
        "s3:PutBucketPolicy",
        ELSEWHERE_BUCKET,
        "a webapp-* bucket of another account",
        owner=OTHER_ACCOUNT,
        resource_policy=TRUSTING_BUCKET_POLICY,
    ),
    Case(
        B,
        "s3:PutObject",
        f"{ELSEWHERE_BUCKET}/upload.bin",
        "writing into a webapp-* bucket of another account (exfiltration)",
        owner=OTHER_ACCOUNT,
        resource_policy=TRUSTING_BUCKET_POLICY,
    ),
    # IAM: a role of the project's name made by hand, without the tag or the boundary.
    Case(E, "iam:UpdateAssumeRolePolicy", LEGACY_ROLE, "webapp-legacy: trust it from anywhere"),
    Case(E, "iam:PutRolePolicy", LEGACY_ROLE, "webapp-legacy: grant it anything"),
    Case(E, "iam:AttachRolePolicy", LEGACY_ROLE, "webapp-legacy: attach AdministratorAccess"),
    Case(E, "iam:DeleteRole", LEGACY_ROLE, "webapp-legacy is not the project's to delete"),
    Case(
        E,
        "iam:PassRole",
        LEGACY_ROLE,
        "passing webapp-legacy (no boundary) to a task gives the task its permissions",
        context=TASKS,
    ),
    Case(
        E,
        "iam:TagRole",
        LEGACY_ROLE,
        "tagging webapp-legacy project=webapp would claim it",
        request_tags=CLAIM,
    ),
    Case(B, "iam:PassRole", LEGACY_ROLE, "a stage role passing webapp-legacy", context=TASKS),
    Case(B, "iam:UpdateAssumeRolePolicy", LEGACY_ROLE, "a stage role rewriting a trust policy"),
    # EC2: another team's security group, VPC, subnet and route table.
    Case(E, "ec2:AuthorizeSecurityGroupIngress", FOREIGN_SG, "an untagged security group"),
    Case(E, "ec2:RevokeSecurityGroupEgress", FOREIGN_SG, "an untagged security group"),
    Case(E, "ec2:DeleteSecurityGroup", BILLING_SG, "another team's security group", BILLING),
    Case(
        E,
        "ec2:AuthorizeSecurityGroupIngress",
        BILLING_SG,
        "opening another team's tagged security group",
        BILLING,
    ),
    Case(
        E,
        "ec2:RevokeSecurityGroupEgress",
        BILLING_SG,
        "closing another team's tagged security group",
        BILLING,
    ),
    Case(
        E,
        "ec2:ModifySubnetAttribute",
        arn("ec2", "subnet/subnet-0a1b2c3d4e5f60718"),
        "another team's tagged subnet",
        BILLING,
    ),
    Case(
        E,
        "elasticloadbalancing:ModifyLoadBalancerAttributes",
        BILLING_ALB,
        "another team's tagged load balancer",
        BILLING,
    ),
    Case(
        E,
        "ec2:CreateSubnet",
        BILLING_VPC,
        "a subnet (tagged ours) in another team's VPC",
        BILLING,
        request_tags=OURS,
    ),
    Case(E, "ec2:CreateRoute", BILLING_ROUTE_TABLE, "another team's route table", BILLING),
    Case(E, "ec2:DeleteVpc", BILLING_VPC, "another team's VPC", BILLING),
    Case(E, "ec2:ModifyVpcAttribute", BILLING_VPC, "another team's VPC", BILLING),
    Case(E, "ec2:DeleteSubnet", FOREIGN_SUBNET, "an untagged subnet"),
    Case(
        E,
        "ec2:CreateTags",
        FOREIGN_SG,
        "tagging an existing untagged security group project=webapp (no ec2:CreateAction: "
        "not tagging on create) would claim it",
        request_tags=CLAIM,
    ),
    Case(
        E,
        "ec2:CreateTags",
        BILLING_SG,
        "retagging another team's security group project=webapp would claim it",
        BILLING,
        request_tags=CLAIM,
    ),
    Case(
        E,
        "ec2:DeleteTags",
        BILLING_SG,
        "taking another team's project tag off its security group",
        BILLING,
        removes=(PROJECT_TAG,),
    ),
    Case(B, "ec2:AuthorizeSecurityGroupIngress", FOREIGN_SG, "a stage role opening an untagged SG"),
    Case(B, "ec2:RevokeSecurityGroupEgress", BILLING_SG, "another team's security group", BILLING),
    Case(B, "ec2:DeleteVpc", BILLING_VPC, "another team's VPC", BILLING),
    # ELB: another team's load balancer, listener, rule and target group.
    Case(E, "elasticloadbalancing:DeleteLoadBalancer", BILLING_ALB, "an untagged load balancer"),
    Case(
        E,
        "elasticloadbalancing:ModifyListener",
        BILLING_LISTENER,
        "another team's listener",
        BILLING,
    ),
    Case(E, "elasticloadbalancing:ModifyRule", BILLING_RULE, "another team's rule", BILLING),
    Case(E, "elasticloadbalancing:DeleteRule", BILLING_RULE, "another team's rule", BILLING),
    Case(
        E,
        "elasticloadbalancing:RegisterTargets",
        BILLING_TARGET_GROUP,
        "registering targets in an untagged target group",
    ),
    Case(
        E,
        "elasticloadbalancing:AddTags",
        BILLING_ALB,
        "tagging an untagged load balancer project=webapp would claim it",
        request_tags=CLAIM,
    ),
    Case(
        E,
        "elasticloadbalancing:RemoveTags",
        BILLING_ALB,
        "taking another team's project tag off its load balancer",
        BILLING,
        removes=(PROJECT_TAG,),
    ),
    Case(B, "elasticloadbalancing:ModifyListener", BILLING_LISTENER, "an untagged listener"),
    Case(B, "elasticloadbalancing:ModifyRule", BILLING_RULE, "another team's rule", BILLING),
    Case(
        B,
        "elasticloadbalancing:RegisterTargets",
        BILLING_TARGET_GROUP,
        "another team's target group",
        BILLING,
    ),
    Case(
        B,
        "elasticloadbalancing:DeregisterTargets",
        BILLING_TARGET_GROUP,
        "draining an untagged target group",
    ),
    # ECS: another team's cluster and service, and account-wide settings.
    Case(E, "ecs:UpdateService", BILLING_SERVICE, "another team's service", BILLING),
    Case(E, "ecs:DeleteService", BILLING_SERVICE, "an untagged service"),
    Case(E, "ecs:DeleteCluster", BILLING_CLUSTER, "another team's cluster", BILLING),
    Case(E, "ecs:UpdateCluster", BILLING_CLUSTER, "another team's cluster", BILLING),
    Case(E, "ecs:PutAccountSetting", "*", "account-wide ECS settings are no stage resource"),
    Case(E, "ecs:PutAccountSettingDefault", "*", "account-wide ECS defaults, every principal"),
    Case(
        E,
        "ecs:TagResource",
        BILLING_SERVICE,
        "retagging another team's service project=webapp (no ecs:CreateAction) would claim it",
        BILLING,
        request_tags=CLAIM,
    ),
    Case(
        E,
        "ecs:UntagResource",
        BILLING_CLUSTER,
        "taking another team's project tag off its cluster",
        BILLING,
        removes=(PROJECT_TAG,),
    ),
    Case(B, "ecs:UpdateService", BILLING_SERVICE, "a stage role changing another's service"),
    # CloudWatch Logs: log groups not of the project, and the account's resource policy.
    Case(E, "logs:DeleteLogGroup", BILLING_LOG_GROUP, "another team's log group"),
    Case(E, "logs:PutRetentionPolicy", BILLING_WAF_LOG_GROUP, "another team's WAF log group"),
    Case(
        E,
        "logs:PutResourcePolicy",
        "*",
        "the account's log resource policy, written directly rather than by WAF's logging "
        "setup, lets any service write into any log group",
    ),
    Case(
        E,
        "logs:TagResource",
        BILLING_LOG_GROUP,
        "tagging an untagged log group project=webapp would claim it",
        request_tags=CLAIM,
    ),
    Case(
        E,
        "logs:UntagResource",
        BILLING_WAF_LOG_GROUP,
        "taking another team's project tag off its log group",
        BILLING,
        removes=(PROJECT_TAG,),
    ),
    Case(
        B,
        "logs:PutLogEvents",
        arn("logs", "log-group:billing-api:log-stream:web/1"),
        "writing into another team's log stream",
    ),
    Case(
        B,
        "logs:CreateLogStream",
        arn("logs", "log-group:/aws/lambda/billing-export:log-stream:1"),
        "another team's function log group",
    ),
    # SNS: another team's topic.
    Case(E, "sns:SetTopicAttributes", BILLING_TOPIC, "another team's topic: its policy"),
    Case(E, "sns:DeleteTopic", BILLING_TOPIC, "another team's topic"),
    Case(E, "sns:Subscribe", BILLING_TOPIC, "reading another team's messages"),
    Case(
        E,
        "sns:TagResource",
        BILLING_TOPIC,
        "retagging another team's topic project=webapp would claim it",
        BILLING,
        request_tags=CLAIM,
    ),
    Case(E, "sns:Publish", BILLING_TOPIC, "CloudFormation never publishes"),
    Case(B, "sns:Publish", BILLING_TOPIC, "a stage role paging another team"),
    # CloudWatch: another team's alarm.
    Case(E, "cloudwatch:PutMetricAlarm", BILLING_ALARM, "overwriting another team's alarm"),
    Case(E, "cloudwatch:DeleteAlarms", BILLING_ALARM, "another team's alarm"),
    Case(
        E,
        "cloudwatch:TagResource",
        BILLING_ALARM,
        "tagging an untagged alarm project=webapp would claim it",
        request_tags=CLAIM,
    ),
    Case(B, "cloudwatch:DisableAlarmActions", BILLING_ALARM, "silencing another team's alarm"),
    # WAF: another team's web ACL and rule group.
    Case(E, "wafv2:UpdateWebACL", BILLING_WEB_ACL, "another team's web ACL", BILLING),
    Case(E, "wafv2:DeleteWebACL", BILLING_WEB_ACL, "an untagged web ACL"),
    Case(
        E,
        "wafv2:PutLoggingConfiguration",
        BILLING_WEB_ACL,
        "redirecting another team's WAF logs",
        BILLING,
    ),
    Case(
        E,
        "wafv2:PutPermissionPolicy",
        BILLING_RULE_GROUP,
        "sharing another team's rule group with other accounts",
        BILLING,
    ),
    Case(
        E,
        "wafv2:TagResource",
        BILLING_WEB_ACL,
        "tagging an untagged web ACL project=webapp would claim it",
        request_tags=CLAIM,
    ),
    Case(B, "wafv2:UpdateWebACL", BILLING_WEB_ACL, "a stage role changing a web ACL", BILLING),
    # Lambda, SSM, Secrets Manager, ECR, CloudFormation.
    Case(E, "lambda:UpdateFunctionCode", BILLING_FUNCTION, "another team's function"),
    Case(E, "lambda:DeleteFunction", BILLING_FUNCTION, "another team's function"),
    Case(B, "lambda:InvokeFunction", BILLING_FUNCTION, "a stage role invoking another's function"),
    Case(E, "ssm:GetParameters", BILLING_PARAMETER, "another team's parameter"),
    Case(B, "ssm:GetParameters", BILLING_PARAMETER, "another team's SecureString"),
    Case(B, "secretsmanager:GetSecretValue", BILLING_SECRET, "another team's secret"),
    Case(B, "ecr:BatchGetImage", BILLING_REPOSITORY, "another team's images"),
    Case(E, "cloudformation:DeleteStack", BILLING_STACK, "another project's stack"),
    Case(E, "cloudformation:UpdateStack", BILLING_STACK, "another project's stack"),
]

CONTROLS: list[Case] = [
    Case(PB, "codebuild:StartBuild", OUR_PROJECT, "the pipeline's build", OURS),
    Case(PB, "kms:Decrypt", OUR_KEY_ARN, "the artifact key", OURS),
    Case(
        PB,
        "sts:AssumeRole",
        f"arn:aws:iam::333333333333:role/cdk-{QUALIFIER}-deploy-role-333333333333-{REGION}",
        "a target's deploy role",
    ),
    Case(P, "codebuild:UpdateProject", OUR_PROJECT, "the pipeline's build project", OURS),
    Case(P, "codepipeline:UpdatePipeline", OUR_PIPELINE, "the project's pipeline", OURS),
    Case(
        E,
        "cloudwatch:PutDashboard",
        f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/{STACK}",
        "the stage's dashboard",
    ),
    Case(
        E,
        "ecs:DescribeServiceDeployments",
        arn("ecs", f"service-deployment/{STACK}-Cluster-1A2B3C4D/{STACK}-Service-5E6F7A8B/abc"),
        "the project's service deployment",
    ),
    # The execution role on the project's own resources, with what a deploy sends.
    Case(E, "kms:PutKeyPolicy", OUR_KEY, "the project's key", OURS),
    Case(E, "kms:ScheduleKeyDeletion", OUR_KEY, "the project's key", OURS),
    Case(E, "kms:TagResource", OUR_KEY, "a tag update on the project's key", OURS, CLAIM),
    Case(E, "s3:PutBucketPolicy", OUR_BUCKET, "the project's bucket in its account"),
    Case(E, "s3:DeleteBucket", OUR_BUCKET, "the project's bucket in its account"),
    Case(
        E,
        "iam:UpdateAssumeRolePolicy",
        OUR_ROLE,
        "the project's role, under the boundary",
        OURS,
        context={"iam:PermissionsBoundary": BOUNDARY_ARN},
    ),
    Case(
        E,
        "iam:PutRolePolicy",
        OUR_ROLE,
        "the project's role, under the boundary",
        OURS,
        context={"iam:PermissionsBoundary": BOUNDARY_ARN},
    ),
    Case(E, "iam:PassRole", OUR_ROLE, "the project's task role", OURS, context=TASKS),
    Case(E, "iam:TagRole", OUR_ROLE, "a tag update on the project's role", OURS, CLAIM),
    Case(E, "ec2:AuthorizeSecurityGroupIngress", OUR_SG, "the project's security group", OURS),
    Case(E, "ec2:DeleteSecurityGroup", OUR_SG, "the project's security group", OURS),
    Case(E, "ec2:CreateSubnet", OUR_VPC, "a subnet in the project's VPC", OURS, OURS),
    Case(
        E,
        "ec2:CreateSubnet",
        NEW_SUBNET,
        "the new subnet itself, tagged in the request",
        request_tags=OURS,
    ),
    Case(E, "ec2:CreateRoute", OUR_ROUTE_TABLE, "the project's route table", OURS),
    Case(E, "ec2:DeleteVpc", OUR_VPC, "the project's VPC", OURS),
    Case(E, "ec2:CreateTags", OUR_SG, "a tag update on the project's security group", OURS, CLAIM),
    Case(
        E,
        "ec2:CreateTags",
        OUR_SG,
        "tagging a security group as CreateSecurityGroup creates it",
        request_tags=OURS,
        context={"ec2:CreateAction": "CreateSecurityGroup"},
    ),
    Case(
        E, "elasticloadbalancing:DeleteLoadBalancer", OUR_ALB, "the project's load balancer", OURS
    ),
    Case(E, "elasticloadbalancing:ModifyListener", OUR_LISTENER, "the project's listener", OURS),
    Case(E, "elasticloadbalancing:ModifyRule", OUR_RULE, "the project's rule", OURS),
    Case(
        E,
        "elasticloadbalancing:ModifyTargetGroupAttributes",
        OUR_TARGET_GROUP,
        "the project's target group",
        OURS,
    ),
    Case(
        E, "elasticloadbalancing:AddTags", OUR_ALB, "a tag update on the project's ALB", OURS, CLAIM
    ),
    Case(E, "ecs:UpdateService", OUR_SERVICE, "the project's service", OURS),
    Case(E, "ecs:DeleteCluster", OUR_CLUSTER, "the project's cluster", OURS),
    Case(E, "ecs:TagResource", OUR_SERVICE, "a tag update on the project's service", OURS, CLAIM),
    Case(E, "logs:DeleteLogGroup", OUR_LOG_GROUP, "the project's log group", OURS),
    Case(E, "logs:PutRetentionPolicy", OUR_WAF_LOG_GROUP, "the project's WAF log group", OURS),
    Case(
        E, "logs:TagResource", OUR_LOG_GROUP, "a tag update on the project's log group", OURS, CLAIM
    ),
    Case(E, "sns:SetTopicAttributes", OUR_TOPIC, "the project's topic", OURS),
    Case(E, "sns:DeleteTopic", OUR_TOPIC, "the project's topic", OURS),
    Case(
        E, "cloudwatch:PutMetricAlarm", OUR_ALARM, "creating the project's alarm", request_tags=OURS
    ),
    Case(E, "cloudwatch:PutMetricAlarm", OUR_ALARM, "updating the project's alarm", OURS, OURS),
    Case(E, "cloudwatch:DeleteAlarms", OUR_ALARM, "the project's alarm", OURS),
    Case(E, "wafv2:UpdateWebACL", OUR_WEB_ACL, "the project's web ACL", OURS),
    Case(E, "wafv2:DeleteWebACL", OUR_WEB_ACL, "the project's web ACL", OURS),
    Case(E, "wafv2:PutLoggingConfiguration", OUR_WEB_ACL, "the project's web ACL", OURS),
    Case(E, "lambda:UpdateFunctionCode", OUR_FUNCTION, "the project's function", OURS),
    Case(E, "lambda:DeleteFunction", OUR_FUNCTION, "the project's function", OURS),
    Case(
        E,
        "ssm:GetParameters",
        arn("ssm", f"parameter/cdk-bootstrap/{QUALIFIER}/version"),
        "the bootstrap version every CDK stack resolves",
    ),
    # A stage role, where the boundary is meant to allow it.
    Case(
        B,
        "ec2:CreateNetworkInterface",
        OUR_SG,
        "the smoke-test function's network interface in the project's group",
        OURS,
    ),
    Case(B, "elasticloadbalancing:ModifyRule", OUR_RULE, "blue/green shifts the rule", OURS),
    Case(
        B,
        "elasticloadbalancing:RegisterTargets",
        OUR_TARGET_GROUP,
        "ECS registers tasks",
        OURS,
    ),
    Case(
        B,
        "logs:PutLogEvents",
        arn("logs", f"log-group:{STACK}-WebLogs-1A2B3C4D:log-stream:web/1"),
        "the project's log stream",
    ),
    Case(B, "lambda:InvokeFunction", OUR_FUNCTION, "the project's hook", OURS),
    Case(
        B,
        "ecr:BatchGetImage",
        arn("ecr", f"repository/cdk-{QUALIFIER}-container-assets-{ACCOUNT}-{REGION}"),
        "the CDK asset repository",
    ),
]

# Services of the foreign execution-role cases that have no control, and why: the execution
# role is meant to make no call of theirs on any resource.
NO_EXECUTION_CONTROL = {
    "cloudformation": "the execution role acts inside a stack, never on stacks",
}


# Foreign calls IAM cannot refuse, each with the reason and the place docs/security.md ("Where the
# guarantee stops") explains it. They must stay allowed: if one is denied, the gap has closed and
# this list and the guide must say so.
TAG_ON_CREATE = (
    "IAM cannot tell a tagging call made while CloudFormation creates the resource from one that "
    "claims an untagged resource: the service has no CreateAction condition key"
)
UNVERIFIED_HANDLER = (
    "the handler may create the resource and tag it in a second call (not verified: "
    "policies/execution_policy.py TAGS_IN_CREATE_CALL), so tagging an untagged resource stays "
    "allowed until a real account's CloudTrail shows the tags in the creating call"
)
BEFORE_TAGS = (
    "CloudFormation's security-group handler changes the inline rules of a group it creates "
    "before it tags the group (cloudformation-coverage-roadmap#714, aws-cdk#13204), so these "
    "calls accept an untagged group; a group tagged by another team stays out of reach"
)
KNOWN_GAPS = {
    (E, "ec2:AuthorizeSecurityGroupIngress", FOREIGN_SG): BEFORE_TAGS,
    (E, "ec2:RevokeSecurityGroupEgress", FOREIGN_SG): BEFORE_TAGS,
    (E, "kms:TagResource", FOREIGN_KEY): TAG_ON_CREATE,
    (E, "wafv2:TagResource", BILLING_WEB_ACL): TAG_ON_CREATE,
    (E, "iam:TagRole", LEGACY_ROLE): TAG_ON_CREATE + " (IAM::Role is tagged after creation)",
    (E, "ec2:CreateTags", FOREIGN_SG): UNVERIFIED_HANDLER,
    (E, "elasticloadbalancing:AddTags", BILLING_ALB): UNVERIFIED_HANDLER,
    (E, "logs:PutResourcePolicy", "*"): (
        "AWS authorizes it only on '*' and WAF's logging setup needs it "
        "(handler-actions.toml [[star_only]])"
    ),
}


# A request only a resource policy could allow (cross-account, the bucket has none): an
# allow-all identity policy must not allow it, or the evaluator's verdicts on the cases'
# well-formedness (above) would mean nothing.
SENTINEL = Case(E, "s3:PutBucketPolicy", ELSEWHERE_BUCKET, "no bucket policy", owner=OTHER_ACCOUNT)


def _context(case: Case) -> dict[str, Any]:
    """The request context AWS sends for `case` (see the module docstring)."""
    entry = iam_data.action(case.action)
    assert entry is not None, case.action
    keys = set(entry.condition_keys)
    types = iam_data.resource_types(entry.service)
    for key, _ in entry.resource_types:
        if key in types and types[key].pattern.match(case.resource):
            keys |= set(types[key].condition_keys)
    if entry.service in CATALOGUE_GAPS:
        resource_type = iam_data.classify(case.resource)
        if resource_type is not None:
            keys |= set(resource_type.condition_keys)
    principal = PRINCIPALS[case.principal]
    context: dict[str, Any] = {
        "aws:PrincipalArn": principal,
        "aws:PrincipalAccount": ACCOUNT,
    }
    if case.principal in (EXECUTION, PIPELINE):
        # CloudFormation makes every call of the execution role (deploy_check.FAS_CONTEXT).
        context.update(FAS_CONTEXT)
    if case.resource != "*":
        context["aws:ResourceAccount"] = case.owner
    if "kms:CallerAccount" in keys:
        context["kms:CallerAccount"] = ACCOUNT
    if "s3:ResourceAccount" in keys:
        context["s3:ResourceAccount"] = case.owner
    # Each service's alias of aws:ResourceTag (ec2:, ecs:, iam:, elasticloadbalancing:...).
    for pattern in sorted(k for k in keys if k.endswith(":ResourceTag/${TagKey}")):
        for tag, value in case.tags.items():
            context[pattern.replace("${TagKey}", tag)] = value
    if "aws:RequestTag/${TagKey}" in keys:
        for tag, value in case.request_tags.items():
            context[f"aws:RequestTag/{tag}"] = value
    if "aws:TagKeys" in keys and (case.request_tags or case.removes):
        context["aws:TagKeys"] = [*case.request_tags, *case.removes]
    context.update(case.context)
    return context


def _call(case: Case, policy_set: str) -> Call:
    resource_policy: str | None = None
    if case.resource_policy is not None:
        resource_policy = json.dumps(case.resource_policy)
    elif case.service == "kms":
        resource_policy = default_key_policy(case.owner)
    return Call(
        "foreign-resources",
        case.why,
        ACCOUNT,
        PRINCIPALS[case.principal],
        case.action,
        case.resource,
        tuple(
            sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in _context(case).items())
        ),
        resource_policy,
        policy_set=policy_set,
        resource_account=case.owner if case.owner != ACCOUNT else None,
    )


def _policy_sets() -> dict[str, list[dict[str, Any]]]:
    values = {"project": PROJECT, "qualifier": QUALIFIER}
    return {
        EXECUTION: execution_policies(ACCOUNT, "target", **values),
        PIPELINE: execution_policies(ACCOUNT, "pipeline", **values),
        BOUNDARY: boundary_policy(ACCOUNT, "target", **values),
        PIPELINE_ROLE: boundary_policy(ACCOUNT, "pipeline", **values),
        "allow-all": [{"name": "allow-all", "policy": ALLOW_ALL}],
    }


def _problems(cases: list[Case]) -> list[str]:
    """Cases that name no real action, or an ARN that is not of a resource type the action is
    authorized on ("*" for actions AWS authorizes only on "*"): such a call would be denied for
    that reason alone."""
    problems = []
    for case in cases:
        entry = iam_data.action(case.action)
        if not iam_data.exists(case.action) or entry is None:
            problems.append(f"{case.line()}: AWS has no action {case.action}")
            continue
        if not entry.resource_types:
            fits = case.resource == "*"
        else:
            fits = _fits(entry, [key for key, _ in entry.resource_types], case.resource)
            classified = iam_data.classify(case.resource)
            if entry.service in CATALOGUE_GAPS and not fits:
                # ELBv2 resources the catalogue lists under Classic types only.
                fits = classified is not None and classified.service == entry.service
            fits = fits and classified is not None
        if not fits:
            problems.append(
                f"{case.line()}: not an ARN of a resource type the action takes "
                f"({', '.join(key for key, _ in entry.resource_types) or '*'})"
            )
    return problems


def test_every_case_is_a_real_action_on_a_resource_type_it_takes() -> None:
    assert _problems(FOREIGN + CONTROLS + [SENTINEL]) == []


def test_a_misspelt_action_or_a_wrong_resource_is_caught() -> None:
    planted = [
        Case(E, "kms:PutKeyPolicies", FOREIGN_KEY, "no such action"),
        Case(E, "sns:Publish", arn("sqs", "billing-queue"), "a queue is no topic"),
        Case(E, "ecs:PutAccountSetting", BILLING_CLUSTER, "authorized on * only"),
        Case(E, "kms:Decrypt", "*", "authorized on keys"),
        Case(E, "logs:DeleteLogGroup", arn("logs", "billing-api"), "not a log group ARN"),
    ]
    problems = _problems(planted)
    assert len(problems) == len(planted), problems
    for case, problem in zip(planted, problems, strict=True):
        assert problem.startswith(case.line() + ": "), (case.why, problem)


def test_the_suite_covers_enough_services_with_controls() -> None:
    cases = FOREIGN + CONTROLS
    services = {case.service for case in FOREIGN}
    assert len(FOREIGN) >= 40 and len(services) >= 10, (len(FOREIGN), sorted(services))
    controlled = {case.service for case in CONTROLS if case.principal == EXECUTION}
    uncontrolled = (
        {case.service for case in FOREIGN if case.principal == EXECUTION}
        - controlled
        - set(NO_EXECUTION_CONTROL)
    )
    assert uncontrolled == set(), f"no execution-role control for {sorted(uncontrolled)}"
    assert set(NO_EXECUTION_CONTROL) <= services - controlled
    assert {case.principal for case in FOREIGN} == set(PRINCIPALS)
    duplicates = sorted({repr(c) for c in cases if [repr(d) for d in cases].count(repr(c)) > 1})
    assert duplicates == [], duplicates


def test_calls_on_resources_not_the_projects_are_denied() -> None:
    """One evaluator run: every case against its principal's policies and against an allow-all
    policy, and the sentinel."""
    cases = FOREIGN + CONTROLS
    calls = [_call(case, case.principal) for case in cases]
    calls += [_call(case, "allow-all") for case in cases]
    calls.append(_call(SENTINEL, "allow-all"))
    decisions = evaluate(calls, _policy_sets())
    judged = decisions[: len(cases)]
    unrestricted = decisions[len(cases) : 2 * len(cases)]
    assert decisions[-1]["decision"] == "ImplicitlyDenied", (
        "the evaluator allowed a cross-account call no resource policy allows: the allow-all "
        f"check of the cases proves nothing ({decisions[-1]})"
    )

    def denied(decision: dict[str, Any]) -> bool:
        return decision["decision"] in ("ImplicitlyDenied", "ExplicitlyDenied")

    malformed = [
        f"  {case.line()}: {plain['decision']} {plain.get('error', '')}".rstrip()
        for case, plain in zip(cases, unrestricted, strict=True)
        if plain["decision"] != "Allowed"
    ]
    outcomes = list(zip(FOREIGN, judged[: len(FOREIGN)], strict=True))

    def gap(case: Case) -> str | None:
        return KNOWN_GAPS.get((case.principal, case.action, case.resource))

    allowed = [
        f"  {case.line()}: {decision['decision']} {decision.get('error', '')}".rstrip()
        + f"; should be denied: {case.why}"
        for case, decision in outcomes
        if not denied(decision) and not gap(case)
    ]
    closed = [
        f"  {case.line()}: now denied; drop it from KNOWN_GAPS and docs/security.md"
        for case, decision in outcomes
        if denied(decision) and gap(case)
    ]
    keys = [(c.principal, c.action, c.resource) for c in FOREIGN]
    unmatched = [gap for gap in KNOWN_GAPS if keys.count(gap) != 1]
    assert unmatched == [], f"known gaps without exactly one case: {unmatched}"
    refused = [
        f"  {case.line()}: {decision['decision']} "
        f"({'; '.join(decision.get('why') or [decision.get('error', '')])}); "
        f"control, should be allowed: {case.why}"
        for case, decision in zip(CONTROLS, judged[len(FOREIGN) :], strict=True)
        if decision["decision"] != "Allowed"
    ]

    by_principal = {
        principal: sum(case.principal == principal and denied(d) for case, d in outcomes)
        for principal in PRINCIPALS
    }
    gaps = len(KNOWN_GAPS)
    record_figure(
        f"foreign-resource suite: {sum(by_principal.values())} of {len(FOREIGN) - gaps} calls "
        f"denied, {gaps} documented gaps allowed "
        f"(execution role {by_principal[EXECUTION]}, pipeline execution role "
        f"{by_principal[PIPELINE]}, boundary {by_principal[BOUNDARY]}, pipeline boundary "
        f"{by_principal[PIPELINE_ROLE]}) "
        f"across {len({c.service for c in FOREIGN})} services; "
        f"{len(CONTROLS) - len(refused)} of {len(CONTROLS)} controls allowed"
    )
    report = []
    if malformed:
        report += ["requests refused even by an allow-all policy (the case proves nothing):"]
        report += malformed
    if allowed:
        report += [f"{len(allowed)} calls on resources that are not the project's are allowed:"]
        report += allowed
    if refused:
        report += [f"{len(refused)} controls on the project's own resources are denied:"]
        report += refused
    if closed:
        report += ["known gaps that are closed now:", *closed]
    if report:
        pytest.fail("\n".join(report), pytrace=False)
