"""The targets' bootstrap template: the pinned CLI's own (committed, compared with the CLI), with
the trust confined to the pipeline's roles and the deploy role to the project's stacks. The trust
semantics are checked with the IAM policy evaluator (@cloud-copilot/iam-simulate), on the
template as CloudFormation would resolve it."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from components.image_assets import IMAGE_READ_ACTIONS
from configuration import load_config
from ops.bootstrap import pipeline_trust
from ops.bootstrap_template import (
    PINNED_TEMPLATE,
    SID,
    STACK_SCOPED_SIDS,
    TRUSTED_ROLES,
    PipelineTrust,
    TemplateError,
    cdk_template_text,
    customize,
    pinned_template,
    write_template,
)

from ..conftest import DEFAULT_CONFIG
from ..simulate import simulate

PIPELINE = "111111111111"
TARGET = "222222222222"
REGION = "eu-west-1"
TRUST = PipelineTrust("webapp", "aws", PIPELINE)
ROLE = f"arn:aws:iam::{TARGET}:role/cdk-webapp-{{}}-role-{TARGET}-{REGION}"
REPOSITORY = (
    f"arn:aws:ecr:{REGION}:{TARGET}:repository/cdk-webapp-container-assets-{TARGET}-{REGION}"
)
# Roles of the pipeline stack `webapp-pipeline` as CloudFormation names them
# (<stack name>-<logical id, cut to fit>-<random>), and of a developer's copy (SUFFIX=alice).
PIPELINE_ROLE = f"arn:aws:iam::{PIPELINE}:role/webapp-pipeline-PipelineRoleB27FAA37-1A2B3C4D5E6F"
FILE_ROLE = f"arn:aws:iam::{PIPELINE}:role/webapp-pipeline-PipelineAssetsFileRole59943A-1X2Y3Z"
PROTECT_ROLE = f"arn:aws:iam::{PIPELINE}:role/webapp-pipeline-alice-PipelineprodProtectSt-9Q8W7E"
SCAN_ROLE = f"arn:aws:iam::{PIPELINE}:role/webapp-pipeline-SecurityScanRole4BCA61C4-AB12CD34"
OUTSIDERS = [
    f"arn:aws:iam::{PIPELINE}:role/someone-else",
    f"arn:aws:iam::{PIPELINE}:root",
    f"arn:aws:iam::{PIPELINE}:user/admin",
    f"arn:aws:iam::{PIPELINE}:role/webapp-staging-service-TaskRole-ABC",  # not the pipeline's
    "arn:aws:iam::444444444444:role/webapp-pipeline-PipelineRoleB27FAA37-1A2B3C4D5E6F",
]


@pytest.fixture(scope="module")
def cdk_template() -> dict[str, Any]:
    return pinned_template()


@pytest.fixture(scope="module")
def template(cdk_template: dict[str, Any]) -> dict[str, Any]:
    return customize(cdk_template, TRUST)


def test_the_committed_template_is_the_pinned_clis_own() -> None:
    """A CDK CLI upgrade changes `--show-template`: this fails until policies/ holds the new
    template and ops/bootstrap_template.py has been checked against it."""
    assert cdk_template_text() == PINNED_TEMPLATE.read_text(encoding="utf-8"), (
        "the CDK CLI's bootstrap template differs from policies/cdk-bootstrap-template.yaml: "
        "review the diff, then `node_modules/.bin/cdk bootstrap --show-template > "
        "policies/cdk-bootstrap-template.yaml`"
    )


def _without_changes(template: dict[str, Any], cdk: dict[str, Any]) -> dict[str, Any]:
    """`template` with the parts customize() may change put back as CDK has them."""
    rest = copy.deepcopy(template)
    for role in (*TRUSTED_ROLES, "LookupRole"):
        rest["Resources"][role]["Properties"]["AssumeRolePolicyDocument"] = cdk["Resources"][role][
            "Properties"
        ]["AssumeRolePolicyDocument"]
    rest["Resources"]["DeploymentActionRole"]["Properties"]["Policies"] = cdk["Resources"][
        "DeploymentActionRole"
    ]["Properties"]["Policies"]
    rest["Resources"]["ContainerAssetsRepository"]["Properties"]["RepositoryPolicyText"] = cdk[
        "Resources"
    ]["ContainerAssetsRepository"]["Properties"]["RepositoryPolicyText"]
    rest["Parameters"]["BootstrapVariant"] = cdk["Parameters"]["BootstrapVariant"]
    return rest


def test_everything_else_is_cdks_template(
    template: dict[str, Any], cdk_template: dict[str, Any]
) -> None:
    assert template != cdk_template
    assert _without_changes(template, cdk_template) == cdk_template
    assert "webapp" in template["Parameters"]["BootstrapVariant"]["Default"]


def test_applying_it_twice_changes_nothing_more(template: dict[str, Any]) -> None:
    assert customize(template, TRUST) == template


def test_a_template_of_another_shape_fails_loudly(cdk_template: dict[str, Any]) -> None:
    with pytest.raises(TemplateError, match="ContainerAssetsRepository"):
        broken = copy.deepcopy(cdk_template)
        del broken["Resources"]["ContainerAssetsRepository"]
        customize(broken, TRUST)
    with pytest.raises(TemplateError, match="FilePublishingRole has 0 statements"):
        broken = copy.deepcopy(cdk_template)
        statements = broken["Resources"]["FilePublishingRole"]["Properties"][
            "AssumeRolePolicyDocument"
        ]["Statement"]
        statements[:] = statements[:2]
        customize(broken, TRUST)


def test_written_as_yaml_that_reads_back_the_same(
    cdk_template: dict[str, Any], tmp_path: Any
) -> None:
    path = write_template(tmp_path / "t.yaml", TRUST, copy.deepcopy(cdk_template))
    assert yaml.safe_load(path.read_text()) == customize(cdk_template, TRUST)


def test_the_patterns_come_from_the_config(tmp_path: Any) -> None:
    text = DEFAULT_CONFIG.read_text().replace('project = "webapp"', 'project = "shop2"')
    text = text.replace("111111111111", "999999999999")
    (tmp_path / "config.toml").write_text(text)
    trust = pipeline_trust(load_config(tmp_path / "config.toml"))
    assert trust.principal_patterns == ["arn:aws:iam::999999999999:role/shop2-pipeline-*"]
    assert trust.stack_pattern["Fn::Sub"].endswith(":stack/shop2-*/*")
    other = customize(pinned_template(), trust)
    assert "shop2-pipeline-*" in str(other) and "webapp" not in str(other)


# --- The template as CloudFormation resolves it, evaluated by the IAM policy evaluator. ---

PARAMETERS: dict[str, Any] = {
    "TrustedAccounts": [PIPELINE],
    "TrustedAccountsForLookup": [],
    "Qualifier": "webapp",
    "AWS::AccountId": TARGET,
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
    "AWS::NoValue": None,
}
ATTRIBUTES = {
    "CloudFormationExecutionRole.Arn": ROLE.format("cfn-exec"),
    "FilePublishingRole.Arn": ROLE.format("file-publishing"),
    "StagingBucket.Arn": f"arn:aws:s3:::cdk-webapp-assets-{TARGET}-{REGION}",
    "ContainerAssetsRepository.Arn": REPOSITORY,
    "FileAssetsBucketEncryptionKey.Arn": f"arn:aws:kms:{REGION}:{TARGET}:key/1234",
}


def _resolve(template: dict[str, Any], value: Any, parameters: dict[str, Any]) -> Any:
    """The intrinsic functions CDK's bootstrap template uses in its policies, resolved."""
    defaults = {k: v.get("Default", "") for k, v in template["Parameters"].items()}
    values = {**defaults, **parameters}

    def condition(name: str) -> bool:
        return bool(evaluate(template["Conditions"][name]))

    def evaluate(node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (evaluate(item) for item in node) if v is not None]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                return values[arg] if arg in values else arg
            if key == "Condition":
                return condition(arg)
            if key == "Fn::If":
                return evaluate(arg[1] if condition(arg[0]) else arg[2])
            if key == "Fn::Not":
                return not evaluate(arg[0])
            if key == "Fn::And":
                return all(evaluate(a) for a in arg)
            if key == "Fn::Equals":
                return evaluate(arg[0]) == evaluate(arg[1])
            if key == "Fn::Join":
                return arg[0].join(evaluate(arg[1]) if isinstance(arg[1], dict) else arg[1])
            if key == "Fn::Sub":
                return re.sub(
                    r"\$\{([^}]+)\}",
                    lambda m: str(ATTRIBUTES.get(m[1], values.get(m[1]))),
                    arg,
                )
        result = {k: evaluate(v) for k, v in node.items()}
        return {k: v for k, v in result.items() if v is not None}

    return evaluate(value)


def _account_principals(document: dict[str, Any]) -> dict[str, Any]:
    """IAM stores an account id given as principal as the account's root ARN."""
    for statement in document["Statement"]:
        aws = statement.get("Principal", {}).get("AWS")
        if aws is not None:
            ids = aws if isinstance(aws, list) else [aws]
            statement["Principal"]["AWS"] = [
                f"arn:aws:iam::{a}:root" if re.fullmatch(r"\d{12}", a) else a for a in ids
            ]
    return document


def _trust_policy(template: dict[str, Any], role: str, **parameters: Any) -> dict[str, Any]:
    document = template["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]
    resolved = _resolve(template, document, {**PARAMETERS, **parameters})
    return _account_principals({"Version": "2012-10-17", **resolved})


def _assume(trust_policy: dict[str, Any], principal: str, role_arn: str) -> str:
    (decision,) = simulate(
        [
            {
                "principal": principal,
                "resourceAccount": TARGET,
                "action": "sts:AssumeRole",
                "resource": role_arn,
                "context": {},
                "resourcePolicy": trust_policy,
            }
        ]
    )
    return decision


@pytest.mark.parametrize(
    ("role", "name", "principal"),
    [
        ("DeploymentActionRole", "deploy", PIPELINE_ROLE),  # CodePipeline's deploy actions
        ("DeploymentActionRole", "deploy", PROTECT_ROLE),  # ProtectStacks, in a suffixed copy
        ("FilePublishingRole", "file-publishing", FILE_ROLE),
        ("ImagePublishingRole", "image-publishing", FILE_ROLE.replace("File", "Docker")),
    ],
)
def test_the_pipelines_roles_may_assume_the_targets_roles(
    template: dict[str, Any], role: str, name: str, principal: str
) -> None:
    assert _assume(_trust_policy(template, role), principal, ROLE.format(name)) == "Allowed"


@pytest.mark.parametrize("role", TRUSTED_ROLES)
@pytest.mark.parametrize("principal", OUTSIDERS)
def test_no_other_principal_of_the_pipeline_account_may(
    template: dict[str, Any], role: str, principal: str
) -> None:
    name = {"DeploymentActionRole": "deploy"}.get(role, role[:-4].lower().replace("publ", "-publ"))
    assert _assume(_trust_policy(template, role), principal, ROLE.format(name)) != "Allowed"


def test_cdks_own_template_would_let_any_of_them(cdk_template: dict[str, Any]) -> None:
    """The evaluator sees the difference: CDK's trust admits every principal of the account."""
    trust = _trust_policy(cdk_template, "DeploymentActionRole")
    assert _assume(trust, OUTSIDERS[0], ROLE.format("deploy")) == "Allowed"


def test_lookups_only_where_granted_for_lookup(template: dict[str, Any]) -> None:
    lookup = ROLE.format("lookup")
    # `--trust` no longer implies lookups: the pipeline's roles cannot look up either.
    assert _assume(_trust_policy(template, "LookupRole"), PIPELINE_ROLE, lookup) != "Allowed"
    granted = _trust_policy(template, "LookupRole", TrustedAccountsForLookup=[PIPELINE])
    assert _assume(granted, f"arn:aws:iam::{PIPELINE}:role/developer", lookup) == "Allowed"
    cdk = _trust_policy(pinned_template(), "LookupRole")
    assert _assume(cdk, PIPELINE_ROLE, lookup) == "Allowed"  # what CDK's template does


def test_an_external_id_is_still_refused(template: dict[str, Any]) -> None:
    (decision,) = simulate(
        [
            {
                "principal": PIPELINE_ROLE,
                "resourceAccount": TARGET,
                "action": "sts:AssumeRole",
                "resource": ROLE.format("deploy"),
                "context": {"sts:ExternalId": "confused-deputy"},
                "resourcePolicy": _trust_policy(template, "DeploymentActionRole"),
            }
        ]
    )
    assert decision != "Allowed"


def _repository_read(template: dict[str, Any], principal: str) -> str:
    properties = template["Resources"]["ContainerAssetsRepository"]["Properties"]
    policy = _account_principals(_resolve(template, properties["RepositoryPolicyText"], PARAMETERS))
    decisions = simulate(
        [
            {
                "principal": principal,
                "resourceAccount": TARGET,
                "action": action,
                "resource": REPOSITORY,
                "context": {},
                "resourcePolicy": policy,
            }
            for action in IMAGE_READ_ACTIONS
        ]
    )
    return "Allowed" if set(decisions) == {"Allowed"} else "Denied"


def test_only_the_pipelines_roles_may_read_the_targets_images(template: dict[str, Any]) -> None:
    assert _repository_read(template, SCAN_ROLE) == "Allowed"
    for outsider in OUTSIDERS:
        assert _repository_read(template, outsider) == "Denied"
    statement = template["Resources"]["ContainerAssetsRepository"]["Properties"][
        "RepositoryPolicyText"
    ]["Statement"][-1]["Fn::If"][1]
    assert statement["Sid"] == SID and sorted(statement["Action"]) == sorted(IMAGE_READ_ACTIONS)


STACK = f"arn:aws:cloudformation:{REGION}:{TARGET}:stack/{{}}/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9"
DEPLOY_ACTIONS = [
    "cloudformation:CreateChangeSet",
    "cloudformation:DeleteChangeSet",
    "cloudformation:ExecuteChangeSet",
    "cloudformation:CreateStack",
    "cloudformation:UpdateStack",
    "cloudformation:RollbackStack",
    "cloudformation:ContinueUpdateRollback",
    "cloudformation:DeleteStack",
    "cloudformation:UpdateTerminationProtection",
]


def _deploy_role_may(template: dict[str, Any], action: str, resource: str) -> str:
    properties = template["Resources"]["DeploymentActionRole"]["Properties"]
    (policy,) = _resolve(template, properties["Policies"], PARAMETERS)
    (decision,) = simulate(
        [
            {
                "set": "deploy",
                "principal": ROLE.format("deploy"),
                "action": action,
                "resource": resource,
            }
        ],
        {"deploy": [{"name": "default", "policy": policy["PolicyDocument"]}]},
    )
    return decision


@pytest.mark.parametrize("action", DEPLOY_ACTIONS)
def test_the_deploy_role_acts_on_the_projects_stacks_only(
    template: dict[str, Any], action: str
) -> None:
    for stack in ("webapp-staging-service", "webapp-prod-alice-service"):
        assert _deploy_role_may(template, action, STACK.format(stack)) == "Allowed"
    for stack in ("billing-prod-service", "CDKToolkit-webapp", "webapp"):
        assert _deploy_role_may(template, action, STACK.format(stack)) != "Allowed"
    other_account = STACK.format("webapp-staging-service").replace(TARGET, "444444444444")
    assert _deploy_role_may(template, action, other_account) != "Allowed"


def test_the_deploy_role_keeps_what_the_cli_needs(template: dict[str, Any]) -> None:
    assert _deploy_role_may(template, "sts:GetCallerIdentity", "*") == "Allowed"
    assert _deploy_role_may(template, "iam:PassRole", ROLE.format("cfn-exec")) == "Allowed"
    statements = template["Resources"]["DeploymentActionRole"]["Properties"]["Policies"][0][
        "PolicyDocument"
    ]["Statement"]
    scoped = [s for s in statements if s.get("Sid") in STACK_SCOPED_SIDS]
    assert len(scoped) == len(STACK_SCOPED_SIDS)
    assert all(s["Resource"] == TRUST.stack_pattern for s in scoped)
    # CDK's template: any stack of the account.
    assert _deploy_role_may(pinned_template(), DEPLOY_ACTIONS[0], STACK.format("billing")) == (
        "Allowed"
    )


def test_cfn_lint_finds_nothing_new_in_it(template: dict[str, Any], tmp_path: Any) -> None:
    """cfn-lint (offline): no error, and no finding CDK's own template does not have too (it
    warns about an unused BootstrapVariant parameter and the staging bucket's AccessControl)."""
    import subprocess
    import sys
    from pathlib import Path

    cfn_lint = str(Path(sys.executable).parent / "cfn-lint")
    path = write_template(tmp_path / "t.yaml", TRUST, pinned_template())

    def findings(file: Path) -> tuple[int, set[str]]:
        result = subprocess.run(
            [cfn_lint, "--format", "parseable", "--", str(file)],
            capture_output=True,
            text=True,
            check=False,
        )
        rules = {line.split(":")[5] for line in result.stdout.splitlines() if line.count(":") >= 6}
        return result.returncode, rules

    code, rules = findings(path)
    _, cdk_rules = findings(PINNED_TEMPLATE)
    assert "W2001" in cdk_rules  # the output is read (CDK's template has that warning)
    assert code & 2 == 0, rules  # cfn-lint's exit code has bit 2 set for errors
    assert rules <= cdk_rules


def test_every_action_scoped_to_the_stacks_is_authorized_on_a_stack(
    cdk_template: dict[str, Any],
) -> None:
    """The deploy role's CloudFormation statements move from `*` to the project's stacks: that is
    sound only for actions AWS authorizes on a stack ARN (AWS's catalogue says which). One with no
    resource type (ListStacks, say) would be denied on a stack pattern instead of scoped."""
    from ops.bootstrap_template import STACK_SCOPED_SIDS
    from policies import iam_data

    role = cdk_template["Resources"]["DeploymentActionRole"]["Properties"]
    (policy,) = [p for p in role["Policies"] if p["PolicyName"] == "default"]
    statements = [
        s for s in policy["PolicyDocument"]["Statement"] if s.get("Sid") in STACK_SCOPED_SIDS
    ]
    actions = {a for s in statements for a in s["Action"] if a.startswith("cloudformation:")}
    assert len(actions) >= 9
    for action in sorted(actions):
        entry = iam_data.action(action)
        assert entry is not None, action
        assert "stack" in dict(entry.resource_types), f"{action} is not authorized on a stack"
    others = {a for s in statements for a in s["Action"] if not a.startswith("cloudformation:")}
    for action in others:  # kept on "*": AWS knows no resource for them
        entry = iam_data.action(action)
        assert entry is not None and not entry.resource_types, action
