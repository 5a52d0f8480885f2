"""Read a deployment config from TOML and turn every problem into one readable paragraph."""

from __future__ import annotations

import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from configuration.model import DeploymentConfig


class ConfigError(Exception):
    """A config that cannot be used. `str()` is the paragraph shown to the user."""


def load_config(path: Path) -> DeploymentConfig:
    """Parse and validate `path`; raise ConfigError with a one-paragraph explanation."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found. Expected a TOML deployment config; "
            "copy config/default.toml and pass it with `make synth CONFIG=PATH` "
            "or `cdk synth -c config=PATH`."
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the config file: {error}.") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}.") from None
    try:
        return DeploymentConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_describe(path, error)) from None


def _describe(path: Path, error: ValidationError) -> str:
    problems = [_describe_one(item) for item in error.errors(include_url=False)]
    count = len(problems)
    heading = f"{path}: invalid config ({count} problem{'s' if count > 1 else ''})"
    return f"{heading}: " + "; ".join(problems) + "."


def _describe_one(item: Any) -> str:
    loc: tuple[str | int, ...] = tuple(item["loc"])
    context = item.get("ctx") or {}
    where = _path(loc)
    if "field" in context:
        field = str(context["field"])
        where = f"{where}.{field}" if where and not field.startswith("[") else where + field
        value = context["value"]
    else:
        value = item.get("input")
    kind = item["type"]
    if kind == "missing":
        return f"{where}: required field is missing"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = f"; expected one of: {', '.join(allowed)}" if allowed else ""
        return f"{where}: unknown key{hint}"
    if isinstance(value, dict):
        shown = ""
    elif value is None:
        shown = " (not set)"
    else:
        shown = f" = {value!r}"
    return f"{where or 'config'}{shown}: {item['msg']}"


def _path(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in {"function-after", "function-plain"} or part.startswith("function-"):
            continue
        else:
            text += f".{part}" if text else part
    return text


def _allowed_keys(loc: tuple[str | int, ...]) -> list[str]:
    """The keys valid at `loc`, found by walking the model's type annotations."""
    model: Any = DeploymentConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if _is_model(model) else None
        if field is None:
            return []
        model = _inner_model(field.annotation)
    return sorted(model.model_fields) if _is_model(model) else []


def _is_model(candidate: Any) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, BaseModel)


def _inner_model(annotation: Any) -> Any:
    if _is_model(annotation):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (list, typing.Union, types.UnionType, typing.Annotated):
        for argument in typing.get_args(annotation):
            found = _inner_model(argument)
            if found is not None:
                return found
    return None
