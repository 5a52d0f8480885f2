"""Where the image is published, read from the synthesized asset manifests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from components.image_assets import AssetManifestError, destinations_in_manifest, image_assets

from ..conftest import FIXTURES, Synthesized


def test_one_image_with_a_destination_per_target_in_deployment_order(
    default_synth: Synthesized,
) -> None:
    [asset] = image_assets(default_synth.outdir)
    assert asset.directory.name == f"asset.{asset.asset_hash}"
    assert (asset.directory / "Dockerfile").is_file()
    assert [(d.target, d.account, d.region) for d in asset.destinations] == [
        ("staging", "222222222222", "eu-west-1"),
        ("prod", "333333333333", "eu-west-1"),
    ]
    staging = asset.destinations[0]
    assert staging.tag == asset.asset_hash
    assert staging.repository == "cdk-webapp-container-assets-222222222222-eu-west-1"
    assert staging.reference("sha256:abc") == (
        "222222222222.dkr.ecr.eu-west-1.amazonaws.com/"
        "cdk-webapp-container-assets-222222222222-eu-west-1@sha256:abc"
    )
    assert staging.repository_arn == (
        "arn:aws:ecr:eu-west-1:222222222222:repository/"
        "cdk-webapp-container-assets-222222222222-eu-west-1"
    )


def test_five_targets_keep_the_configs_order(synth: Callable[..., Synthesized]) -> None:
    result = synth(FIXTURES / "five-stages.toml", suffix="-blue")
    [asset] = image_assets(result.outdir)
    assert [d.target for d in asset.destinations] == [s.name for s in result.config.stages]
    assert {d.region for d in asset.destinations} == {"eu-central-1"}


def test_china_regions_use_their_own_registry_domain_and_partition() -> None:
    manifest = {
        "dockerImages": {
            "abc": {
                "source": {"directory": "asset.abc"},
                "destinations": {
                    "d": {
                        "repositoryName": "repo",
                        "imageTag": "abc",
                        "region": "cn-north-1",
                        "assumeRoleArn": "arn:${AWS::Partition}:iam::444444444444:role/publish",
                    }
                },
            }
        }
    }
    [(_, [destination])] = destinations_in_manifest(manifest, "cn", "x.assets.json").values()
    assert destination.registry == "444444444444.dkr.ecr.cn-north-1.amazonaws.com.cn"
    assert destination.repository_arn.startswith("arn:aws-cn:ecr:cn-north-1:444444444444:")


def test_an_unresolved_repository_name_is_refused_with_the_field() -> None:
    manifest = {
        "dockerImages": {
            "abc": {
                "destinations": {
                    "current_account-current_region": {
                        "repositoryName": "cdk-hnb659fds-container-assets-${AWS::AccountId}-x",
                        "imageTag": "abc",
                        "region": "eu-west-1",
                        "assumeRoleArn": "arn:aws:iam::444444444444:role/publish",
                    }
                }
            }
        }
    }
    with pytest.raises(
        AssetManifestError,
        match=r"x\.assets\.json: dockerImages\.abc\.destinations\.current_account-current_region"
        r"\.repositoryName = .*expected a concrete value",
    ):
        destinations_in_manifest(manifest, "t", "x.assets.json")


def test_a_directory_without_a_cloud_assembly_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AssetManifestError, match="no cloud assembly here; synthesize first"):
        image_assets(tmp_path)
