"""The self-mutating delivery pipeline that lives in the pipeline (tools) account."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aws_cdk import (
    Aspects,
    DefaultStackSynthesizer,
    Duration,
    RemovalPolicy,
    SecretValue,
    Stack,
    Stage,
    Tags,
    pipelines,
)
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_codepipeline_actions as codepipeline_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as sns_subscriptions
from constructs import Construct

from components.image_assets import IMAGE_READ_ACTIONS, destinations_in_assembly
from components.keys import confine_service_grants, publisher_key
from components.log_bucket import LogBucket
from components.tagging import TagRawResources
from configuration import DeploymentConfig, SourceConfig, StageConfig
from configuration.regions import partition_of
from configuration.waves import plan_waves
from policies.execution_policy import PROJECT_TAG, boundary_name
from stages.deployment import DeploymentStage

BUILD_IMAGE = codebuild.LinuxBuildImage.STANDARD_7_0
# What the build projects that run `make` (synth, security scan) install and print first.
PYTHON_RUNTIME = {"python": "3.11"}
INSTALL_COMMANDS = ["make --version", "python3 --version"]


class PipelineStack(Stack):
    """A CDK Pipelines `CodePipeline` (type V2) that first updates itself and publishes the
    assets, then scans the published image (the SecurityScan step, first in the first stage),
    then deploys each configured stage in order, with a manual approval before the stages that
    ask for one.

    `prepare_stage` is called on each stage before it is added (the compliance acknowledgements).
    `fast_layout=False` builds CDK Pipelines' default layout, for comparison only.

    The synth step runs the same make targets as a developer: `make test` (which installs the
    pinned dependencies), then `make synth` with the same config file and suffix.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        config_path: str,
        suffix: str,
        cli_version: str,
        prepare_stage: Callable[[Stage], None] | None = None,
        fast_layout: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        project = config.pipeline.project
        # The pipeline stack and the cross-region support stacks CodePipeline adds to the app;
        # the stages tag their own resources (tags do not cross into nested stages).
        Tags.of(scope).add(PROJECT_TAG, project)
        Aspects.of(scope).add(TagRawResources(PROJECT_TAG, project))
        source_config = config.pipeline.source
        source = _source(source_config)

        access_logs = LogBucket(self, "AccessLogs", removal_policy=RemovalPolicy.RETAIN)

        synth_context = f"CONFIG={shlex.quote(config_path)}" + (
            f" SUFFIX={suffix[1:]}" if suffix else ""
        )
        synth = pipelines.CodeBuildStep(
            "Synth",
            input=source,
            install_commands=INSTALL_COMMANDS,
            commands=["make test", f"make synth {synth_context}"],
            primary_output_directory="cdk.out",
            partial_build_spec=codebuild.BuildSpec.from_object(
                {"phases": {"install": {"runtime-versions": {**PYTHON_RUNTIME, "nodejs": "20"}}}}
            ),
            # The test suite synthesizes on two workers (each with its own jsii kernel).
            build_environment=codebuild.BuildEnvironment(
                build_image=BUILD_IMAGE, compute_type=codebuild.ComputeType.MEDIUM
            ),
        )

        self.pipeline = pipelines.CodePipeline(
            self,
            "Pipeline",
            pipeline_name=f"{project}{suffix}",
            pipeline_type=codepipeline.PipelineType.V2,
            self_mutation=True,
            cross_account_keys=True,
            enable_key_rotation=True,
            cli_version=cli_version,
            synth=synth,
            # One CloudFormation action per stack instead of create-then-execute change sets,
            # and one publishing project per asset type: fewer sequential actions per release.
            # (fast_layout=False gives CDK Pipelines' defaults; `make bench` compares the two.)
            use_change_sets=not fast_layout,
            publish_assets_in_parallel=not fast_layout,
            code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=codebuild.BuildEnvironment(build_image=BUILD_IMAGE),
            ),
        )

        # Before the first deployment: scan what was published (see _security_scan).
        self.security_scan, scan_role = _security_scan(
            self, source=source, synth=synth, access_logs=access_logs
        )

        # Targets deploy in config order; consecutive targets of one `wave` deploy in parallel
        # in one pipeline stage (split where CodePipeline's quotas require: configuration/waves).
        self.stages: list[DeploymentStage] = []
        for wave_plan in plan_waves(list(config.stages)):
            # The first pipeline stage after the assets scans before it deploys (configuration.
            # waves counts the action against CodePipeline's quota there).
            pre: list[pipelines.Step] = [self.security_scan] if wave_plan.scan else []
            if wave_plan.approval:
                approval = pipelines.ManualApprovalStep(f"Approve-{wave_plan.name}")
                if wave_plan.scan:
                    # Nobody is asked to approve an image that has not passed the scan.
                    approval.add_step_dependency(self.security_scan)
                pre.append(approval)
            wave = None if wave_plan.standalone else self.pipeline.add_wave(wave_plan.name, pre=pre)
            for stage_config in wave_plan.stages:
                stage = DeploymentStage(
                    self,
                    stage_config.name,
                    stage=stage_config,
                    project=project,
                    qualifier=config.pipeline.qualifier,
                    suffix=suffix,
                )
                # Every grant to an AWS service in the stage's key and topic policies names the
                # stage's account (before CDK Pipelines synthesizes the stage, below).
                confine_service_grants(stage)
                if prepare_stage is not None:
                    # CDK Pipelines synthesizes a stage when it is added: finish it before that.
                    prepare_stage(stage)
                # After each target: smoke-test its public endpoint; a failure stops the
                # pipeline before the next stage.
                post: list[pipelines.Step] = [_smoke_test(stage, stage_config, source)]
                protect = _protect_stacks(stage)
                if protect is not None:
                    post.append(protect)
                if wave is None:
                    self.pipeline.add_stage(stage, pre=pre, post=post)
                else:
                    wave.add_stage(stage, post=post)
                self.stages.append(stage)
        _allow_reading_assets(scan_role, self.stages)

        # The construct tree of a CDK Pipeline exists only once it is built; build it here so
        # that the trigger below and the compliance checks can see every construct.
        self.pipeline.build_pipeline()
        _notifications(self, self.pipeline.pipeline, config.pipeline.notify_emails)
        _harden_artifact_bucket(self.pipeline.pipeline.artifact_bucket, access_logs)
        # Stages in other regions get a replication bucket in a support stack per region.
        for support in self.pipeline.pipeline.cross_region_support.values():
            _harden_artifact_bucket(support.replication_bucket, None)
        if source_config.connection_arn is not None:
            _trigger_on_push(self.pipeline.pipeline, source_config.branch)
            _allow_connection_use(self.pipeline.pipeline, source_config.connection_arn)
        _confine_asset_roles(self)
        confine_service_grants(self)
        _apply_boundary(self, boundary_name(project, "pipeline"))


def _source(source: SourceConfig) -> pipelines.CodePipelineSource:
    if source.connection_arn is not None:
        return pipelines.CodePipelineSource.connection(
            source.repository,
            source.branch,
            connection_arn=source.connection_arn,
            trigger_on_push=True,
        )
    # GitHub token source: CodePipeline's webhook already filters on the configured branch.
    assert source.github_token_secret is not None  # guaranteed by SourceConfig
    return pipelines.CodePipelineSource.git_hub(
        source.repository,
        source.branch,
        authentication=SecretValue.secrets_manager(source.github_token_secret),
        trigger=codepipeline_actions.GitHubTrigger.WEBHOOK,
    )


TRIVY_CACHE = "/root/.cache/trivy"


def _security_scan(
    scope: Construct,
    *,
    source: pipelines.IFileSetProducer,
    synth: pipelines.IFileSetProducer,
    access_logs: LogBucket,
) -> tuple[pipelines.CodeBuildStep, iam.Role]:
    """Trivy on what ships, as a CDK Pipelines step that the first stage (or wave) runs before
    anything else: `make scan-pipeline`, the same script as `make scan` (ops/scan.py).

    CDK Pipelines publishes every asset in its Assets stage, before the first stage runs, so the
    step finds the image in every target's asset repository. It resolves the asset's tag to a
    digest in the first target's repository, checks that the tag resolves to that same digest
    in every other target's, and has Trivy read the image by digest straight from the registry
    (no Docker daemon, so no privileged mode): vulnerabilities, secrets and misconfigurations,
    and a CycloneDX SBOM that names the digest. Then the source, Dockerfile and template scans,
    and the expiry of the ignores.

    Its role reads the source and synth artifacts, writes its reports, keeps Trivy's database in
    its own cache bucket, and reads the targets' asset repositories (granted by
    `_allow_reading_assets` from the stages' asset manifests, once CDK Pipelines has synthesized
    the stages).
    """
    key = kms.Key(
        scope,
        "ScanCacheKey",
        description="Encrypts the security scan's vulnerability database cache",
        enable_key_rotation=True,
        removal_policy=RemovalPolicy.DESTROY,
    )
    cache_bucket = s3.Bucket(
        scope,
        "ScanCache",
        encryption=s3.BucketEncryption.KMS,
        encryption_key=key,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        minimum_tls_version=1.2,
        versioned=True,
        server_access_logs_bucket=access_logs.bucket,
        server_access_logs_prefix="scan-cache/",
        removal_policy=RemovalPolicy.DESTROY,
        auto_delete_objects=True,
        lifecycle_rules=[
            s3.LifecycleRule(
                id="ExpireOldCache",
                expiration=Duration.days(30),
                noncurrent_version_expiration=Duration.days(1),
            )
        ],
    )
    role = iam.Role(
        scope,
        "SecurityScanRole",
        assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"),
        description="The security scan: reads the release and the targets' asset repositories",
    )
    # ECR authorization tokens are not tied to a registry or repository: the action supports no
    # resource-level permissions, so it is granted on "*" ("Amazon ECR requires that users have
    # permission to make calls to the ecr:GetAuthorizationToken API through an IAM policy";
    # https://docs.aws.amazon.com/AmazonECR/latest/userguide/repository-policy-examples.html and
    # https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticcontainerregistry.html).
    # What the token reaches is decided by the repository permissions below.
    role.add_to_principal_policy(
        iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"])
    )
    step = pipelines.CodeBuildStep(
        "SecurityScan",
        input=source,
        # CDK Pipelines links the synth output here; ops.scan resolves the link.
        additional_inputs={"cdk.out": synth},
        install_commands=INSTALL_COMMANDS,
        commands=["make scan-pipeline"],
        primary_output_directory="scan-reports",
        build_environment=codebuild.BuildEnvironment(build_image=BUILD_IMAGE, privileged=False),
        env={"TRIVY_CACHE_DIR": TRIVY_CACHE},
        cache=codebuild.Cache.bucket(cache_bucket, prefix="trivy"),
        role=role,
        partial_build_spec=codebuild.BuildSpec.from_object(
            {
                # Node as in the synth step: the script reads the config package, which loads
                # aws-cdk-lib (and so jsii) for its region facts.
                "phases": {"install": {"runtime-versions": {**PYTHON_RUNTIME, "nodejs": "20"}}},
                "cache": {"paths": [f"{TRIVY_CACHE}/**/*"]},
            }
        ),
    )
    return step, role


def _allow_reading_assets(role: iam.Role, stages: list[DeploymentStage]) -> None:
    """Let the scan's role read (only) the repositories the stages' images are published to, as
    the stages' own asset manifests name them (the same files the scan reads at run time).

    Reading another account's repository also needs that repository's policy to allow the
    pipeline account (https://docs.aws.amazon.com/AmazonECR/latest/userguide/repository-policies.html);
    see docs/security.md, 'Security scanning'."""
    arns = sorted(
        {
            destination.repository_arn
            for stage in stages
            # CDK Pipelines synthesized the stage when it was added; this returns that assembly.
            for _, destinations in destinations_in_assembly(
                Path(stage.synth().directory), stage.stage_name
            ).values()
            for destination in destinations
        }
    )
    if arns:
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=IMAGE_READ_ACTIONS, resources=arns)
        )


def _harden_artifact_bucket(bucket: s3.IBucket, access_logs: LogBucket | None) -> None:
    """Versioning, access logs and lifecycle for a bucket CDK Pipelines creates.

    The bucket itself (and its cross-account KMS key) stays CDK's own, so the grants CDK makes to
    the target accounts' roles keep working; only properties are added.
    """
    cfn_bucket = bucket.node.default_child
    assert isinstance(cfn_bucket, s3.CfnBucket)
    cfn_bucket.versioning_configuration = s3.CfnBucket.VersioningConfigurationProperty(
        status="Enabled"
    )
    if access_logs is not None:
        access_logs.receive_server_access_logs(cfn_bucket, bucket.bucket_arn, "pipeline-artifacts/")
    cfn_bucket.lifecycle_configuration = s3.CfnBucket.LifecycleConfigurationProperty(
        rules=[
            s3.CfnBucket.RuleProperty(
                id="ExpireOldArtifacts",
                status="Enabled",
                expiration_in_days=180,
                noncurrent_version_expiration=s3.CfnBucket.NoncurrentVersionExpirationProperty(
                    noncurrent_days=30
                ),
                abort_incomplete_multipart_upload=s3.CfnBucket.AbortIncompleteMultipartUploadProperty(
                    days_after_initiation=7
                ),
            )
        ]
    )


def _smoke_test(
    stage: DeploymentStage, config: StageConfig, source: pipelines.CodePipelineSource
) -> pipelines.CodeBuildStep:
    """Probe the stage's public listener with the same script the lifecycle hook uses: health,
    the version just deployed, and the configured paths, with retries and backoff."""
    service = config.service
    web = stage.service.web
    command = [
        "python3 service/smoke/probe.py",
        '--host "$SERVICE_HOST"',
        f"--port {web.port}",
        f"--scheme {web.scheme}",
        *([f"--server-name {shlex.quote(service.domain_name)}"] if service.domain_name else []),
        '--expected-version "$SERVICE_VERSION"',
        *[f"--check {shlex.quote(f'{c.path}:{c.status}')}" for c in config.release.smoke_checks],
        "--attempts 6 --backoff 5 --timeout 5",
    ]
    return pipelines.CodeBuildStep(
        "SmokeTest",
        input=source,
        env_from_cfn_outputs={
            "SERVICE_HOST": stage.service.dns_output,
            "SERVICE_VERSION": stage.service.version_output,
        },
        commands=[" ".join(command)],
    )


def _notifications(scope: Construct, pipeline: codepipeline.Pipeline, emails: list[str]) -> None:
    """Failed and succeeded executions and approvals waiting, to a KMS-encrypted topic."""
    key = publisher_key(
        scope,
        "NotificationKey",
        description="Encrypts the pipeline's notifications",
        removal_policy=RemovalPolicy.DESTROY,
        sid="AllowCodeStarNotifications",
        service="codestar-notifications.amazonaws.com",
    )
    topic = sns.Topic(scope, "Notifications", master_key=key, enforce_ssl=True)
    for email in emails:
        topic.add_subscription(sns_subscriptions.EmailSubscription(email))
    pipeline.notify_on(
        "ExecutionNotifications",
        topic,
        events=[
            codepipeline.PipelineNotificationEvents.PIPELINE_EXECUTION_FAILED,
            codepipeline.PipelineNotificationEvents.PIPELINE_EXECUTION_SUCCEEDED,
            codepipeline.PipelineNotificationEvents.MANUAL_APPROVAL_NEEDED,
        ],
    )


def _protect_stacks(stage: DeploymentStage) -> pipelines.CodeBuildStep | None:
    """Turn on termination protection for the stage's stacks that ask for it (production's).

    CodePipeline's CloudFormation action ignores a stack's termination protection setting
    (aws/aws-cdk#17871), so the pipeline sets it after deploying, through the stage account's CDK
    deploy role (which trusts this step's role, one of the pipeline stack's, and may call
    cloudformation:UpdateTerminationProtection on the project's stacks: ops/bootstrap_template.py).
    """
    stacks = [stack for stack in stage.stacks if stack.termination_protection]
    if not stacks:
        return None
    region, synthesizer = stacks[0].region, stacks[0].synthesizer
    assert isinstance(synthesizer, DefaultStackSynthesizer)
    # The role CDK Pipelines' own deploy actions use, with the stage's partition filled in.
    deploy_role = synthesizer.deploy_role_arn.replace("${AWS::Partition}", partition_of(region))
    commands = [
        f"aws configure set profile.target.role_arn {deploy_role}",
        "aws configure set profile.target.credential_source EcsContainer",
    ] + [
        "aws cloudformation update-termination-protection --enable-termination-protection "
        f"--profile target --region {region} --stack-name {stack.stack_name}"
        for stack in stacks
    ]
    return pipelines.CodeBuildStep(
        "ProtectStacks",
        commands=commands,
        role_policy_statements=[
            iam.PolicyStatement(actions=["sts:AssumeRole"], resources=[deploy_role])
        ],
    )


BUILD_ACTIONS = frozenset(
    {"codebuild:BatchGetBuilds", "codebuild:StartBuild", "codebuild:StopBuild"}
)


def _confine_asset_roles(stack: Stack) -> None:
    """CDK Pipelines lets its asset-publishing roles start, stop and read builds of any project
    ("*"), the production ProtectStacks project (which assumes the production deploy role)
    included. Each role runs only its own publishing projects: limit those actions to the
    projects that run as that role.

    The roles' default policies are CDK's; the statement is found by its actions in the rendered
    document and only its Resource is changed (an escape hatch on the CfnPolicy;
    tests/stacks/test_pipeline.py checks the synthesized policies with the IAM evaluator, so a
    change in CDK Pipelines fails there, not in an account)."""
    projects: dict[str, list[Any]] = {}
    for construct in stack.node.find_all():
        if isinstance(construct, codebuild.CfnProject):
            role = stack.resolve(construct.service_role)
            if isinstance(role, dict) and "Fn::GetAtt" in role:
                projects.setdefault(role["Fn::GetAtt"][0], []).append(
                    {"Fn::GetAtt": [stack.get_logical_id(construct), "Arn"]}
                )
    assets = stack.node.find_child("Pipeline").node.try_find_child("Assets")
    roles = [c for c in assets.node.children if isinstance(c, iam.Role)] if assets else []
    for role in roles:
        own = projects.get(stack.get_logical_id(role.node.default_child), [])  # type: ignore[arg-type]
        policy = role.node.find_child("DefaultPolicy")
        assert isinstance(policy, iam.Policy)
        cfn_policy = policy.node.default_child
        assert isinstance(cfn_policy, iam.CfnPolicy)
        document = stack.resolve(policy.document)
        for statement in document["Statement"]:
            actions = statement["Action"]
            actions = {actions} if isinstance(actions, str) else set(actions)
            if actions & BUILD_ACTIONS and statement.get("Resource") == "*":
                if actions - BUILD_ACTIONS or not own:
                    raise ValueError(
                        f"{role.node.path}: CDK Pipelines' build statement changed shape "
                        f"({sorted(actions)}, projects {own}); revisit _confine_asset_roles."
                    )
                statement["Resource"] = own
        # The rendered document replaces CDK's (which the compliance checks read too); nothing
        # is added to these roles after the pipeline is built.
        cfn_policy.policy_document = document


def _apply_boundary(stack: Stack, name: str) -> None:
    """Every role of the pipeline stack carries the pipeline account's permissions boundary
    (policies/pipeline-permissions-boundary.json, created by `make bootstrap`): the execution
    policy lets CloudFormation create roles only with it. The stages are left out: their roles
    live in the target accounts and carry those accounts' boundary (stages/deployment.py)."""
    boundary = iam.ManagedPolicy.from_managed_policy_name(stack, "PermissionsBoundary", name)
    # An aspect does not reach into a nested Stage, so the stages keep their own boundary.
    iam.PermissionsBoundary.of(stack).apply(boundary)


def _allow_connection_use(pipeline: codepipeline.Pipeline, connection_arn: str) -> None:
    """CDK grants `codestar-connections:UseConnection`; connections created since the service was
    renamed have `arn:...:codeconnections:` ARNs, whose action prefix must match. Grant both."""
    source = pipeline.stages[0]
    action_name = source.actions[0].action_properties.action_name
    role = pipeline.node.find_child(source.stage_name).node.find_child(action_name)
    role = role.node.find_child("CodePipelineActionRole")
    assert isinstance(role, iam.Role)
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["codeconnections:UseConnection", "codestar-connections:UseConnection"],
            resources=[connection_arn],
        )
    )


def _trigger_on_push(pipeline: codepipeline.Pipeline, branch: str) -> None:
    """A V2 push trigger filtered on `branch`: the pipeline's own record of what starts it (the
    source action watches the same branch), visible and editable as pipeline configuration."""
    source_action = pipeline.stages[0].actions[0]
    pipeline.add_trigger(
        provider_type=codepipeline.ProviderType.CODE_STAR_SOURCE_CONNECTION,
        git_configuration=codepipeline.GitConfiguration(
            source_action=source_action,
            push_filter=[codepipeline.GitPushFilter(branches_includes=[branch])],
        ),
    )
