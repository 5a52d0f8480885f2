"""Where CDK publishes the container image assets of a cloud assembly: one ECR repository and tag
per target, read from the asset manifests (`*.assets.json`) that `cdk synth` writes and that CDK
Pipelines' publishing actions follow.

The pipeline stack reads them to let the security scan read exactly those repositories; the scan
(ops/scan.py) reads the same files from the synth output to find the images it checks.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from configuration.regions import partition_of

# What the pipeline's scan may do in each target's asset repository: resolve the asset's tag to a
# digest and pull that image's manifest and layers. Nothing that writes. The scan role's policy
# (stacks/pipeline.py) and the repository policy (ops/bootstrap_template.py) both grant these.
IMAGE_READ_ACTIONS = ["ecr:BatchGetImage", "ecr:DescribeImages", "ecr:GetDownloadUrlForLayer"]
_ACCOUNT_IN_ROLE = re.compile(r":iam::(\d{12}):role/")
_PLACEHOLDER = re.compile(r"\$\{[^}]*\}")


class AssetManifestError(Exception):
    """An asset manifest the scan cannot use; str() says which file and what is wrong."""


@dataclass(frozen=True)
class ImageDestination:
    """One published copy of an image asset: a target's asset repository and the asset's tag."""

    target: str  # the stage the destination belongs to
    account: str
    region: str
    repository: str
    tag: str

    @property
    def partition(self) -> str:
        return partition_of(self.region)

    @property
    def repository_arn(self) -> str:
        return f"arn:{self.partition}:ecr:{self.region}:{self.account}:repository/{self.repository}"

    @property
    def registry(self) -> str:
        # ECR registry host names: https://docs.aws.amazon.com/AmazonECR/latest/userguide/Registries.html
        domain = "amazonaws.com.cn" if self.partition == "aws-cn" else "amazonaws.com"
        return f"{self.account}.dkr.ecr.{self.region}.{domain}"

    def reference(self, digest: str | None = None) -> str:
        """`registry/repository@digest`, or `registry/repository:tag` without a digest."""
        base = f"{self.registry}/{self.repository}"
        return f"{base}@{digest}" if digest else f"{base}:{self.tag}"


@dataclass(frozen=True)
class ImageAsset:
    """A container image asset (one source hash) and every destination it is published to, in
    the order the targets deploy."""

    asset_hash: str
    directory: Path
    destinations: tuple[ImageDestination, ...]


def destinations_in_manifest(
    manifest: dict[str, Any], target: str, where: str
) -> dict[str, tuple[str, list[ImageDestination]]]:
    """Asset hash -> (source directory, destinations) for one asset manifest's docker images."""
    images: dict[str, tuple[str, list[ImageDestination]]] = {}
    for asset_hash, asset in (manifest.get("dockerImages") or {}).items():
        directory = str((asset.get("source") or {}).get("directory", ""))
        destinations = []
        for name, destination in (asset.get("destinations") or {}).items():
            field = f"{where}: dockerImages.{asset_hash}.destinations.{name}"
            role = str(destination.get("assumeRoleArn", ""))
            account = _ACCOUNT_IN_ROLE.search(role)
            repository = str(destination.get("repositoryName", ""))
            tag = str(destination.get("imageTag", ""))
            region = str(destination.get("region", ""))
            if account is None:
                raise AssetManifestError(
                    f"{field}.assumeRoleArn = {role!r}: expected a role ARN with a 12-digit "
                    "account (give every stage an explicit account and region)."
                )
            for key, value in (
                ("repositoryName", repository),
                ("imageTag", tag),
                ("region", region),
            ):
                if not value or _PLACEHOLDER.search(value):
                    raise AssetManifestError(
                        f"{field}.{key} = {value!r}: expected a concrete value (give every stage "
                        "an explicit account and region)."
                    )
            destinations.append(ImageDestination(target, account[1], region, repository, tag))
        images[asset_hash] = (directory, destinations)
    return images


def destinations_in_assembly(
    directory: Path, target: str
) -> dict[str, tuple[str, list[ImageDestination]]]:
    """Per image asset hash, its source directory and destinations, from every asset manifest of
    one stage's assembly `directory`."""
    found: dict[str, tuple[str, list[ImageDestination]]] = {}
    for manifest_file in sorted(directory.glob("*.assets.json")):
        manifest = json.loads(manifest_file.read_text())
        for asset_hash, (directory_of, destinations) in destinations_in_manifest(
            manifest, target, str(manifest_file)
        ).items():
            entry = found.setdefault(asset_hash, (directory_of, []))
            entry[1].extend(d for d in destinations if d not in entry[1])
    return found


def image_assets(cloud_assembly: Path) -> list[ImageAsset]:
    """Every container image asset of the stages in `cloud_assembly` (the synth output), with its
    destinations in deployment order: the stages' nested assemblies are listed in the top-level
    manifest in the order the pipeline adds them, which is the config's order."""
    top = cloud_assembly / "manifest.json"
    if not top.is_file():
        raise AssetManifestError(f"{top}: no cloud assembly here; synthesize first.")
    found: dict[str, tuple[Path, list[ImageDestination]]] = {}
    artifacts = json.loads(top.read_text()).get("artifacts", {})
    for artifact in artifacts.values():
        if artifact.get("type") != "cdk:cloud-assembly":
            continue
        properties = artifact.get("properties", {})
        nested = cloud_assembly / properties["directoryName"]
        target = str(properties.get("displayName", nested.name)).rsplit("/", 1)[-1]
        for asset_hash, (directory, destinations) in destinations_in_assembly(
            nested, target
        ).items():
            entry = found.setdefault(asset_hash, ((nested / directory).resolve(), []))
            entry[1].extend(d for d in destinations if d not in entry[1])
    return [
        ImageAsset(asset_hash, directory, tuple(destinations))
        for asset_hash, (directory, destinations) in found.items()
    ]
