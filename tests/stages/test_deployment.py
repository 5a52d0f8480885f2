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
    assert [stack.stack_name for stack in stage.stacks] == [f"webapp-{name}-service"]
