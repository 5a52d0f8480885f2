"""One deployment target: the same Stage class for every account and region in the config."""

from __future__ import annotations

from typing import Any

from aws_cdk import Aspects, Environment, RemovalPolicy, Stack, Stage, Tags
from aws_cdk import aws_iam as iam
from constructs import Construct

from components.tagging import TagRawResources
from configuration import StageConfig
from policies.execution_policy import PROJECT_TAG, boundary_name
from stacks.service import ServiceStack

# https://docs.aws.amazon.com/cdk/v2/guide/bootstrapping-customizing.html
BOOTSTRAP_QUALIFIER_CONTEXT = "@aws-cdk/core:bootstrapQualifier"


class DeploymentStage(Stage):
    """The service stack (network, cluster, service) of one target, deployed into that target's
    account and region.

    Differences between targets come only from `StageConfig`: a production stage gets termination
    protection and keeps stateful resources when a stack is deleted; others clean up after
    themselves.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: StageConfig,
        project: str,
        qualifier: str,
        suffix: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            env=Environment(account=stage.account, region=stage.region),
            **kwargs,
        )
        removal_policy = RemovalPolicy.RETAIN if stage.production else RemovalPolicy.DESTROY
        # The project's own bootstrap (`make bootstrap` uses the same qualifier): its deploy and
        # execution roles, asset bucket and repository, apart from any other CDK app's. CDK's
        # default synthesizer of each stack below reads it from this context key. (A synthesizer
        # object created here in Python does not expose its role ARNs through jsii once bound.)
        self.node.set_context(BOOTSTRAP_QUALIFIER_CONTEXT, qualifier)
        # Every taggable resource of the stage carries the project tag: the execution policies
        # and the boundary only let CloudFormation and the stage's roles act on what carries it.
        Tags.of(self).add(PROJECT_TAG, project)
        Aspects.of(self).add(TagRawResources(PROJECT_TAG, project))
        name = f"{project}-{stage.name}{suffix}"

        self.service = ServiceStack(
            self,
            "Service",
            stack_name=f"{name}-service",
            network=stage.network,
            availability_zones=stage.availability_zones,
            service=stage.service,
            release=stage.release,
            service_name=project,
            production=stage.production,
            removal_policy=removal_policy,
            termination_protection=stage.production,
        )
        self.stacks: list[Stack] = [self.service]

        # Every IAM role in every stack of the stage carries the boundary that `make bootstrap`
        # creates in the target account (policies/permissions-boundary.json); the execution
        # policy only lets CloudFormation create roles that carry it.
        boundary = iam.ManagedPolicy.from_managed_policy_name(
            self.service, "PermissionsBoundary", boundary_name(project)
        )
        iam.PermissionsBoundary.of(self).apply(boundary)
