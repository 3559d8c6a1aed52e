from connectors.plugins import INTEGER, Setting
from connectors.sources.base import Source


class WebhookSource(Source):
    """Records are pushed by the legacy system to the HTTP API; nothing to poll."""

    kind = "webhook"
    settings = (
        Setting(
            "requests_per_minute",
            INTEGER,
            minimum=1,
            help="Intake limit for all of this connector's API keys together; "
            "empty: INTAKE_REQUESTS_PER_MINUTE.",
        ),
    )

    @classmethod
    def intake_requests_per_minute(cls, config: dict) -> int | None:
        return config.get("requests_per_minute")
