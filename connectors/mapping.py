"""Pure functions: dotted paths into a record and the transforms applied to what they find."""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from connectors.errors import MappingError

PATH_PART = re.compile(r"([^.\[\]]+)|\[(-?\d+)\]")
TARGET_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
TRANSFORMS = {"strip", "lower", "upper", "truncate", "default", "str", "int", "float"}
CONVERSIONS = {"str": str, "int": int, "float": float}


@dataclass(frozen=True)
class FieldSpec:
    source: str
    target: str
    transform: str = ""
    required: bool = False


class PathNotFound(LookupError):
    pass


def parse_path(path: str) -> list[str | int]:
    """`customer.address.zip` -> ["customer", "address", "zip"]; `lines[0]` -> ["lines", 0]."""
    if not path or not path.strip():
        raise ValueError("a path cannot be empty")
    parts: list[str | int] = []
    position = 0
    while position < len(path):
        if parts and path[position] == ".":
            position += 1
            if position == len(path):
                raise ValueError(f"path {path!r} ends with a dot")
            if path[position] in ".[":
                raise ValueError(f"path {path!r} has an empty part at character {position + 1}")
        match = PATH_PART.match(path, position)
        if match is None:
            raise ValueError(
                f"path {path!r} cannot be read at character {position + 1}: "
                "use names separated by dots and [N] for list items"
            )
        name, index = match.groups()
        parts.append(int(index) if index is not None else name)
        position = match.end()
        if position < len(path) and path[position] not in ".[":
            raise ValueError(f"path {path!r} cannot be read at character {position + 1}")
    return parts


@lru_cache(maxsize=1024)
def parsed_path(path: str) -> tuple[str | int, ...]:
    """parse_path once per path (every record of a body resolves the same ones)."""
    return tuple(parse_path(path))


def resolve_path(record: Any, path: str) -> Any:
    value = record
    for part in parsed_path(path):
        if isinstance(part, int) and isinstance(value, list):
            if not -len(value) <= part < len(value):
                raise PathNotFound(f"{path}: index [{part}] is out of range")
            value = value[part]
        elif isinstance(part, str) and isinstance(value, dict):
            if part not in value:
                raise PathNotFound(f"{path}: no key {part!r}")
            value = value[part]
        else:
            raise PathNotFound(f"{path}: cannot look up {part!r} in a {type(value).__name__}")
    return value


def parse_transforms(text: str) -> list[tuple[str, str | None]]:
    """`strip|lower|truncate:200|default:n/a` -> [("strip", None), ..., ("default", "n/a")]."""
    transforms: list[tuple[str, str | None]] = []
    for item in filter(None, (part.strip() for part in (text or "").split("|"))):
        name, _, argument = item.partition(":")
        name = name.strip()
        if name not in TRANSFORMS:
            raise ValueError(f"unknown transform {name!r}; known: {', '.join(sorted(TRANSFORMS))}")
        if name == "truncate" and not (argument.isdigit() and int(argument) > 0):
            raise ValueError("truncate needs a positive number, e.g. truncate:200")
        if name == "default" and ":" not in item:
            raise ValueError("default needs a value, e.g. default:n/a")
        transforms.append((name, argument if ":" in item else None))
    return transforms


@lru_cache(maxsize=1024)
def parsed_transforms(text: str) -> tuple[tuple[str, str | None], ...]:
    """parse_transforms once per transform text (every record of a body uses the same)."""
    return tuple(parse_transforms(text))


def apply_transforms(value: Any, transforms: Iterable[tuple[str, str | None]]) -> Any:
    """Apply in order; raises ValueError when a conversion (int, float) cannot be made."""
    for name, argument in transforms:
        if name in CONVERSIONS:
            if value is not None and value != "":
                value = convert(value, name)
        elif name == "default":
            if value is None or value == "":
                value = argument
        elif isinstance(value, str):
            if name == "strip":
                value = value.strip()
            elif name == "lower":
                value = value.lower()
            elif name == "upper":
                value = value.upper()
            elif name == "truncate":
                value = value[: int(argument)]
    return value


def convert(value: Any, name: str) -> Any:
    if name == "str":
        return value if isinstance(value, str) else str(value)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"a {type(value).__name__} cannot become {name}")
    try:
        return CONVERSIONS[name](value.strip() if isinstance(value, str) else value)
    except ValueError:
        raise ValueError(f"{name} conversion failed") from None


def validate_target_name(name: str) -> None:
    if not TARGET_NAME.match(name or ""):
        raise ValueError(
            f"{name!r} cannot be a field name: use letters, digits and _, starting with a letter"
        )


def map_fields(record: Any, specs: list[FieldSpec]) -> dict[str, Any]:
    """Pick and transform fields; without specs, the record itself is the mapped fields."""
    if not specs:
        return dict(record) if isinstance(record, dict) else {"value": record}
    if not isinstance(record, dict | list):
        raise MappingError("the record must be a JSON object")
    fields = {}
    for spec in specs:
        try:
            value = resolve_path(record, spec.source)
        except PathNotFound:
            value = None
        try:
            value = apply_transforms(value, parsed_transforms(spec.transform))
        except ValueError as error:
            raise MappingError(f"field {spec.source!r}: {error}", field=spec.source) from None
        if spec.required and (value is None or value == ""):
            raise MappingError(f"required field {spec.source!r} is missing", field=spec.source)
        fields[spec.target] = value
    return fields
