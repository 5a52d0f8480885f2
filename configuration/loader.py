"""Read a deployment config from TOML and turn every problem into one readable paragraph."""

from __future__ import annotations

import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from configuration.model import DeploymentConfig
from configuration.toolchain import ROOT


class ConfigError(Exception):
    """A config that cannot be used. `str()` is the paragraph shown to the user."""


def repository_config(value: str, root: Path = ROOT) -> str:
    """The config's path relative to the repository, or ConfigError: the pipeline synthesizes
    again from a clone of the repository, where nothing outside it (or behind a link leading
    out of it) exists."""
    if not value.strip():
        raise ConfigError(
            "CONFIG is empty: expected the path of a deployment config inside the repository, "
            "such as CONFIG=config/default.toml (or leave CONFIG out for that default)."
        )
    path = Path(value)
    absolute = path if path.is_absolute() else Path.cwd() / path
    resolved = absolute.resolve()
    try:
        return resolved.relative_to(root).as_posix()
    except ValueError:
        pass
    try:
        Path(os.path.normpath(absolute)).relative_to(root)
    except ValueError:
        raise ConfigError(
            f"{value}: the config file must be inside the repository ({root}), because the "
            "pipeline synthesizes again from a clone of the repository; move it under config/."
        ) from None
    raise ConfigError(
        f"{value}: a symbolic link to {resolved}, which is outside the repository ({root}); "
        "the pipeline synthesizes again from a clone of the repository, where the link leads "
        "nowhere: copy the file under config/ instead of linking to it."
    )


def load_config(path: Path) -> DeploymentConfig:
    """Parse and validate `path`; raise ConfigError with a one-paragraph explanation."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found. Expected a TOML deployment config; "
            "copy config/default.toml and pass it with `make synth CONFIG=PATH` "
            "or `npx cdk synth -c config=PATH`."
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            f"{path}: is a directory; expected a TOML deployment config file such as "
            "config/default.toml."
        ) from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file: {error.strerror}.") from None
    text = _decode(path, data)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}.") from None
    try:
        return DeploymentConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_describe(path, error)) from None


def _decode(path: Path, data: bytes) -> str:
    """UTF-8 text; a byte-order mark (which some Windows editors write) is dropped."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise ConfigError(
            f"{path}: line {line}, column {column}: byte 0x{data[error.start]:02x} is not UTF-8; "
            "expected a UTF-8 text file (save it as UTF-8 in your editor)."
        ) from None


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
    if "environment" in loc and "[key]" not in loc:
        # A value of service.environment may be a secret someone pasted in: never echo it.
        shown = ""
    elif isinstance(value, dict):
        shown = ""
    elif value is None:
        shown = " (not set)"
    else:
        shown = f" = {value!r}"
    return f"{where or 'config'}{shown}: {_explain(kind, item['msg'], value, loc)}"


def _explain(kind: str, message: str, value: Any, loc: tuple[str | int, ...]) -> str:
    """pydantic's message, with a hint where its own words would not help a newcomer."""
    if kind == "string_type" and isinstance(value, int | float) and not isinstance(value, bool):
        key = next((part for part in reversed(loc) if isinstance(part, str)), "key")
        why = " (an account id is text: in quotes it keeps its leading zeros)"
        return f'expected text in quotes, as in {key} = "{value}"{why if key == "account" else ""}'
    if kind == "string_pattern_mismatch":
        # Every pattern of the model explains itself (model._matching); this is a safety net so
        # that a regular expression is never what the user reads.
        return "not in the expected form (see the config table in docs/configuration.md)"
    return message


def _path(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part == "[key]" or part.startswith("function-"):
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
