from connectors.sources.base import Source


class WebhookSource(Source):
    """Records are pushed by the legacy system to the HTTP API; nothing to poll."""

    kind = "webhook"

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        if config:
            raise ValueError("the webhook source takes no configuration")
        return {}
