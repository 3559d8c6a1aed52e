"""A connector's intake limit: requests per minute from all of its API keys together, counted in
Redis so that every web process on every host shares one count (DRF's cache-based throttles
count per process)."""

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from connectors import ratelimit
from connectors.models import Connector
from connectors.sources import SOURCES


def intake_limit(connector: Connector) -> int:
    """Requests per minute; 0 means no limit."""
    kind = SOURCES.get(connector.source_kind)
    configured = kind.intake_requests_per_minute(connector.source_config)
    return configured or settings.INTAKE_REQUESTS_PER_MINUTE


class ConnectorRateThrottle(BaseThrottle):
    def allow_request(self, request, view) -> bool:
        if request.auth is None:
            return True  # refused by authentication, not counted
        connector = request.auth.connector
        self.limit = intake_limit(connector)
        self.retry_after = ratelimit.take(f"intake:{connector.slug}", self.limit)
        return self.retry_after is None

    def wait(self) -> float | None:
        return self.retry_after
