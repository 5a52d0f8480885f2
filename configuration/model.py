"""The typed, immutable description of one deployment, validated once at the edge.

Everything below `app.py` receives a `DeploymentConfig` and trusts it: no construct re-reads raw
dicts or context keys. Every rule that can be checked without calling AWS is checked here, so a bad
value is refused before a single construct is built.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import math
import re
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from configuration.regions import KNOWN_REGIONS

# Each zone gets one public and one private subnet of these sizes (stacks/network.py).
PUBLIC_SUBNET_MASK = 24
PRIVATE_SUBNET_MASK = 22


def smallest_vpc_prefix(zones: int) -> int:
    """The longest VPC prefix that holds the subnets of `zones` zones: CDK allocates every public
    subnet first, then the private ones, each aligned to its own size."""
    public, private = 2 ** (32 - PUBLIC_SUBNET_MASK), 2 ** (32 - PRIVATE_SUBNET_MASK)
    end = math.ceil(zones * public / private) * private + zones * private
    return 32 - math.ceil(math.log2(end))


class _Model(BaseModel):
    """Immutable, and strict about keys: a typo is an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _fail(
    kind: str, message: str, *, field: str | None = None, value: object = None
) -> PydanticCustomError:
    """An error for the loader to report. `field` and `value` refine where a model-level check
    points: pydantic places such errors on the model, but the user needs the exact field."""
    context: dict[str, object] = {}
    if field is not None:
        context = {"field": field, "value": value}
    return PydanticCustomError(kind, message, context)


def _account(value: str) -> str:
    if not re.fullmatch(r"\d{12}", value):
        raise _fail("account", "expected a 12-digit AWS account id, such as '111111111111'")
    return value


def _region(value: str) -> str:
    if value not in KNOWN_REGIONS:
        raise _fail(
            "region",
            "expected an AWS region code such as 'eu-west-1' or 'us-east-1' "
            "(one of the regions aws-cdk-lib knows)",
        )
    return value


def _matching(pattern: str, expected: str) -> AfterValidator:
    """A text field of a given form. The error says in words what is expected: pydantic's own
    pattern error shows the regular expression, which tells a newcomer nothing."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise _fail("form", expected)
        return value

    return AfterValidator(check)


AccountId = Annotated[str, AfterValidator(_account)]
Region = Annotated[str, AfterValidator(_region)]
# Lower-case, digits and hyphens: valid in stack names, CodePipeline stage names and resource tags.
Slug = Annotated[
    str,
    StringConstraints(max_length=20),
    _matching(
        r"[a-z][a-z0-9-]*[a-z0-9]",
        "expected lower-case letters, digits and hyphens, starting with a letter and ending "
        "with a letter or digit, such as 'prod' or 'eu-staging' (it becomes part of stack names)",
    ),
]
# A named AWS CLI profile with credentials for one account, used only by the operator commands
# (make bootstrap / doctor / deploy); the pipeline never reads it.
Profile = Annotated[
    str,
    _matching(
        r"[A-Za-z0-9_.+@-]{1,64}",
        "expected the name of an AWS CLI profile (letters, digits and _.+@-, at most 64 "
        "characters), such as 'webapp-prod'",
    ),
]

_PARTITIONS = "aws|aws-cn|aws-us-gov"
_CONNECTION_ARN = re.compile(
    rf"^arn:(?P<partition>{_PARTITIONS}):(?P<service>codeconnections|codestar-connections):"
    r"(?P<region>[a-z0-9-]+):(?P<account>\d{12}):connection/"
    r"(?P<id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)
_CERTIFICATE_ARN = re.compile(
    rf"^arn:(?P<partition>{_PARTITIONS}):acm:(?P<region>[a-z0-9-]+):(?P<account>\d{{12}}):"
    r"certificate/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)
_CLUSTER_ARN = re.compile(
    rf"^arn:(?P<partition>{_PARTITIONS}):ecs:(?P<region>[a-z0-9-]+):(?P<account>\d{{12}}):"
    r"cluster/(?P<name>[A-Za-z0-9_-]{1,255})$"
)

# Fargate's valid (cpu -> memory) combinations, in MiB:
# https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html
_FARGATE_MEMORY: dict[int, range] = {
    256: range(512, 2048 + 1, 512),
    512: range(1024, 4096 + 1, 1024),
    1024: range(2048, 8192 + 1, 1024),
    2048: range(4096, 16384 + 1, 1024),
    4096: range(8192, 30720 + 1, 1024),
    8192: range(16384, 61440 + 1, 4096),
    16384: range(32768, 122880 + 1, 8192),
}


class SourceConfig(_Model):
    """Where the pipeline reads its code from, and how it is told about pushes."""

    repository: Annotated[
        str,
        StringConstraints(max_length=200),
        _matching(
            r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+",
            "expected a GitHub repository as 'owner/name', such as 'example-org/webapp-delivery'",
        ),
    ] = Field(description="GitHub 'owner/name'")
    branch: Annotated[
        str,
        StringConstraints(max_length=255),
        _matching(
            r"[A-Za-z0-9._/-]+",
            "expected a branch name of letters, digits and ._/-, such as 'main'",
        ),
    ]
    connection_arn: str | None = None
    github_token_secret: (
        Annotated[
            str,
            _matching(
                r"[A-Za-z0-9/_+=.@-]{1,512}",
                "expected the name of a Secrets Manager secret (letters, digits and /_+=.@-), "
                "such as 'github-token'",
            ),
        ]
        | None
    ) = None

    @field_validator("connection_arn")
    @classmethod
    def _connection_arn_shape(cls, value: str | None) -> str | None:
        if value is not None and not _CONNECTION_ARN.fullmatch(value):
            raise _fail(
                "connection_arn",
                "expected a CodeConnections connection ARN, "
                "'arn:aws:codeconnections:REGION:ACCOUNT:connection/UUID'",
            )
        return value

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Self:
        if (self.connection_arn is None) == (self.github_token_secret is None):
            raise _fail(
                "source",
                "expected exactly one of 'connection_arn' (a CodeConnections connection, "
                "recommended) or 'github_token_secret' (the name of a Secrets Manager secret "
                "holding a GitHub token)",
            )
        return self


# CDK's bootstrap template accepts [A-Za-z0-9_-]{1,10} as a qualifier, and names the asset bucket
# cdk-<qualifier>-assets-<account>-<region>, which S3 allows in lower case without underscores.
# https://docs.aws.amazon.com/cdk/v2/guide/bootstrapping-customizing.html
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
_QUALIFIER = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?$")


def default_qualifier(project: str) -> str:
    """The bootstrap qualifier a project gets unless its config names one: the project name when
    it fits in ten characters, else its first four and six hex digits of a hash of the whole
    name, so that `payments-api` and `payments-web` do not share one execution role."""
    if len(project) <= 10:
        return project
    digest = hashlib.sha256(project.encode()).hexdigest()[:6]
    return project[:4].rstrip("-") + digest


def _qualifier(value: str) -> str:
    if not _QUALIFIER.fullmatch(value):
        raise _fail(
            "qualifier",
            "expected 1 to 10 lower-case letters, digits or hyphens, starting and ending with a "
            "letter or digit (CDK's bootstrap qualifier; it becomes part of the asset bucket's "
            "name), such as 'webapp'",
        )
    return value


class PipelineConfig(_Model):
    """The tools account that hosts the self-mutating pipeline."""

    project: Slug = Field(description="Short name used in stack and pipeline names")
    # The CDK bootstrap qualifier of every account of this deployment: the project's own CDK roles,
    # asset bucket and repository, and execution policies, apart from any other CDK app's.
    qualifier: Annotated[str, AfterValidator(_qualifier)]
    account: AccountId
    region: Region
    source: SourceConfig
    profile: Profile | None = None
    notify_emails: list[
        Annotated[
            str,
            _matching(
                r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}",
                "expected an e-mail address such as 'team@example.com'",
            ),
        ]
    ] = []

    @model_validator(mode="before")
    @classmethod
    def _qualifier_from_project(cls, data: object) -> object:
        if (
            isinstance(data, dict)
            and "qualifier" not in data
            and isinstance(data.get("project"), str)
        ):
            return {**data, "qualifier": default_qualifier(data["project"])}
        return data

    @model_validator(mode="after")
    def _connection_belongs_to_pipeline(self) -> Self:
        arn = self.source.connection_arn
        match = _CONNECTION_ARN.fullmatch(arn) if arn else None
        if match and (match["account"], match["region"]) != (self.account, self.region):
            raise _fail(
                "connection_arn",
                "the connection must live in the pipeline's own account and region "
                f"({self.account}, {self.region}), but the ARN names account "
                f"{match['account']} in {match['region']}",
                field="source.connection_arn",
                value=arn,
            )
        return self


class NetworkConfig(_Model):
    """The stage's VPC: created from `cidr` and `nat_gateways`, or imported by `vpc_id`."""

    cidr: str = "10.0.0.0/16"
    nat_gateways: Annotated[int, Field(ge=1)] = 1
    vpc_id: (
        Annotated[
            str,
            _matching(
                r"vpc-([0-9a-f]{8}|[0-9a-f]{17})",
                "expected a VPC id: 'vpc-' and 8 or 17 lower-case hexadecimal digits, such as "
                "'vpc-0123456789abcdef0'",
            ),
        ]
        | None
    ) = None

    @field_validator("cidr")
    @classmethod
    def _private_cidr(cls, value: str) -> str:
        network = _network(value, example="10.0.0.0/16")
        if not 16 <= network.prefixlen <= 20 or not network.is_private:
            raise _fail(
                "cidr",
                "expected a private (RFC 1918) IPv4 network between /16 and /20, "
                "large enough for a public and a private subnet in every availability zone",
            )
        return value


def _network(value: str, *, example: str) -> ipaddress.IPv4Network:
    """An IPv4 network; a value with host bits set is named as such, with the network meant."""
    try:
        return ipaddress.IPv4Network(value, strict=True)
    except ValueError:
        pass
    try:
        loose = ipaddress.IPv4Network(value, strict=False)
    except ValueError:
        raise _fail(
            "cidr", f"'{value}' is not an IPv4 network in CIDR notation such as '{example}'"
        ) from None
    raise _fail(
        "cidr",
        f"'{value}' has host bits set: the address of a /{loose.prefixlen} network ends in "
        f"zero bits, so expected '{loose}'",
    )


RESERVED_ENVIRONMENT = ("PORT", "SERVICE_NAME", "SERVICE_VERSION")


class SmokeCheck(_Model):
    """One request the smoke tests make, and the status it must answer with."""

    path: Annotated[
        str,
        _matching(
            r"/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*",
            "expected a URL path starting with '/', without spaces, such as '/health'",
        ),
    ]
    status: Annotated[int, Field(ge=100, le=599)] = 200


class ReleaseConfig(_Model):
    """How a new version reaches users: ECS's native strategies, with automatic rollback."""

    strategy: Literal["blue_green", "canary", "linear"] = "blue_green"
    canary_percent: Annotated[float, Field(ge=1, le=50)] = 10.0
    linear_percent: Annotated[float, Field(ge=5, le=50)] = 25.0
    step_minutes: Annotated[int, Field(ge=1, le=60)] = 2
    # The least a stage may bake follows from its synthesized alarms, so it is checked after
    # synthesis (service/timing.py, minimum_bake_minutes): 4 minutes with the default alarms.
    bake_minutes: Annotated[int, Field(ge=1, le=1440)] = 4
    max_5xx_percent: Annotated[float, Field(gt=0, le=50)] = 1.0
    max_p99_latency_ms: Annotated[int, Field(ge=50, le=60000)] = 1000
    test_port: Annotated[int, Field(ge=1024, le=65535)] = 9443
    test_cidrs: list[str] = []
    smoke_checks: Annotated[list[SmokeCheck], Field(max_length=20)] = [SmokeCheck(path="/")]

    @model_validator(mode="after")
    def _settings_of_the_strategy(self) -> Self:
        # A setting of another strategy is silently ignored by ECS: refuse it, so that nobody
        # believes a blue/green stage releases a canary first.
        uses = {
            "canary_percent": ("canary",),
            "linear_percent": ("linear",),
            "step_minutes": ("canary", "linear"),
        }
        for name, strategies in uses.items():
            if name in self.model_fields_set and self.strategy not in strategies:
                raise _fail(
                    "strategy",
                    f"{name} applies only to strategy = "
                    f"{' or '.join(repr(s) for s in strategies)}, but this stage's strategy is "
                    f"'{self.strategy}': remove {name} or change the strategy",
                    field=name,
                    value=getattr(self, name),
                )
        return self

    @field_validator("test_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            _network(cidr, example="203.0.113.0/28")
            if cidr.endswith("/0"):
                raise _fail("test_cidrs", "the test listener must not be open to everyone")
        return value


class ServiceConfig(_Model):
    """Size of the Fargate service and, optionally, the existing cluster it joins."""

    cpu: Literal[256, 512, 1024, 2048, 4096, 8192, 16384] = 256
    memory: int = 512
    desired_count: Annotated[int, Field(ge=1, le=100)] = 2
    container_port: Annotated[int, Field(ge=1024, le=65535)] = 8080
    cluster_arn: str | None = None
    certificate_arn: str | None = None
    domain_name: (
        Annotated[
            str,
            StringConstraints(max_length=253),
            _matching(
                r"([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}",
                "expected a lower-case domain name such as 'webapp.example.com'",
            ),
        ]
        | None
    ) = None
    plain_http_reason: Annotated[str, StringConstraints(min_length=20, max_length=500)] | None = (
        None
    )
    # The scan's waiver of its plain-HTTP finding ends here (ops/waivers.py): at most 90 days
    # ahead, checked at synth, as .trivyignore.yaml entries are checked by the scan.
    plain_http_expires: dt.date | None = None
    environment: dict[
        Annotated[
            str,
            _matching(
                r"[A-Z][A-Z0-9_]{0,63}",
                "expected an environment variable name of upper-case letters, digits and "
                "underscores, starting with a letter, such as 'LOG_LEVEL'",
            ),
        ],
        Annotated[str, StringConstraints(max_length=4096)],
    ] = {}

    @field_validator("environment")
    @classmethod
    def _no_secrets_in_environment(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if re.search(r"SECRET|PASSWORD|TOKEN|PRIVATE|CREDENTIAL", name):
                raise _fail(
                    "environment",
                    f"'{name}' looks like a secret: plain environment variables are visible in "
                    "the task definition; keep secrets in Secrets Manager instead",
                    field=name,
                    value=value[name],
                )
            if name in RESERVED_ENVIRONMENT:
                raise _fail(
                    "environment",
                    f"'{name}' is set by the deployment itself ({', '.join(RESERVED_ENVIRONMENT)})",
                    field=name,
                    value=value[name],
                )
        return value

    @field_validator("certificate_arn")
    @classmethod
    def _certificate_arn_shape(cls, value: str | None) -> str | None:
        if value is not None and not _CERTIFICATE_ARN.fullmatch(value):
            raise _fail(
                "certificate_arn",
                "expected an ACM certificate ARN, 'arn:aws:acm:REGION:ACCOUNT:certificate/UUID'",
            )
        return value

    @model_validator(mode="after")
    def _one_listener_mode(self) -> Self:
        if self.certificate_arn is not None and self.domain_name is None:
            raise _fail(
                "domain_name",
                "a stage with a certificate needs the domain name it is issued for: the smoke "
                "tests verify TLS against it",
                field="domain_name",
                value=None,
            )
        if self.plain_http_reason is not None and self.plain_http_expires is None:
            raise _fail(
                "plain_http_expires",
                "plain_http_reason waives the security scan's plain-HTTP finding (AWS-0054) "
                "for this stage and needs an end: expected plain_http_expires = YYYY-MM-DD "
                "(a TOML date, not in quotes), at most 90 days ahead",
                field="plain_http_expires",
                value=None,
            )
        if self.plain_http_expires is not None and self.plain_http_reason is None:
            raise _fail(
                "plain_http_expires",
                "an end date without a waiver: plain_http_expires goes with plain_http_reason",
                field="plain_http_expires",
                value=self.plain_http_expires.isoformat(),
            )
        if self.certificate_arn is not None and self.plain_http_reason is not None:
            raise _fail(
                "plain_http_reason",
                "set either certificate_arn (HTTPS) or plain_http_reason (HTTP only), not both",
                field="plain_http_reason",
                value=self.plain_http_reason,
            )
        return self

    @field_validator("cluster_arn")
    @classmethod
    def _cluster_arn_shape(cls, value: str | None) -> str | None:
        if value is not None and not _CLUSTER_ARN.fullmatch(value):
            raise _fail(
                "cluster_arn",
                "expected an ECS cluster ARN, 'arn:aws:ecs:REGION:ACCOUNT:cluster/NAME'",
            )
        return value

    @model_validator(mode="after")
    def _fargate_size(self) -> Self:
        allowed = _FARGATE_MEMORY[self.cpu]
        if self.memory not in allowed:
            raise _fail(
                "memory",
                f"memory {self.memory} MiB is not a Fargate size for cpu {self.cpu}: expected "
                f"{allowed.start} to {allowed.stop - 1} MiB in steps of {allowed.step}",
                field="memory",
                value=self.memory,
            )
        return self

    @property
    def cluster_name(self) -> str | None:
        """The cluster's name, derived from its ARN (the ARN is never used as a name)."""
        match = _CLUSTER_ARN.fullmatch(self.cluster_arn) if self.cluster_arn else None
        return match["name"] if match else None


PRODUCTION_BAKE_MINUTES = 10


class StageConfig(_Model):
    """One target account and region that the pipeline deploys to, in order."""

    name: Slug
    account: AccountId
    region: Region
    availability_zones: Annotated[list[str], Field(min_length=2, max_length=6)]
    production: bool = False
    approval: bool = False
    wave: Slug | None = None
    profile: Profile | None = None
    network: NetworkConfig = NetworkConfig()
    service: ServiceConfig = ServiceConfig()
    release: ReleaseConfig = ReleaseConfig()

    @model_validator(mode="after")
    def _release_fits_the_stage(self) -> Self:
        if self.production and self.release.bake_minutes < PRODUCTION_BAKE_MINUTES:
            raise _fail(
                "bake_minutes",
                f"a production stage bakes at least {PRODUCTION_BAKE_MINUTES} minutes, so the "
                "rollback alarms see real traffic before the old version is gone",
                field="release.bake_minutes",
                value=self.release.bake_minutes,
            )
        if self.network.vpc_id is not None and not self.release.test_cidrs:
            raise _fail(
                "test_cidrs",
                "with an existing VPC, list the public addresses its NAT gateways use (as /32 "
                "networks) so the deployment smoke test can reach the test listener",
                field="release.test_cidrs",
                value=[],
            )
        if self.release.test_port in (80, 443, self.service.container_port):
            raise _fail(
                "test_port",
                "the test listener needs a port of its own",
                field="release.test_port",
                value=self.release.test_port,
            )
        return self

    @model_validator(mode="after")
    def _zones_in_region(self) -> Self:
        for zone in self.availability_zones:
            if not re.fullmatch(rf"{re.escape(self.region)}[a-z]", zone):
                raise _fail(
                    "availability_zones",
                    f"zone '{zone}' is not in the stage's region {self.region}: expected names "
                    f"like '{self.region}a'",
                    field="availability_zones",
                    value=zone,
                )
        if len(set(self.availability_zones)) != len(self.availability_zones):
            raise _fail(
                "availability_zones",
                "each availability zone may be listed only once",
                field="availability_zones",
                value=self.availability_zones,
            )
        if self.network.vpc_id is None:
            needed = smallest_vpc_prefix(len(self.availability_zones))
            prefix = int(self.network.cidr.split("/")[1])
            if prefix > needed:
                raise _fail(
                    "cidr",
                    f"a /{prefix} network cannot hold a /{PUBLIC_SUBNET_MASK} public and a "
                    f"/{PRIVATE_SUBNET_MASK} private subnet in each of "
                    f"{len(self.availability_zones)} zones: expected /{needed} or larger",
                    field="network.cidr",
                    value=self.network.cidr,
                )
        if self.network.vpc_id is None and self.network.nat_gateways > len(self.availability_zones):
            raise _fail(
                "nat_gateways",
                f"{self.network.nat_gateways} NAT gateways for "
                f"{len(self.availability_zones)} availability zones: expected at most one per zone",
                field="network.nat_gateways",
                value=self.network.nat_gateways,
            )
        return self

    @model_validator(mode="after")
    def _tls_where_needed(self) -> Self:
        arn = self.service.certificate_arn
        match = _CERTIFICATE_ARN.fullmatch(arn) if arn else None
        if match and (match["account"], match["region"]) != (self.account, self.region):
            raise _fail(
                "certificate_arn",
                f"the certificate must be in this stage's account and region ({self.account}, "
                f"{self.region}) for its load balancer, but the ARN names account "
                f"{match['account']} in {match['region']}",
                field="service.certificate_arn",
                value=arn,
            )
        if arn is None and self.service.plain_http_reason is None:
            raise _fail(
                "certificate_arn",
                "this stage has no TLS certificate: set service.certificate_arn to an ACM "
                "certificate for HTTPS, or, to accept plain HTTP, set service.plain_http_reason "
                "to a sentence saying why (recorded as the compliance acknowledgement)",
                field="service.certificate_arn",
                value=None,
            )
        return self

    @model_validator(mode="after")
    def _cluster_import_is_complete(self) -> Self:
        arn = self.service.cluster_arn
        match = _CLUSTER_ARN.fullmatch(arn) if arn else None
        if match is None:
            return self
        if (match["account"], match["region"]) != (self.account, self.region):
            raise _fail(
                "cluster_arn",
                f"the cluster must be in this stage's account and region ({self.account}, "
                f"{self.region}), but the ARN names account {match['account']} in "
                f"{match['region']}",
                field="service.cluster_arn",
                value=arn,
            )
        if self.network.vpc_id is None:
            raise _fail(
                "cluster_arn",
                "importing an existing cluster needs the VPC it runs in: set network.vpc_id "
                "to that cluster's VPC (a cluster imported without its VPC cannot place tasks)",
                field="network.vpc_id",
                value=None,
            )
        return self


RulePack = Literal["AwsSolutions", "NIST.800.53.R5", "HIPAA.Security", "PCI.DSS.321"]


class ComplianceConfig(_Model):
    """Which cdk-nag rule packs run at synth. AwsSolutions and NIST 800-53 rev 5 always run."""

    extra_packs: list[Literal["HIPAA.Security", "PCI.DSS.321"]] = []

    @property
    def packs(self) -> tuple[RulePack, ...]:
        extras = tuple(dict.fromkeys(self.extra_packs))
        return ("AwsSolutions", "NIST.800.53.R5", *extras)


class DeploymentConfig(_Model):
    """A whole deployment: the pipeline and its ordered target stages."""

    pipeline: PipelineConfig
    stages: Annotated[list[StageConfig], Field(min_length=1)]
    compliance: ComplianceConfig = ComplianceConfig()

    @model_validator(mode="after")
    def _fits_codepipeline(self) -> Self:
        from configuration.waves import WaveError, plan_waves

        seen: dict[str, int] = {}
        for index, stage in enumerate(self.stages):
            if stage.wave is None:
                continue
            last = seen.get(stage.wave)
            if last is not None and last != index - 1:
                raise _fail(
                    "wave",
                    "the stages of a wave must be next to each other in the file",
                    field=f"stages[{index}].wave",
                    value=stage.wave,
                )
            seen[stage.wave] = index
        try:
            plan_waves(list(self.stages))
        except WaveError as error:
            raise _fail("stages", str(error), field="stages", value=len(self.stages)) from None
        return self

    @model_validator(mode="after")
    def _targets_are_not_the_pipeline_account(self) -> Self:
        for index, stage in enumerate(self.stages):
            if stage.account == self.pipeline.account:
                raise _fail(
                    "account",
                    "a target must be an account of its own: the pipeline account is bootstrapped "
                    "to deploy the pipeline itself, while targets get the least-privilege "
                    "execution policies and trust the pipeline account",
                    field=f"stages[{index}].account",
                    value=stage.account,
                )
        return self

    @model_validator(mode="after")
    def _production_kept_apart(self) -> Self:
        """Production never shares an account with a non-production stage (the account would
        get the lookup trust and the looser habits of staging), nor a wave (it would deploy
        beside staging, behind one approval, before staging was proven)."""
        for index, stage in enumerate(self.stages):
            for other in self.stages[:index]:
                if stage.production == other.production:
                    continue
                kind, other_kind = (
                    ("production", "non-production")
                    if stage.production
                    else ("non-production", "production")
                )
                if stage.account == other.account:
                    raise _fail(
                        "account",
                        f"this {kind} stage uses the same account as the {other_kind} stage "
                        f"'{other.name}': "
                        "expected production and non-production stages in separate accounts",
                        field=f"stages[{index}].account",
                        value=stage.account,
                    )
                if stage.wave is not None and stage.wave == other.wave:
                    raise _fail(
                        "wave",
                        f"this {kind} stage is in the same wave as the {other_kind} stage "
                        f"'{other.name}': "
                        "expected production stages in waves of their own, after the "
                        "non-production ones have been proven",
                        field=f"stages[{index}].wave",
                        value=stage.wave,
                    )
        return self

    @model_validator(mode="after")
    def _unique_stage_names(self) -> Self:
        seen: set[str] = set()
        for index, stage in enumerate(self.stages):
            if stage.name in seen:
                raise _fail(
                    "stages",
                    "stage names must be unique: this name is already used by an earlier stage",
                    field=f"stages[{index}].name",
                    value=stage.name,
                )
            seen.add(stage.name)
        return self
