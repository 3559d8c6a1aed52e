"""A provider's prices in configuration files: per million tokens, as vendors publish them.

Files written before prices were per million (`price_per_1k_input`, `price_per_1k_output`) are
still read, converted; exports write the per-million fields and the currency.
"""

import re
from decimal import Decimal, InvalidOperation

FIELDS = ("price_per_1m_input", "price_per_1m_output", "price_per_1m_cached_input")
LEGACY = {"price_per_1k_input": "price_per_1m_input", "price_per_1k_output": "price_per_1m_output"}
CURRENCY = re.compile(r"[A-Z]{3}")


def _decimal(value) -> Decimal | None:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() and number >= 0 else None


def problems(item: dict) -> dict[str, str]:
    """What is wrong with an item's prices and currency, by field."""
    found = {}
    for name in (*FIELDS, *LEGACY):
        if item.get(name) is not None and _decimal(item[name]) is None:
            found[name] = f"{name} must be a number of at least 0"
    for old, new in LEGACY.items():
        if old in item and new in item:
            found[old] = f"{old} and {new} both set: keep {new}"
    currency = item.get("currency", "USD")
    if not isinstance(currency, str) or not CURRENCY.fullmatch(currency):
        found["currency"] = "currency must be an ISO 4217 code such as USD or EUR"
    return found


def imported(item: dict) -> dict:
    """The Provider fields for an item that `problems` accepted."""
    values = {name: _decimal(item.get(name, 0)) for name in FIELDS[:2]}
    for old, new in LEGACY.items():
        if item.get(old) is not None:
            values[new] = _decimal(item[old]) * 1000
    cached = item.get("price_per_1m_cached_input")
    values["price_per_1m_cached_input"] = None if cached is None else _decimal(cached)
    values["currency"] = item.get("currency", "USD")
    return values


def plain(amount: Decimal) -> str:
    """500, 0.15: no trailing zeros and no exponent (normalize() alone writes 5E+2)."""
    return format(amount.normalize(), "f")


def exported(provider) -> dict:
    values = {
        "price_per_1m_input": plain(provider.price_per_1m_input),
        "price_per_1m_output": plain(provider.price_per_1m_output),
    }
    if provider.price_per_1m_cached_input is not None:
        values["price_per_1m_cached_input"] = plain(provider.price_per_1m_cached_input)
    values["currency"] = provider.currency
    return values
