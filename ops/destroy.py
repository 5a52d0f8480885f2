"""`make destroy`: delete one stage's stack, say what stays behind.

    make destroy CONFIG=config/mine.toml STAGE=staging              # dry run: the plan only
    make destroy CONFIG=config/mine.toml STAGE=staging APPLY=1      # delete it
    make destroy CONFIG=config/mine.toml STAGE=prod CONFIRM=prod APPLY=1

The dry run reads the synthesized template in cdk.out and needs no credentials: it names the
stack, its account and region, and every resource CloudFormation keeps when the stack is deleted
(`DeletionPolicy: Retain`, production's stateful resources). With `--apply` it uses the stage's
`profile` (or the default credentials), checks they belong to the stage's account, and deletes the
stack, waiting for the result. A production stage is refused unless `--confirm-production` repeats
its name; then the stack's termination protection and its load balancer's deletion protection are
turned off first (both are on in production precisely so that nothing deletes it by accident).

Remove the stage from the config and push first (docs/operations.md, "Remove a stage"): the
pipeline does not delete stacks, but it would create this one again on the next run while the
stage is configured.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from configuration import ConfigError, load_config
from configuration.toolchain import ROOT
from ops import SessionFor, boto_session, quiet_interrupts
from service.timing import service_templates

RETAINING = {"Retain", "RetainExceptOnCreate"}
LOAD_BALANCER = "AWS::ElasticLoadBalancingV2::LoadBalancer"
AWS_ERRORS = {"ClientError", "NoCredentialsError", "ProfileNotFound", "WaiterError"}


@dataclass(frozen=True)
class Plan:
    stage: str
    stack_name: str
    account: str
    region: str
    profile: str | None
    production: bool
    resources: int
    retained: tuple[tuple[str, str], ...]  # (logical id, type)
    load_balancers: tuple[str, ...]  # logical ids: production turns their protection on

    def describe(self) -> str:
        lines = [
            f"Stage '{self.stage}': stack {self.stack_name} in account {self.account}, "
            f"{self.region}{' (production)' if self.production else ''}.",
            f"Deleting it removes {self.resources - len(self.retained)} of its "
            f"{self.resources} resources.",
        ]
        if self.retained:
            lines.append(
                f"CloudFormation keeps these {len(self.retained)} (DeletionPolicy Retain); "
                "they go on costing until deleted by hand:"
            )
            lines += [f"  {logical_id:<60} {kind}" for logical_id, kind in self.retained]
        else:
            lines.append("Nothing is kept: every resource is deleted with the stack.")
        return "\n".join(lines)


class DestroyError(Exception):
    """A refusal or a failure, with what to do; str() is the message."""


def plan(cloud_assembly: Path, config_path: Path, stage_name: str, suffix: str = "") -> Plan:
    config = load_config(config_path)
    stages = {stage.name: stage for stage in config.stages}
    if stage_name not in stages:
        raise DestroyError(
            f"{config_path}: no stage '{stage_name}'; expected one of {', '.join(stages)}."
        )
    stage = stages[stage_name]
    has_assembly = (cloud_assembly / "manifest.json").is_file()
    templates = service_templates(cloud_assembly) if has_assembly else {}
    if stage_name not in templates:
        raise DestroyError(
            f"{cloud_assembly} has no template for stage '{stage_name}': synthesize the same "
            "config first (make destroy does: make synth CONFIG=...)."
        )
    resources = templates[stage_name].get("Resources", {})
    retained = tuple(
        (logical_id, str(r["Type"]))
        for logical_id, r in sorted(resources.items())
        if r.get("DeletionPolicy") in RETAINING
    )
    return Plan(
        stage=stage_name,
        stack_name=f"{config.pipeline.project}-{stage_name}{suffix}-service",
        account=stage.account,
        region=stage.region,
        profile=stage.profile,
        production=stage.production,
        resources=len(resources),
        retained=retained,
        load_balancers=tuple(k for k, r in sorted(resources.items()) if r["Type"] == LOAD_BALANCER),
    )


def destroy(the_plan: Plan, session: Any, *, wait_delay: int = 15) -> list[str]:
    """Delete the stack; return 'logical id: physical id' of each resource left behind."""
    account = session.client("sts").get_caller_identity()["Account"]
    if account != the_plan.account:
        raise DestroyError(
            f"the credentials are for account {account}, but stage '{the_plan.stage}' is in "
            f"{the_plan.account}: set the stage's `profile` in the config (or AWS_PROFILE)."
        )
    cloudformation = session.client("cloudformation", region_name=the_plan.region)
    try:
        [stack] = cloudformation.describe_stacks(StackName=the_plan.stack_name)["Stacks"]
    except Exception as error:  # botocore's ClientError: the stack does not exist
        if "does not exist" in str(error):
            print(f"Stack {the_plan.stack_name} does not exist: nothing to delete.")
            return []
        raise
    physical = {
        r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
        for r in cloudformation.describe_stack_resources(StackName=the_plan.stack_name)[
            "StackResources"
        ]
    }
    if the_plan.production:
        elbv2 = session.client("elbv2", region_name=the_plan.region)
        for logical_id in the_plan.load_balancers:
            if physical.get(logical_id):
                elbv2.modify_load_balancer_attributes(
                    LoadBalancerArn=physical[logical_id],
                    Attributes=[{"Key": "deletion_protection.enabled", "Value": "false"}],
                )
    if stack.get("EnableTerminationProtection"):
        cloudformation.update_termination_protection(
            EnableTerminationProtection=False, StackName=the_plan.stack_name
        )
    cloudformation.delete_stack(StackName=the_plan.stack_name)
    print(f"Deleting {the_plan.stack_name} ...", flush=True)
    cloudformation.get_waiter("stack_delete_complete").wait(
        StackName=the_plan.stack_name, WaiterConfig={"Delay": wait_delay, "MaxAttempts": 240}
    )
    return [f"{logical_id}: {physical.get(logical_id, '?')}" for logical_id, _ in the_plan.retained]


def main(argv: list[str] | None = None, session_for: SessionFor = boto_session) -> int:
    parser = argparse.ArgumentParser(description="Delete one stage's stack (dry run by default).")
    parser.add_argument("config", type=Path)
    parser.add_argument("--stage", required=True)
    parser.add_argument("--suffix", default="", help="the SUFFIX the stage was deployed with")
    parser.add_argument("--cdk-out", type=Path, default=ROOT / "cdk.out")
    parser.add_argument("--apply", action="store_true", help="delete (default: dry run)")
    parser.add_argument("--confirm-production", default="", metavar="STAGE")
    parser.add_argument("--wait-delay", type=int, default=15, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    suffix = f"-{args.suffix}" if args.suffix else ""
    try:
        the_plan = plan(args.cdk_out, args.config, args.stage, suffix)
        print(the_plan.describe())
        if the_plan.production and args.confirm_production != the_plan.stage:
            raise DestroyError(
                f"'{the_plan.stage}' is a production stage: refusing to delete it. If you really "
                f"mean to, run again with CONFIRM={the_plan.stage} (--confirm-production "
                f"{the_plan.stage}); its termination and deletion protection will be turned off."
            )
        if not args.apply:
            print("\nDry run: nothing was deleted. Run again with APPLY=1 (--apply) to delete.")
            return 0
        left = destroy(
            the_plan, session_for(the_plan.profile, the_plan.region), wait_delay=args.wait_delay
        )
    except (ConfigError, DestroyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # botocore's, without importing it for the dry run
        if type(error).__name__ not in AWS_ERRORS:
            raise
        print(
            f"error: {error}. Nothing more was done; the stack's events in the CloudFormation "
            "console say what failed (docs/operations.md, 'Remove a stage').",
            file=sys.stderr,
        )
        return 1
    print(f"Deleted {the_plan.stack_name}.")
    if left:
        print("Left behind (delete by hand when no longer needed):")
        print("\n".join(f"  {line}" for line in left))
    return 0


if __name__ == "__main__":
    quiet_interrupts()
    sys.exit(main())
