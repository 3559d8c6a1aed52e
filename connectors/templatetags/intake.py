from django import template
from django.urls import reverse

from connectors.api import examples

register = template.Library()


@register.simple_tag(takes_context=True)
def intake_examples(context, connector) -> list[examples.Example]:
    """One example request per body type the connector accepts, for its page."""
    url = reverse("api:records", kwargs={"slug": connector.slug})
    return examples.for_connector(connector, context["request"].build_absolute_uri(url))
