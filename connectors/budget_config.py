"""A connector's budgets in configuration files:

budgets:
  - {period: month, max_cost: "500", when_exhausted: wait}
  - {period: day, max_tokens: 2000000, provider: gpt}
"""

from decimal import Decimal, InvalidOperation

from connectors.models import Budget, Connector, Provider
from connectors.prices import plain

KEYS = ("period", "provider", "max_tokens", "max_cost", "when_exhausted")


def exported(connector: Connector) -> list[dict]:
    found = []
    for budget in connector.budgets.select_related("provider").order_by("id"):
        item = {"period": budget.period}
        if budget.provider_id:
            item["provider"] = budget.provider.name
        if budget.max_tokens is not None:
            item["max_tokens"] = budget.max_tokens
        if budget.max_cost is not None:
            item["max_cost"] = plain(budget.max_cost)
        item["when_exhausted"] = budget.when_exhausted
        found.append(item)
    return found


def problems(items, providers: set[str]) -> list[tuple[str, str]]:
    """(where, what) for each budget a file cannot hold."""
    if not isinstance(items, list):
        return [("budgets", "must be a list")]
    found = []
    for index, item in enumerate(items):
        where = f"budgets[{index}]"
        if not isinstance(item, dict):
            found.append((where, "must be a mapping"))
            continue
        unknown = sorted(set(item) - set(KEYS))
        if unknown:
            found.append((where, f"unknown keys {', '.join(unknown)}; known: {', '.join(KEYS)}"))
        if item.get("period", "day") not in Budget.Period.values:
            found.append((f"{where}.period", "must be day or month"))
        if item.get("when_exhausted", "wait") not in Budget.WhenExhausted.values:
            found.append((f"{where}.when_exhausted", "must be wait or dead"))
        if item.get("provider") is not None and item["provider"] not in providers:
            found.append((f"{where}.provider", f"no provider named {item['provider']!r}"))
        tokens, cost = item.get("max_tokens"), item.get("max_cost")
        if tokens is None and cost is None:
            found.append((where, "set max_tokens, max_cost or both"))
        if tokens is not None and (type(tokens) is not int or tokens < 1):
            found.append((f"{where}.max_tokens", "must be a whole number of at least 1"))
        if cost is not None and _money(cost) is None:
            found.append((f"{where}.max_cost", 'must be an amount of at least 0, e.g. "50.00"'))
    return found


def _money(value) -> Decimal | None:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() and amount >= 0 else None


def replace(connector: Connector, items: list[dict]) -> None:
    """The file's budgets, unless they are already the connector's (their counters are kept:
    a replaced budget's counter is seeded again from the recorded usage)."""
    if exported(connector) == [_normalised(item) for item in items]:
        return
    connector.budgets.all().delete()
    providers = {
        p.name: p for p in Provider.objects.filter(name__in=[i.get("provider") for i in items])
    }
    Budget.objects.bulk_create(
        Budget(
            connector=connector,
            provider=providers.get(item.get("provider")),
            period=item.get("period", "day"),
            max_tokens=item.get("max_tokens"),
            max_cost=None if item.get("max_cost") is None else _money(item["max_cost"]),
            when_exhausted=item.get("when_exhausted", "wait"),
        )
        for item in items
    )


def _normalised(item: dict) -> dict:
    normal = {"period": item.get("period", "day")}
    if item.get("provider"):
        normal["provider"] = item["provider"]
    if item.get("max_tokens") is not None:
        normal["max_tokens"] = item["max_tokens"]
    if item.get("max_cost") is not None:
        normal["max_cost"] = plain(_money(item["max_cost"]))
    normal["when_exhausted"] = item.get("when_exhausted", "wait")
    return normal
