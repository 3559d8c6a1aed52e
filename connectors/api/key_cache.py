"""Each process keeps the API keys it has seen (the key row with its connector and provider),
checked on every request against a stamp read in one small query: the key's own mutable columns
(revocation, networks, signing secret, name, last use) and the connector's and provider's
`updated_at`. A revocation or an edit changes the stamp, so it takes effect at once on every
process; an unchanged stamp saves loading and decoding three rows per request.
"""

import threading

from django.db import InterfaceError, OperationalError, connection

from connectors.models import ApiKey, Connector, Provider

_lock = threading.Lock()
_keys: dict[str, tuple[tuple, ApiKey]] = {}  # key hash: (stamp, key row)
MAX_KEYS = 10_000  # past this many (keys come and go), start again


def active_key(key_hash: str) -> ApiKey | None:
    """The unrevoked key with this hash, with its connector and provider; None if none."""
    stamp = read_stamp(key_hash)
    if stamp is None or stamp[1] is not None:  # unknown, or revoked
        return None
    cached = _keys.get(key_hash)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    api_key = (
        ApiKey.objects.select_related("connector__provider")
        .filter(key_hash=key_hash, revoked_at__isnull=True)
        .first()
    )
    if api_key is not None:
        with _lock:
            if len(_keys) >= MAX_KEYS:
                _keys.clear()
            # Stamped as read before the rows: a change in between only costs a reload.
            _keys[key_hash] = (stamp, api_key)
    return api_key


def read_stamp(key_hash: str) -> tuple | None:
    """The stamp, read by the request's first query. That query is also the check of a reused
    connection that Django would otherwise make first, a round trip of its own
    (CONN_HEALTH_CHECKS): if the connection went away meanwhile (the database restarted), it
    is closed and the query asked again, once, on a new one."""
    if connection.connection is None or connection.in_atomic_block:
        return _read_stamp(key_hash)
    connection.health_check_done = True
    try:
        return _read_stamp(key_hash)
    except (OperationalError, InterfaceError):
        if connection.in_atomic_block or connection.is_usable():
            raise
        connection.close()
    return _read_stamp(key_hash)


def _read_stamp(key_hash: str) -> tuple | None:
    key, conn, provider = (model._meta.db_table for model in (ApiKey, Connector, Provider))
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        # Table and column names are the models' own, quoted; the hash is a parameter.
        cursor.execute(
            f"SELECT k.id, k.revoked_at, k.allowed_networks, k.encrypted_signing_secret, "  # noqa: S608
            f"k.name, k.last_used_at, c.updated_at, p.updated_at "
            f"FROM {quote(key)} k JOIN {quote(conn)} c ON c.id = k.connector_id "
            f"JOIN {quote(provider)} p ON p.id = c.provider_id WHERE k.key_hash = %s",
            [key_hash],
        )
        row = cursor.fetchone()
    return None if row is None else tuple(row)
