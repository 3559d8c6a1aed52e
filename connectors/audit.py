"""The tamper-evident audit trail: record(...) appends, verify() proves nothing was changed.

Two chains run through the same events. `hash` is an HMAC (key from the environment, not the
database) over the event's content and the previous event's hash: whoever can write the table
cannot recompute it, but only a key holder can check it. `public_hash` is a plain SHA-256 chain
over the same content that anyone can recompute; whoever can write the table could recompute it
too, which is why the signed checkpoints (checkpoints.py) anchor it, and copies of those live
outside Interlock. Cutting off the newest events is caught by comparing with a checkpoint.
Called explicitly from the code paths that change things, never from model signals.
"""

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from connectors import bulk, canonical_json, crypto
from connectors.models import AuditChainHead, AuditEvent

GENESIS_HASH = "0" * 64
SECRET_MARK = "••••••"


@dataclass(frozen=True)
class Actor:
    type: str
    name: str
    ip_address: str | None = None

    @classmethod
    def system(cls, name: str = "system") -> "Actor":
        return cls(AuditEvent.ActorType.SYSTEM, name)

    @classmethod
    def user(cls, user, ip_address: str | None = None) -> "Actor":
        return cls(AuditEvent.ActorType.USER, user.get_username(), ip_address)

    @classmethod
    def api_key(cls, api_key, ip_address: str | None = None) -> "Actor":
        return cls(AuditEvent.ActorType.API_KEY, f"{api_key.prefix}…", ip_address)


@dataclass
class Entry:
    """One event to append."""

    action: str
    actor: Actor
    object_type: str = ""
    object_id: str = ""
    object_repr: str = ""
    connector: str = ""
    changes: dict[str, Any] = field(default_factory=dict)


def entry_for(action: str, actor: Actor, obj=None, *, connector: str = "", changes=None) -> Entry:
    object_type = obj._meta.model_name if obj is not None else ""
    return Entry(
        action=action,
        actor=actor,
        object_type=object_type,
        object_id=str(obj.pk) if obj is not None else "",
        object_repr=str(obj)[:300] if obj is not None else "",
        connector=connector,
        changes=changes or {},
    )


def record(action: str, actor: Actor, obj=None, *, connector: str = "", changes=None) -> None:
    record_many([entry_for(action, actor, obj, connector=connector, changes=changes)])


def record_many(entries: Iterable[Entry]) -> None:
    """Append events in one transaction, holding the chain head's lock.

    Inside a caller's transaction no savepoint is taken: an action whose event cannot be
    appended must not commit without it, so a failure here fails the caller's transaction.
    The events are built before the lock; under it only their chaining, one INSERT and the
    head's UPDATE (the lock is held to the commit: every step in it delays the next writer)."""
    entries = list(entries)
    if not entries:
        return
    events = bulk.build(
        AuditEvent,
        {"created_at": timezone.now()},
        (
            {
                "actor_type": entry.actor.type,
                "actor": entry.actor.name[:200],
                "action": entry.action,
                "object_type": entry.object_type,
                "object_id": entry.object_id,
                "object_repr": entry.object_repr,
                "connector": entry.connector,
                "changes": _json_safe(entry.changes),
                "ip_address": entry.actor.ip_address,
            }
            for entry in entries
        ),
    )
    with transaction.atomic(savepoint=False):
        head = locked_head()
        now = timezone.now()  # under the lock: times rise with the sequence
        for event in events:
            event.created_at = now
            event.sequence, event.previous_hash = head.sequence + 1, head.hash
            message = canonical(event)
            event.hash = crypto.audit_mac(message)
            event.public_hash = public_link(head.public_hash, event.sequence, message)
            head.sequence, head.hash, head.public_hash = (
                event.sequence,
                event.hash,
                event.public_hash,
            )
        bulk.insert(events)
        save_head(head)


def locked_head() -> AuditChainHead:
    """The chain head, locked (to the end of the transaction); created on first use (a data
    migration creates it too). One plain statement: the ORM's query building per append cost
    more than the query."""
    row = _read_head()
    if row is None:
        AuditChainHead.objects.bulk_create([AuditChainHead(pk=1)], ignore_conflicts=True)
        row = _read_head()
    head = AuditChainHead(pk=1, sequence=row[0], hash=row[1], public_hash=row[2])
    head._state.adding = False
    return head


def _read_head() -> tuple | None:
    quote = connection.ops.quote_name
    lock = connection.ops.for_update_sql() if connection.features.has_select_for_update else ""
    with connection.cursor() as cursor:
        # Names are the model's own, quoted.
        cursor.execute(
            f"SELECT {quote('sequence')}, {quote('hash')}, {quote('public_hash')} "  # noqa: S608
            f"FROM {quote(AuditChainHead._meta.db_table)} WHERE {quote('id')} = 1 {lock}"
        )
        return cursor.fetchone()


def save_head(head: AuditChainHead) -> None:
    """What head.save(update_fields=["sequence", "hash", "public_hash"]) writes."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(AuditChainHead._meta.db_table)} SET {quote('sequence')} = %s, "  # noqa: S608
            f"{quote('hash')} = %s, {quote('public_hash')} = %s WHERE {quote('id')} = 1",
            [head.sequence, head.hash, head.public_hash],
        )


def compute_hash(event: AuditEvent) -> str:
    return crypto.audit_mac(canonical(event))


def canonical(event) -> bytes:
    """The bytes both chains hash: the event's content and the previous keyed hash, as compact
    JSON with sorted keys (tools/verify_evidence.py builds the same bytes; never change them)."""
    content = {
        "sequence": event.sequence,
        "created_at": event.created_at.isoformat(timespec="microseconds"),
        "actor_type": str(event.actor_type),  # an ActorType writes as its text, plain or not
        "actor": event.actor,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "object_repr": event.object_repr,
        "connector": event.connector,
        "changes": event.changes,
        "ip_address": event.ip_address,
        "previous_hash": event.previous_hash,
    }
    return canonical_json.dumps(content)


def content_digest(message: bytes) -> str:
    return hashlib.sha256(message).hexdigest()


def public_link(previous_public_hash: str, sequence: int, message: bytes) -> str:
    """The public chain's next hash: SHA-256 of the previous one, the sequence and the content's
    digest. Built on the digest so a bundle can carry a neighbour's digest without its content."""
    return link_digest(previous_public_hash, sequence, content_digest(message))


def link_digest(previous_public_hash: str, sequence: int, digest: str) -> str:
    return hashlib.sha256(f"{previous_public_hash}:{sequence}:{digest}".encode()).hexdigest()


def digest_value(value: Any) -> str:
    """SHA-256 of a JSON value in canonical form: pins a lineage field in an event's changes.
    A float with no fraction hashes as the integer: PostgreSQL's jsonb gives 1e16 back as one."""
    if not canonical_json.is_plain(value, floats=False):
        value = _integral(value)
    return hashlib.sha256(canonical_json.dumps(value)).hexdigest()


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_integral(item) for item in value]
    return value


def backfill_public_chain(event_model, head_model, chunk: int = 2000) -> None:
    """Compute the public chain over events written before it existed (migration 0010)."""
    previous, last = GENESIS_HASH, 0
    while batch := list(event_model.objects.filter(sequence__gt=last).order_by("sequence")[:chunk]):
        for event in batch:
            event.public_hash = previous = public_link(previous, event.sequence, canonical(event))
        event_model.objects.bulk_update(batch, ["public_hash"])
        last = batch[-1].sequence
    head_model.objects.filter(pk=1, sequence=last).update(public_hash=previous)


def _json_safe(value: Any) -> Any:
    """Round-trip through JSON so the stored value hashes the same after it is read back (a
    value JSON gives back equal, as most events' changes are, is kept as it is)."""
    if canonical_json.is_plain(value):
        return value
    return json.loads(json.dumps(value, default=str))


def diff(before: dict[str, Any], after: dict[str, Any], secret_fields: Iterable[str] = ()):
    """Field-level changes {field: [old, new]}, secret fields shown only as changed."""
    secret_fields = set(secret_fields)
    changes = {}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        changes[name] = [SECRET_MARK, SECRET_MARK] if name in secret_fields else [old, new]
    return _json_safe(changes)


@dataclass(frozen=True)
class Verification:
    is_valid: bool
    checked: int
    head_sequence: int
    broken_sequence: int | None = None
    reason: str = ""
    head_hash: str = ""


def _head() -> tuple[int, str, str]:
    head = AuditChainHead.objects.filter(pk=1).first()
    return (head.sequence, head.hash, head.public_hash) if head else (0, GENESIS_HASH, GENESIS_HASH)


def verify(
    checkpoint: dict | None = None,
    progress=None,
    every: int = 100_000,
    start: tuple[int, str] | None = None,
) -> Verification:
    """Walk the chain in order up to its head; name the first event that breaks it.

    The head is read before the events it covers, so events appended meanwhile are not taken
    for tampering; an event beyond a head that no longer moves was not written by Interlock.
    `start` (sequence, hash) resumes from a head verified before. `progress(checked)` is called
    every `every` events (a long chain takes minutes). The public chain is checked beside the
    keyed one (from a `start`, from the public hash stored at that event)."""
    expected_sequence, expected_previous = (start[0] + 1, start[1]) if start else (1, GENESIS_HASH)
    expected_public = _public_hash_at(start[0]) if start else GENESIS_HASH
    checked, hashes_at_checkpoint = 0, None
    while True:
        head_sequence, head_hash, head_public = _head()
        events = AuditEvent.objects.filter(
            sequence__gte=expected_sequence, sequence__lte=head_sequence
        ).order_by("sequence")
        for event in events.iterator(chunk_size=2000):
            if problem := _event_problem(
                event, expected_sequence, expected_previous, expected_public
            ):
                return _broken(checked, *problem)
            if checkpoint and event.sequence == checkpoint["sequence"]:
                hashes_at_checkpoint = (event.hash, event.public_hash)
            expected_previous, expected_sequence = event.hash, event.sequence + 1
            expected_public = event.public_hash
            checked += 1
            if progress and checked % every == 0:
                progress(checked)
        last = expected_sequence - 1
        if (last, expected_previous) != (head_sequence, head_hash):
            return _broken(
                checked,
                last + 1,
                f"the chain ends at #{last} but the head says #{head_sequence}: newest events "
                "were removed or the head was edited",
            )
        if expected_public is not None and expected_public != head_public:
            return _broken(checked, last, "the head's public hash does not match the chain")
        beyond = AuditEvent.objects.filter(sequence__gt=head_sequence).order_by("sequence")
        first_beyond = beyond.values_list("sequence", flat=True).first()
        if first_beyond is None:
            break
        if _head()[0] == head_sequence:
            return _broken(
                checked, first_beyond, "it lies beyond the chain head: not written by Interlock"
            )
    if checkpoint:
        if last < checkpoint["sequence"]:
            return _broken(
                checked,
                last + 1,
                f"the checkpoint names event #{checkpoint['sequence']} but the chain ends at "
                f"#{last}: newest events were removed",
            )
        if (
            start is None
            and checkpoint["sequence"]
            and (
                hashes_at_checkpoint is None
                or hashes_at_checkpoint[0] != checkpoint["hash"]
                or hashes_at_checkpoint[1] != checkpoint.get("public_hash", hashes_at_checkpoint[1])
            )
        ):
            return _broken(
                checked, checkpoint["sequence"], "its hash differs from the exported checkpoint"
            )
    return Verification(True, checked, last, head_hash=expected_previous)


def _public_hash_at(sequence: int) -> str | None:
    """The stored public hash of an event (None: not found, so the public chain is not checked
    from there; the scheduler's full verification checks it)."""
    if sequence == 0:
        return GENESIS_HASH
    return (
        AuditEvent.objects.filter(sequence=sequence).values_list("public_hash", flat=True).first()
    )


def _event_problem(
    event: AuditEvent, sequence: int, previous: str, previous_public: str | None
) -> tuple[int, str] | None:
    if event.sequence != sequence:
        problem = "missing" if event.sequence > sequence else "duplicated"
        return sequence, f"event #{sequence} is {problem}"
    if event.previous_hash != previous:
        return event.sequence, "its previous hash does not match the chain"
    message = canonical(event)
    if event.hash != crypto.audit_mac(message):
        return event.sequence, "its content does not match its hash"
    if previous_public is not None and event.public_hash != public_link(
        previous_public, event.sequence, message
    ):
        return event.sequence, "its public hash does not match the chain"
    return None


def _broken(checked: int, sequence: int, reason: str) -> Verification:
    return Verification(False, checked, checked, sequence, reason)


def current_checkpoint() -> dict:
    head = AuditChainHead.objects.filter(pk=1).first() or AuditChainHead()
    return {
        "sequence": head.sequence,
        "hash": head.hash,
        "public_hash": head.public_hash,
        "at": timezone.now().isoformat(),
    }
