"""The targets' bootstrap template: the pinned CLI's own, plus image read access for the trusted
(pipeline) account, which the security scan needs to read the published image."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from ops.bootstrap_template import (
    SID,
    TemplateError,
    cdk_default_template,
    with_trusted_image_read,
    write_template,
)
from stacks.pipeline import ECR_READ_ACTIONS


@pytest.fixture(scope="module")
def cdk_template() -> dict[str, Any]:
    return cdk_default_template()


def _statements(template: dict[str, Any]) -> list[Any]:
    repository = template["Resources"]["ContainerAssetsRepository"]["Properties"]
    return list(repository["RepositoryPolicyText"]["Statement"])


def test_the_trusted_accounts_may_read_the_container_asset_repository(
    cdk_template: dict[str, Any],
) -> None:
    before = _statements(cdk_template)
    template = with_trusted_image_read(copy.deepcopy(cdk_template))
    after = _statements(template)
    assert after[:-1] == before  # CDK's own statements (Lambda, EMR Serverless) are kept
    assert after[-1] == {
        "Fn::If": [
            "HasTrustedAccounts",
            {
                "Sid": SID,
                "Effect": "Allow",
                "Principal": {"AWS": {"Ref": "TrustedAccounts"}},
                "Action": ["ecr:BatchGetImage", "ecr:DescribeImages", "ecr:GetDownloadUrlForLayer"],
            },
            {"Ref": "AWS::NoValue"},
        ]
    }
    # The repository lets the pipeline account do exactly what the scan role may do there.
    assert sorted(after[-1]["Fn::If"][1]["Action"]) == sorted(ECR_READ_ACTIONS)
    # Everything else is the CLI's template, unchanged.
    rest = copy.deepcopy(template)
    rest["Resources"]["ContainerAssetsRepository"]["Properties"]["RepositoryPolicyText"][
        "Statement"
    ] = before
    assert rest == cdk_template


def test_applying_it_twice_adds_one_statement(cdk_template: dict[str, Any]) -> None:
    once = with_trusted_image_read(copy.deepcopy(cdk_template))
    twice = with_trusted_image_read(copy.deepcopy(once))
    assert twice == once


def test_a_template_without_the_repository_fails_loudly() -> None:
    with pytest.raises(TemplateError, match="ContainerAssetsRepository"):
        with_trusted_image_read({"Resources": {}, "Conditions": {}, "Parameters": {}})


def test_written_as_yaml_that_reads_back_the_same(
    cdk_template: dict[str, Any], tmp_path: Any
) -> None:
    path = write_template(tmp_path / "t.yaml", copy.deepcopy(cdk_template))
    assert yaml.safe_load(path.read_text()) == with_trusted_image_read(copy.deepcopy(cdk_template))
