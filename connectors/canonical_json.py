"""The canonical JSON both audit chains hash: compact, keys sorted, non-ASCII as it is. The
bytes are json.dumps's (tools/verify_evidence.py and every stored event use them); orjson
writes the same bytes about ten times faster for values without floats (it writes some floats
differently: 1e+16 as 1e16, NaN as null), so it writes those and json the rest."""

import json
import math
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False), encoded."""
    if is_plain(value, floats=False):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # an integer beyond 64 bits, a lone surrogate: as json does
            pass
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def is_plain(value: Any, *, floats: bool = True) -> bool:
    """Whether the value holds only dicts with text keys, lists, text, integers, booleans, None
    and (with `floats`) finite floats, of those exact types: what JSON reads back equal and of
    the same types (a tuple, a str enum, an integer subclass come back as something else)."""
    kind = type(value)
    if kind in LEAVES:
        return True
    if kind is float:
        return floats and math.isfinite(value)
    if kind is dict:
        for key in value:
            if type(key) is not str:
                return False
        items = value.values()
    elif kind is list:
        items = value
    else:
        return False
    for item in items:  # the leaves here, not a call for each (most values are text)
        if type(item) not in LEAVES and not is_plain(item, floats=floats):
            return False
    return True


LEAVES = frozenset({str, int, bool, type(None)})
