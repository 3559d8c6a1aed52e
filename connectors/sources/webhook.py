from connectors.sources.base import Source, check_keys


class WebhookSource(Source):
    """Records are pushed by the legacy system to the HTTP API; nothing to poll."""

    kind = "webhook"

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        check_keys(config, required=set(), optional={"requests_per_minute"})
        limit = config.get("requests_per_minute")
        if limit is not None and (type(limit) is not int or limit < 1):
            raise ValueError("requests_per_minute must be a whole number of at least 1")
        return config
