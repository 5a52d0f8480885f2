"""One Stage class per target: its own account and region, names carrying project and stage."""

from __future__ import annotations

import pytest

from ..conftest import Synthesized

EXPECTED = {
    "staging": ("222222222222", "eu-west-1", False),
    "prod": ("333333333333", "eu-west-1", True),
}


@pytest.mark.parametrize("name", EXPECTED)
def test_stage_targets_its_own_account_and_region(default_synth: Synthesized, name: str) -> None:
    account, region, production = EXPECTED[name]
    stage = default_synth.stage(name)
    assert (stage.account, stage.region) == (account, region)
    for stack in stage.stacks:
        assert (stack.account, stack.region) == (account, region)
        assert stack.termination_protection is production
    assert sorted(stack.stack_name for stack in stage.stacks) == [
        f"webapp-{name}-network",
        f"webapp-{name}-service",
    ]


def test_service_stack_follows_the_network_stack(default_synth: Synthesized) -> None:
    for stage in default_synth.stack.stages:
        assert stage.network is not None
        assert stage.network in stage.service.dependencies
