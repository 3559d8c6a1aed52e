"""What the AI calls cost, per connector and provider, in each provider's currency: summed from
the attempt rows (each priced at the prices of the provider that answered it)."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Count, Sum

from connectors.models import JobAttempt, Provider


@dataclass(frozen=True)
class CostRow:
    connector: str
    provider: str
    currency: str
    calls: int
    tokens_in: int
    tokens_out: int
    cost: Decimal


def by_connector_and_provider(since: datetime) -> list[CostRow]:
    """Attempts that called a provider since `since`, grouped by connector and provider."""
    currencies = dict(Provider.objects.values_list("name", "currency"))
    rows = (
        JobAttempt.objects.filter(started_at__gte=since)
        .exclude(provider_name="")
        .values("job__connector__slug", "provider_name")
        .annotate(
            calls=Count("id"),
            tokens_in=Sum("tokens_in"),
            tokens_out=Sum("tokens_out"),
            cost=Sum("cost"),
        )
        .order_by("job__connector__slug", "provider_name")
    )
    return [
        CostRow(
            connector=row["job__connector__slug"],
            provider=row["provider_name"],
            currency=currencies.get(row["provider_name"], "?"),
            calls=row["calls"],
            tokens_in=row["tokens_in"] or 0,
            tokens_out=row["tokens_out"] or 0,
            cost=row["cost"] or Decimal(0),
        )
        for row in rows
    ]


def totals_by_currency(rows: list[CostRow]) -> dict[str, Decimal]:
    """Money is added up only within a currency."""
    totals: dict[str, Decimal] = {}
    for row in rows:
        totals[row.currency] = totals.get(row.currency, Decimal(0)) + row.cost
    return dict(sorted(totals.items()))
