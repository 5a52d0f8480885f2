"""The AWS regions a config may name, taken from aws-cdk-lib's own fact tables.

Using the CDK's list means a region AWS opens later becomes valid with the next aws-cdk-lib upgrade,
with no hand-kept list to forget.
"""

from aws_cdk import region_info

KNOWN_REGIONS: frozenset[str] = frozenset(r.name for r in region_info.RegionInfo.regions)


def partition_of(region: str) -> str:
    """The partition (aws, aws-cn, aws-us-gov, ...) that `region` belongs to."""
    return region_info.RegionInfo.get(region).partition or "aws"
