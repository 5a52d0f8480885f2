"""Every validation rule refuses a bad value with one paragraph naming file, field and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from configuration import ConfigError, load_config, repository_config

from ..conftest import DEFAULT_CONFIG, FIXTURES, ROOT

DEFAULT_TEXT = DEFAULT_CONFIG.read_text()


def _load_edited(
    tmp_path: Path, old: str | tuple[str, ...], new: str | tuple[str, ...]
) -> ConfigError:
    text = DEFAULT_TEXT
    for before, after in zip(
        (old,) if isinstance(old, str) else old,
        (new,) if isinstance(new, str) else new,
        strict=True,
    ):
        assert before in text, f"test edit no longer applies: {before!r}"
        text = text.replace(before, after, 1)
    path = tmp_path / "edited.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value


# (what is tested, text to replace, replacement, field path in the message, words expected)
BAD_VALUES = [
    (
        "account too short",
        'account = "222222222222"',
        'account = "22222222222"',
        "stages[0].account",
        "12-digit",
    ),
    (
        "account not digits",
        'account = "111111111111"',
        'account = "11111111111x"',
        "pipeline.account",
        "12-digit",
    ),
    (
        "account as a number",
        'account = "333333333333"',
        "account = 333333333333",
        "stages[1].account",
        'expected text in quotes, as in account = "333333333333"',
    ),
    (
        "unknown region",
        'region = "eu-west-1"\n\n# Pipeline notifications',
        'region = "eu-west-9"\n\n# Pipeline notifications',
        "pipeline.region",
        "AWS region",
    ),
    (
        "zone of another region",
        '"eu-west-1a", "eu-west-1b"]',
        '"eu-west-1a", "eu-west-2b"]',
        "stages[0].availability_zones",
        "not in the stage's region",
    ),
    (
        "zone listed twice",
        '"eu-west-1a", "eu-west-1b"]',
        '"eu-west-1a", "eu-west-1a"]',
        "stages[0].availability_zones",
        "only once",
    ),
    (
        "one zone only",
        '["eu-west-1a", "eu-west-1b"]',
        '["eu-west-1a"]',
        "stages[0].availability_zones",
        "at least 2",
    ),
    (
        "malformed connection ARN",
        "connection/00000000-0000-4000-8000-000000000000",
        "connection/not-a-uuid",
        "pipeline.source.connection_arn",
        "CodeConnections connection ARN",
    ),
    (
        "connection in another account",
        "eu-west-1:111111111111:connection",
        "eu-west-1:999999999999:connection",
        "pipeline.source.connection_arn",
        "pipeline's own account and region",
    ),
    (
        "connection in another region",
        "codeconnections:eu-west-1:",
        "codeconnections:us-east-1:",
        "pipeline.source.connection_arn",
        "pipeline's own account and region",
    ),
    (
        "both sources",
        'branch = "main"',
        'branch = "main"\ngithub_token_secret = "gh"',
        "pipeline.source",
        "exactly one",
    ),
    (
        "bad repository",
        'repository = "example-org/webapp-delivery"',
        'repository = "webapp"',
        "pipeline.source.repository",
        "expected a GitHub repository as 'owner/name'",
    ),
    (
        "stage name with capitals",
        'name = "prod"',
        'name = "Prod"',
        "stages[1].name = 'Prod'",
        "expected lower-case letters, digits and hyphens",
    ),
    (
        "stage name with a space",
        'name = "prod"',
        'name = "pro d"',
        "stages[1].name",
        "expected lower-case letters, digits and hyphens",
    ),
    (
        "project with capitals",
        'project = "webapp"',
        'project = "WebApp"',
        "pipeline.project",
        "expected lower-case letters, digits and hyphens",
    ),
    (
        "domain with a space",
        'domain_name = "webapp.example.com"',
        'domain_name = "webapp example.com"',
        "stages[1].service.domain_name",
        "expected a lower-case domain name",
    ),
    (
        "environment variable name in lower case",
        "desired_count = 3",
        'desired_count = 3\nenvironment = { log_level = "debug" }',
        "stages[1].service.environment.log_level",
        "expected an environment variable name",
    ),
    (
        "environment value not quoted",
        "desired_count = 3",
        "desired_count = 3\nenvironment = { WORKERS = 4 }",
        "stages[1].service.environment.WORKERS",
        'expected text in quotes, as in WORKERS = "4"',
    ),
    (
        "cidr with host bits set",
        'cidr = "10.10.0.0/16"',
        'cidr = "10.10.3.0/16"',
        "stages[0].network.cidr",
        "has host bits set: the address of a /16 network ends in zero bits, so expected "
        "'10.10.0.0/16'",
    ),
    (
        "test network with host bits set",
        "max_5xx_percent = 2.0",
        'max_5xx_percent = 2.0\ntest_cidrs = ["203.0.113.5/28"]',
        "stages[0].release.test_cidrs",
        "expected '203.0.113.0/28'",
    ),
    (
        "canary percent with blue/green",
        'strategy = "blue_green"            #',
        'strategy = "blue_green"\ncanary_percent = 20 #',
        "stages[0].release.canary_percent",
        "canary_percent applies only to strategy = 'canary', but this stage's strategy is "
        "'blue_green'",
    ),
    (
        "linear percent with canary",
        'strategy = "blue_green"            #',
        'strategy = "canary"\nlinear_percent = 20 #',
        "stages[0].release.linear_percent",
        "applies only to strategy = 'linear'",
    ),
    (
        "step minutes with blue/green",
        'strategy = "blue_green"\nbake_minutes = 10',
        'strategy = "blue_green"\nstep_minutes = 5\nbake_minutes = 10',
        "stages[1].release.step_minutes",
        "applies only to strategy = 'canary' or 'linear'",
    ),
    (
        "production in the account of a non-production stage",
        ('account = "333333333333"', "eu-west-1:333333333333:certificate"),
        ('account = "222222222222"', "eu-west-1:222222222222:certificate"),
        "stages[1].account",
        "same account as the non-production stage 'staging'",
    ),
    (
        "production in the wave of a non-production stage",
        ("approval = false", "approval = true"),
        ('approval = false\nwave = "all"', 'approval = true\nwave = "all"'),
        "stages[1].wave",
        "same wave as the non-production stage 'staging'",
    ),
    ("duplicate stage name", 'name = "prod"', 'name = "staging"', "stages[1].name", "unique"),
    (
        "project too long",
        'project = "webapp"',
        'project = "a-very-long-project-name-here"',
        "pipeline.project",
        "at most 20",
    ),
    (
        "typo in a key",
        "desired_count = 3",
        "desired_cont = 3",
        "stages[1].service.desired_cont",
        "unknown key; expected one of",
    ),
    ("typo in a table", "[pipeline.source]", "[pipeline.sourc]", "pipeline.sourc", "unknown key"),
    ("cpu not a Fargate size", "cpu = 512", "cpu = 300", "stages[1].service.cpu", "256, 512"),
    (
        "memory not valid for cpu",
        "memory = 1024",
        "memory = 1000",
        "stages[1].service.memory",
        "1024 to 4096",
    ),
    (
        "desired count zero",
        "desired_count = 2",
        "desired_count = 0",
        "stages[0].service.desired_count",
        "greater than or equal to 1",
    ),
    (
        "cidr not private",
        'cidr = "10.10.0.0/16"',
        'cidr = "8.8.0.0/16"',
        "stages[0].network.cidr",
        "private",
    ),
    (
        "cidr too small",
        'cidr = "10.10.0.0/16"',
        'cidr = "10.10.0.0/21"',
        "stages[0].network.cidr",
        "between /16 and /20",
    ),
    (
        "cidr too small for four zones",
        ('"eu-west-1a", "eu-west-1b", "eu-west-1c"]', 'cidr = "10.20.0.0/16"'),
        ('"eu-west-1a", "eu-west-1b", "eu-west-1c", "eu-west-1d"]', 'cidr = "10.20.0.0/20"'),
        "stages[1].network.cidr",
        "expected /19 or larger",
    ),
    (
        "cidr not a network",
        'cidr = "10.10.0.0/16"',
        'cidr = "10.10.0/16x"',
        "stages[0].network.cidr",
        "is not an IPv4 network in CIDR notation such as '10.0.0.0/16'",
    ),
    (
        "more NAT gateways than zones",
        "nat_gateways = 3",
        "nat_gateways = 4",
        "stages[1].network.nat_gateways",
        "at most one per zone",
    ),
    (
        "no NAT gateway",
        "nat_gateways = 1",
        "nat_gateways = 0",
        "stages[0].network.nat_gateways",
        "greater than or equal to 1",
    ),
    (
        "bad VPC id",
        "nat_gateways = 3",
        'nat_gateways = 3\nvpc_id = "vpc-xyz"',
        "stages[1].network.vpc_id",
        "expected a VPC id",
    ),
    (
        "cluster without its VPC",
        "# cluster_arn =",
        "cluster_arn =",
        "stages[1].network.vpc_id",
        "needs the VPC it runs in",
    ),
    (
        "malformed cluster ARN",
        '# cluster_arn = "arn:aws:ecs:eu-west-1:333333333333:cluster/shared"',
        'cluster_arn = "arn:aws:ecs:eu-west-1:333333333333:service/shared"',
        "stages[1].service.cluster_arn",
        "ECS cluster ARN",
    ),
    (
        "cluster in another account",
        (
            "nat_gateways = 3",
            '# cluster_arn = "arn:aws:ecs:eu-west-1:333333333333:',
            "max_p99_latency_ms = 1000",
        ),
        (
            'nat_gateways = 3\nvpc_id = "vpc-0123456789abcdef0"',
            'cluster_arn = "arn:aws:ecs:eu-west-1:444444444444:',
            'max_p99_latency_ms = 1000\ntest_cidrs = ["203.0.113.1/32"]',
        ),
        "stages[1].service.cluster_arn",
        "stage's account and region",
    ),
    (
        "cluster in another region",
        (
            "nat_gateways = 3",
            '# cluster_arn = "arn:aws:ecs:eu-west-1:333333333333:',
            "max_p99_latency_ms = 1000",
        ),
        (
            'nat_gateways = 3\nvpc_id = "vpc-0123456789abcdef0"',
            'cluster_arn = "arn:aws:ecs:us-east-1:333333333333:',
            'max_p99_latency_ms = 1000\ntest_cidrs = ["203.0.113.1/32"]',
        ),
        "stages[1].service.cluster_arn",
        "stage's account and region",
    ),
    (
        "certificate in another region",
        'certificate_arn = "arn:aws:acm:eu-west-1:',
        'certificate_arn = "arn:aws:acm:us-east-1:',
        "stages[0].service.certificate_arn",
        "stage's account and region",
    ),
    (
        "no TLS and no reason",
        '\ncertificate_arn = "arn:aws:acm:',
        '\n# certificate_arn = "arn:aws:acm:',
        "stages[0].service.certificate_arn",
        "plain_http_reason",
    ),
    (
        "plain HTTP reason too short",
        '\ncertificate_arn = "arn:aws:acm:',
        '\nplain_http_reason = "ok"\n# certificate_arn = "arn:aws:acm:',
        "stages[0].service.plain_http_reason",
        "at least 20",
    ),
    (
        "plain HTTP without an end to its waiver",
        '\ncertificate_arn = "arn:aws:acm:',
        '\nplain_http_reason = "Reached only by the team through the load balancer name."'
        '\n# certificate_arn = "arn:aws:acm:',
        "stages[0].service.plain_http_expires",
        "needs an end: expected plain_http_expires = YYYY-MM-DD",
    ),
    (
        "an end without a plain HTTP waiver",
        'domain_name = "webapp.example.com"',
        'domain_name = "webapp.example.com"\nplain_http_expires = 2027-01-01',
        "stages[1].service.plain_http_expires = '2027-01-01'",
        "goes with plain_http_reason",
    ),
    (
        "an end given as text",
        '\ncertificate_arn = "arn:aws:acm:',
        '\nplain_http_reason = "Reached only by the team through the load balancer name."'
        '\nplain_http_expires = "2027-01-01"\n# certificate_arn = "arn:aws:acm:',
        "stages[0].service.plain_http_expires",
        "date",
    ),
    (
        "certificate without its domain",
        '\ndomain_name = "webapp.example.com"',
        "\n",
        "stages[1].service.domain_name",
        "needs the domain name",
    ),
    (
        "secret-looking environment variable",
        "desired_count = 3",
        'desired_count = 3\nenvironment = { DB_PASSWORD = "hunter2" }',
        "stages[1].service.environment.DB_PASSWORD",
        "looks like a secret",
    ),
    (
        "reserved environment variable",
        "desired_count = 3",
        'desired_count = 3\nenvironment = { PORT = "80" }',
        "stages[1].service.environment.PORT",
        "set by the deployment",
    ),
    (
        "production bakes too briefly",
        "bake_minutes = 10",
        "bake_minutes = 5",
        "stages[1].release.bake_minutes",
        "at least 10 minutes",
    ),
    (
        "unknown strategy",
        'strategy = "blue_green"            #',
        'strategy = "red_black"            #',
        "stages[0].release.strategy",
        "blue_green",
    ),
    (
        "bake time not positive",
        "bake_minutes = 4 ",
        "bake_minutes = 0 ",
        "stages[0].release.bake_minutes",
        "greater than or equal to 1",
    ),
    (
        "canary step too large",
        'strategy = "blue_green"            #',
        'strategy = "canary"\ncanary_percent = 80 #',
        "stages[0].release.canary_percent",
        "less than or equal to 50",
    ),
    (
        "test listener open to everyone",
        "max_5xx_percent = 2.0",
        'max_5xx_percent = 2.0\ntest_cidrs = ["0.0.0.0/0"]',
        "stages[0].release.test_cidrs",
        "must not be open to everyone",
    ),
    (
        "test port clashes",
        "max_5xx_percent = 2.0",
        "max_5xx_percent = 2.0\ntest_port = 8080",
        "stages[0].release.test_port",
        "port of its own",
    ),
    (
        "smoke check without a leading slash",
        'smoke_checks = [{ path = "/", status = 200 }]',
        'smoke_checks = [{ path = "health", status = 200 }]',
        "stages[1].release.smoke_checks[0].path",
        "expected a URL path starting with '/'",
    ),
    (
        "bad notification address",
        "notify_emails = []",
        'notify_emails = ["not-an-address"]',
        "pipeline.notify_emails[0]",
        "expected an e-mail address",
    ),
    (
        "imported VPC without test sources",
        "nat_gateways = 3",
        'nat_gateways = 3\nvpc_id = "vpc-0123456789abcdef0"',
        "stages[1].release.test_cidrs",
        "NAT gateways use",
    ),
    (
        "target in the pipeline account",
        ('account = "222222222222"', "eu-west-1:222222222222:certificate"),
        ('account = "111111111111"', "eu-west-1:111111111111:certificate"),
        "stages[0].account",
        "account of its own",
    ),
    (
        "unknown extra pack",
        "extra_packs = []",
        'extra_packs = ["SOC2"]',
        "compliance.extra_packs[0]",
        "HIPAA.Security",
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [case[1:] for case in BAD_VALUES],
    ids=[case[0] for case in BAD_VALUES],
)
def test_bad_value_is_refused_with_file_field_and_expectation(
    tmp_path: Path, old: str, new: str, field: str, words: str
) -> None:
    message = str(_load_edited(tmp_path, old, new))
    assert message.startswith(f"{tmp_path / 'edited.toml'}: invalid config")
    assert f"{field}" in message, message
    assert words in message, message
    assert "\n" not in message, "one paragraph"
    assert "Traceback" not in message
    assert "pattern" not in message and "^" not in message, "no regular expression"


def test_message_shows_the_offending_value(tmp_path: Path) -> None:
    message = str(_load_edited(tmp_path, 'account = "222222222222"', 'account = "2222"'))
    assert "stages[0].account = '2222': expected a 12-digit AWS account id" in message


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    path = tmp_path / "two.toml"
    path.write_text(
        DEFAULT_TEXT.replace('account = "222222222222"', 'account = "2"').replace(
            "cpu = 512", "cpu = 3"
        )
    )
    with pytest.raises(ConfigError, match=r"\(2 problems\).*stages\[0\]\.account.*stages\[1\]"):
        load_config(path)


def test_a_config_without_stages_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nostages.toml"
    path.write_text(DEFAULT_TEXT[: DEFAULT_TEXT.index("[[stages]]")])
    with pytest.raises(ConfigError, match=r"nostages\.toml: invalid config .*stages: required"):
        load_config(path)


def test_imported_cluster_with_its_vpc_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "import.toml"
    path.write_text(
        DEFAULT_TEXT.replace(
            "nat_gateways = 3", 'nat_gateways = 3\nvpc_id = "vpc-0123456789abcdef0"'
        )
        .replace("# cluster_arn =", "cluster_arn =")
        .replace(
            "max_p99_latency_ms = 1000",
            'max_p99_latency_ms = 1000\ntest_cidrs = ["203.0.113.1/32"]',
        )
    )
    assert load_config(path).stages[1].service.cluster_name == "shared"


def test_missing_file_is_reported_as_such(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: config file not found"):
        load_config(tmp_path / "nope.toml")


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('[pipeline]\nproject = "webapp"\naccount = 111"\n')
    with pytest.raises(ConfigError, match=r"broken\.toml: not valid TOML: .*line 3"):
        load_config(path)


def test_default_config_is_valid() -> None:
    config = load_config(DEFAULT_CONFIG)
    assert [stage.name for stage in config.stages] == ["staging", "prod"]
    assert (config.pipeline.account, config.stages[0].account, config.stages[1].account) == (
        "111111111111",
        "222222222222",
        "333333333333",
    )
    assert config.stages[1].approval and not config.stages[0].approval


def test_cluster_name_is_derived_from_the_arn() -> None:
    config = load_config(FIXTURES / "imported.toml")
    service = config.stages[1].service
    assert service.cluster_arn == "arn:aws:ecs:us-west-2:333333333333:cluster/shared-services"
    assert service.cluster_name == "shared-services"


def test_config_is_immutable() -> None:
    config = load_config(DEFAULT_CONFIG)
    with pytest.raises(ValueError, match="frozen"):
        config.stages[0].name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("qualifier", "why"),
    [
        ("abcdefghijk", "11 characters: CDK allows 10"),
        ("Webapp", "upper case: the asset bucket's name must be lower case"),
        ("web_app", "underscore: not allowed in a bucket name"),
        ("-webapp", "leading hyphen"),
        ("", "empty"),
    ],
)
def test_a_bad_qualifier_is_refused(tmp_path: Path, qualifier: str, why: str) -> None:
    error = _load_edited(
        tmp_path, 'project = "webapp"', f'project = "webapp"\nqualifier = "{qualifier}"'
    )
    assert f"pipeline.qualifier = {qualifier!r}" in str(error), why
    assert "1 to 10 lower-case letters, digits or hyphens" in str(error)


@pytest.mark.parametrize("qualifier", ["abcdefghij", "a", "team-7"])
def test_a_qualifier_within_the_limits_is_used(tmp_path: Path, qualifier: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        DEFAULT_TEXT.replace('project = "webapp"', f'project = "webapp"\nqualifier = "{qualifier}"')
    )
    assert load_config(path).pipeline.qualifier == qualifier


@pytest.mark.parametrize(
    ("project", "qualifier"),
    [
        ("webapp", "webapp"),
        ("abcdefghij", "abcdefghij"),
        ("payments-api", "paym682a1c"),
        ("payments-web", "paym99e6d0"),
    ],
)
def test_the_qualifier_defaults_to_the_project_name(
    tmp_path: Path, project: str, qualifier: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(DEFAULT_TEXT.replace('project = "webapp"', f'project = "{project}"'))
    assert load_config(path).pipeline.qualifier == qualifier


@pytest.mark.parametrize(
    "environment",
    [
        '{ DB_PASSWORD = "hunter2-s3cr3t" }',
        '{ API_KEY = "hunter2-s3cr3t" }',
        '{ LONG = "hunter2-s3cr3t' + "x" * 4100 + '" }',
        '"hunter2-s3cr3t"',
    ],
    ids=["secret-looking name", "unnamed secret, valid", "too long", "not a table"],
)
def test_environment_values_are_never_echoed(tmp_path: Path, environment: str) -> None:
    path = tmp_path / "secret.toml"
    path.write_text(
        DEFAULT_TEXT.replace("desired_count = 3", f"desired_count = 3\nenvironment = {environment}")
    )
    try:
        load_config(path)
    except ConfigError as error:
        assert "stages[1].service.environment" in str(error)
        assert "hunter2" not in str(error)
    else:
        assert environment.startswith("{ API_KEY"), "only the valid one loads"


def test_a_model_pattern_always_comes_with_words() -> None:
    """pydantic's own pattern constraint reports the regular expression: the model uses none."""
    from pydantic import BaseModel

    import configuration.model as model

    def constraints(annotation: object) -> list[object]:
        found: list[object] = list(getattr(annotation, "__metadata__", ()))
        for argument in getattr(annotation, "__args__", ()) or ():
            found += constraints(argument)
        return found

    models = [value for value in vars(model).values() if isinstance(value, type)]
    for cls in models:
        if not issubclass(cls, BaseModel):
            continue
        for name, field in cls.model_fields.items():
            for item in [*field.metadata, *constraints(field.annotation)]:
                assert getattr(item, "pattern", None) is None, f"{cls.__name__}.{name}"


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + DEFAULT_TEXT.encode())
    assert load_config(path).pipeline.project == "webapp"


def test_non_utf8_bytes_are_reported_by_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(
        DEFAULT_TEXT.replace('project = "webapp"', 'project = "wébapp"').encode("latin-1")
    )
    line = DEFAULT_TEXT[: DEFAULT_TEXT.index('project = "webapp"')].count("\n") + 1
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"{path}: line {line}, column 13: byte 0xe9 is not UTF-8; expected a UTF-8 text file "
        "(save it as UTF-8 in your editor)."
    )


def test_settings_of_the_chosen_strategy_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "canary.toml"
    path.write_text(
        DEFAULT_TEXT.replace(
            'strategy = "blue_green"            #',
            'strategy = "canary"\ncanary_percent = 20\nstep_minutes = 4 #',
        )
    )
    release = load_config(path).stages[0].release
    assert (release.strategy, release.canary_percent, release.step_minutes) == ("canary", 20, 4)


def test_non_production_stages_may_share_an_account_and_a_wave(tmp_path: Path) -> None:
    path = tmp_path / "shared.toml"
    staging = DEFAULT_TEXT[
        DEFAULT_TEXT.index("[[stages]]") : DEFAULT_TEXT.index(
            "[[stages]]", 30 + DEFAULT_TEXT.index("[[stages]]")
        )
    ]
    second = staging.replace('name = "staging"', 'name = "qa"').replace(
        'cidr = "10.10.0.0/16"', 'cidr = "10.11.0.0/16"'
    )
    text = DEFAULT_TEXT.replace(staging, staging + second)
    text = text.replace("approval = false\n", 'approval = false\nwave = "pre"\n')
    path.write_text(text)
    stages = load_config(path).stages
    assert [(s.name, s.account, s.wave) for s in stages[:2]] == [
        ("staging", "222222222222", "pre"),
        ("qa", "222222222222", "pre"),
    ]


def test_an_empty_config_path_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^CONFIG is empty: expected the path of a deployment"):
        repository_config(" ")


def test_a_config_path_is_made_relative_to_the_repository(tmp_path: Path) -> None:
    assert repository_config(str(DEFAULT_CONFIG)) == "config/default.toml"
    (tmp_path / "config").mkdir()
    assert repository_config(str(tmp_path / "config" / "x.toml"), root=tmp_path) == "config/x.toml"


def test_the_readme_shows_a_real_refusal(tmp_path: Path) -> None:
    """The configuration guide's example message is what the loader prints (paths aside)."""
    message = str(_load_edited(tmp_path, "memory = 1024", "memory = 1000"))
    body = message.split(": invalid config ", 1)[1]
    readme = " ".join((ROOT / "docs" / "configuration.md").read_text().split())
    assert body in readme, body
