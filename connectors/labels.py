"""How the console names a connector: its name, with the slug where names collide (an imported
copy keeps its source's name, and two rows reading "Invoices" cannot be told apart)."""

from collections import Counter

from connectors.models import Connector


def connector_labels() -> dict[int, str]:
    """Every connector's label by primary key (one small query)."""
    rows = list(Connector.objects.values_list("pk", "name", "slug"))
    names = Counter(name for _, name, _ in rows)
    return {pk: label(name, slug, names[name] > 1) for pk, name, slug in rows}


def label(name: str, slug: str, is_ambiguous: bool) -> str:
    return f"{name} ({slug})" if is_ambiguous else name
