"""JSON from legacy systems, read strictly, and values checked before they are stored.

`json.loads` accepts what no job row can hold or no worker should choke on: NaN and Infinity
(also spelled as an overflowing number, 1e999), nesting deep enough that code walking the value
recursively (redaction, mapping, serializers) exhausts Python's recursion limit, NUL characters
(PostgreSQL text refuses them) and unpaired surrogates (not encodable as UTF-8). Each of these
must be a clear refusal of that one record, never a 500 or a crashed consumer.
"""

import json
import math
from typing import Any


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is too large")
    return value


_decoder = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)

# Deeper than any record a legacy system writes, far below what recursion can take.
MAX_DEPTH = 64
TOO_DEEP = f"the JSON is nested more than {MAX_DEPTH} levels deep"


class TooDeep(ValueError):
    """Valid JSON, but nested deeper than MAX_DEPTH (an invalid record rather than bad JSON)."""

    def __init__(self) -> None:
        super().__init__(TOO_DEEP)


def loads(text: str | bytes) -> Any:
    """Parse JSON; every refusal is a ValueError (JSONDecodeError is one) with a plain reason."""
    if isinstance(text, bytes):
        text = text.decode(json.detect_encoding(text))  # UTF-8, or UTF-16/32 as JSON allows
    try:
        return shallow(_decoder.decode(text.removeprefix("\ufeff")))
    except RecursionError:
        raise TooDeep from None


def raw_decode(text: str, index: int) -> tuple[Any, int]:
    """One JSON value starting at `index` (for streaming readers); refusals as in `loads`."""
    try:
        value, end = _decoder.raw_decode(text, index)
    except RecursionError:
        raise TooDeep from None
    return shallow(value), end


def shallow(value: Any) -> Any:
    """`value` if it nests at most MAX_DEPTH levels of objects and arrays; else TooDeep.
    Walked without recursion, so the check itself cannot overflow."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        if children and depth > MAX_DEPTH:
            raise TooDeep
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return value


def unstorable(value: Any) -> str | None:
    """Why `value` (mapped fields, a prompt) cannot be stored, naming where; None if it can."""
    pending: list[tuple[str, Any]] = [("", value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, str):
            reason = _string_problem(item)
        elif isinstance(item, float) and not math.isfinite(item):
            reason = "is not a finite number"
        elif isinstance(item, dict):
            reason = None
            for key, child in item.items():
                if isinstance(key, str) and (key_problem := _string_problem(key)):
                    return f"a field name in {path or 'the record'} {key_problem}"
                pending.append((f"{path}.{key}" if path else str(key), child))
        elif isinstance(item, list | tuple):
            reason = None
            pending.extend((f"{path}[{index}]", child) for index, child in enumerate(item))
        else:
            reason = None
        if reason:
            return f"{path or 'the value'} {reason}"
    return None


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate (not valid Unicode)"
    return None
