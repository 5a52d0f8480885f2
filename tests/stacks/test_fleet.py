"""A thirty-target fleet synthesizes into a pipeline that CodePipeline accepts."""

from __future__ import annotations

from collections.abc import Callable

from aws_cdk.assertions import Template

from configuration.waves import MAX_ACTIONS_PER_STAGE, MAX_STAGES_PER_PIPELINE

from ..conftest import FIXTURES, Synthesized


def test_thirty_targets_synthesize_within_codepipeline_quotas(
    synth: Callable[..., Synthesized],
) -> None:
    result = synth(FIXTURES / "fleet30.toml")
    [pipeline] = (
        Template.from_stack(result.stack).find_resources("AWS::CodePipeline::Pipeline").values()
    )
    stages = pipeline["Properties"]["Stages"]
    assert len(stages) <= MAX_STAGES_PER_PIPELINE
    assert all(len(stage["Actions"]) <= MAX_ACTIONS_PER_STAGE for stage in stages)
    names = [stage["Name"] for stage in stages]
    assert names[-3:] == ["t00", "wave-a", "wave-b"]
    # The security scan leads the first stage after the assets, before its target deploys.
    first = {a["Name"]: a["RunOrder"] for a in stages[-3]["Actions"]}
    assert first["SecurityScan"] < first["fleet-t00-service.Deploy"]
    wave_a = stages[-2]["Actions"]
    approvals = [a for a in wave_a if a["ActionTypeId"]["Category"] == "Approval"]
    assert len(approvals) == 1 and approvals[0]["RunOrder"] == 1
    deploys = [a for a in wave_a if a["ActionTypeId"]["Category"] == "Deploy"]
    assert len(deploys) == 14  # one stack per target, in parallel after the approval
    assert {a["RunOrder"] for a in deploys} == {2}
    assert len(result.stack.stages) == 30
