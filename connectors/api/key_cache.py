"""Each process keeps the API keys it has seen (the key row with its connector and provider),
checked against a stamp read in one small query: the key's own mutable columns (revocation,
networks, signing secret, name, last use) and the connector's and provider's `updated_at`. A
revocation or an edit changes the stamp, so it takes effect at once on every process; an
unchanged stamp saves loading and decoding three rows per request.

Most requests read the stamp before anything else (`active_key`). Intake, whose work ends in a
write transaction anyway, reads it inside that transaction instead (`Confirmation`), sent with
the transaction's first statements in one round trip: if the stamp changed meanwhile, the
transaction is rolled back and the request starts over with the key read afresh.
"""

import threading
from collections.abc import Iterable
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Unconfirmed:
    """A key taken from this process's copy without reading its stamp: the request's write
    transaction confirms it."""

    key_hash: str
    stamp: tuple


def cached_key(key_hash: str) -> tuple[ApiKey, Unconfirmed] | None:
    """The process's copy of the key, unchecked, and what its transaction must confirm."""
    cached = _keys.get(key_hash)
    if cached is None:
        return None
    return cached[1], Unconfirmed(key_hash, cached[0])


def forget(key_hash: str) -> None:
    with _lock:
        _keys.pop(key_hash, None)


def touched(key_hash: str, api_key: ApiKey) -> None:
    """The key's last use was written: the copy takes the stamp that holds it (read again, as
    each database writes the time its own way), so that the write does not make the copy look
    out of date. Once a minute per key at most (authentication.touch)."""
    stamp = read_stamp(key_hash)
    with _lock:
        cached = _keys.get(key_hash)
        if stamp is not None and cached is not None and cached[1] is api_key:
            _keys[key_hash] = (stamp, api_key)


def is_current(unconfirmed: Unconfirmed) -> bool:
    return read_stamp(unconfirmed.key_hash) == unconfirmed.stamp


class StaleKey(Exception):
    """A key's stamp changed after this process copied its rows: nothing was stored; the
    request starts over with the key read afresh."""

    def __init__(self, key_hashes: Iterable[str]) -> None:
        self.key_hashes = tuple(key_hashes)
        super().__init__("the API key or its connector changed; reading them again")


class Confirmation:
    """The stamps of the unconfirmed keys of a transaction, asked with its first statements
    (`send`; in a pipeline the answer comes with theirs) and compared before it commits
    (`confirm`, which raises StaleKey). `answered` tells whether the database answered that
    first query: until it has, the transaction cannot have committed, so a failure before
    then may be retried on a new connection."""

    def __init__(self, keys: Iterable[Unconfirmed]) -> None:
        self.keys = list(keys)
        self.answered = False
        self._cursor = None

    def send(self) -> None:
        if self.keys:
            hashes = sorted({key.key_hash for key in self.keys})
            self._cursor = connection.cursor()
            self._cursor.execute(*_stamp_query(hashes))

    def confirm(self) -> None:
        if self._cursor is None:
            return
        try:
            stamps = _by_hash(self._cursor.fetchall())
        finally:
            self._cursor.close()
            self._cursor = None
        self.answered = True
        stale = [key.key_hash for key in self.keys if stamps.get(key.key_hash) != key.stamp]
        if stale:
            for key_hash in stale:
                forget(key_hash)
            raise StaleKey(stale)


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
    with connection.cursor() as cursor:
        cursor.execute(*_stamp_query([key_hash]))
        return _by_hash(cursor.fetchall()).get(key_hash)


def _stamp_query(key_hashes: list[str]) -> tuple[str, list[str]]:
    key, conn, provider = (model._meta.db_table for model in (ApiKey, Connector, Provider))
    quote = connection.ops.quote_name
    places = ", ".join(["%s"] * len(key_hashes))
    # Table and column names are the models' own, quoted; the hashes are parameters.
    sql = (
        f"SELECT k.id, k.revoked_at, k.allowed_networks, k.encrypted_signing_secret, "  # noqa: S608
        f"k.name, k.last_used_at, c.updated_at, p.updated_at, k.key_hash "
        f"FROM {quote(key)} k JOIN {quote(conn)} c ON c.id = k.connector_id "
        f"JOIN {quote(provider)} p ON p.id = c.provider_id WHERE k.key_hash IN ({places})"
    )
    return sql, key_hashes


def _by_hash(rows) -> dict[str, tuple]:
    return {row[-1]: tuple(row[:-1]) for row in rows}
