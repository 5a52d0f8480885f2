"""The deployment config: one typed, immutable object tree, validated at the edge."""

from configuration.loader import ConfigError, load_config, repository_config
from configuration.model import (
    ComplianceConfig,
    DeploymentConfig,
    NetworkConfig,
    PipelineConfig,
    ReleaseConfig,
    ServiceConfig,
    SmokeCheck,
    SourceConfig,
    StageConfig,
)

__all__ = [
    "ComplianceConfig",
    "ConfigError",
    "DeploymentConfig",
    "NetworkConfig",
    "PipelineConfig",
    "ReleaseConfig",
    "ServiceConfig",
    "SmokeCheck",
    "SourceConfig",
    "StageConfig",
    "load_config",
    "repository_config",
]
