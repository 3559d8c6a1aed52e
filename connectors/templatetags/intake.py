from django import template
from django.urls import reverse

from connectors.api import examples

register = template.Library()


@register.simple_tag(takes_context=True)
def intake_examples(context, connector) -> list[examples.Example]:
    """One example request per body type the connector accepts, for its page."""
    url = reverse("api:records", kwargs={"slug": connector.slug})
    return examples.for_connector(connector, context["request"].build_absolute_uri(url))


@register.simple_tag(takes_context=True)
def ready_to_paste(context, api_key, plain: str, secret: str | None) -> examples.Example:
    """The command to try a key just created: shown once, with the key (and secret) in it."""
    url = reverse("api:records", kwargs={"slug": api_key.connector.slug})
    absolute = context["request"].build_absolute_uri(url)
    return examples.ready_to_paste(api_key.connector, absolute, plain, secret)
