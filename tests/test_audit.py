"""The audit chain: every change leaves an event, and any edit of the trail is caught."""

import datetime
import enum
import io
import itertools
import json

import pytest
from django.core.management import CommandError, call_command

from connectors import audit, canonical_json, chain_status
from connectors.models import AuditChainHead, AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def chain():
    actor = audit.Actor.system("test")
    for number in range(1, 6):
        audit.record("test.event", actor, changes={"n": number})
    return list(AuditEvent.objects.order_by("sequence"))


def verify() -> str:
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    return out.getvalue()


def broken_at(**options) -> str:
    with pytest.raises(CommandError) as caught:
        call_command("verify_audit", stdout=io.StringIO(), **options)
    return str(caught.value)


def test_intact_chain_verifies(chain):
    assert verify() == "Audit chain intact: 5 events, head #5.\n"


def test_a_long_verification_reports_its_progress(chain):
    seen = []

    result = audit.verify(progress=seen.append, every=2)

    assert result.is_valid and seen == [2, 4]
    err = io.StringIO()
    call_command("verify_audit", stdout=io.StringIO(), stderr=err)
    assert err.getvalue().startswith("Verifying 5 audit events")


def test_events_are_linked_by_their_hashes(chain):
    assert chain[0].previous_hash == audit.GENESIS_HASH
    for previous, event in itertools.pairwise(chain):
        assert event.previous_hash == previous.hash
    assert (AuditChainHead.objects.get().sequence, AuditChainHead.objects.get().hash) == (
        5,
        chain[-1].hash,
    )


def test_catches_an_edited_row(chain):
    AuditEvent.objects.filter(sequence=3).update(changes={"n": 99})

    assert "event #3: its content does not match its hash" in broken_at()


def test_catches_a_deleted_row(chain):
    AuditEvent.objects.filter(sequence=2).delete()

    assert "event #2: event #2 is missing" in broken_at()


def test_catches_an_inserted_row(chain):
    for event in reversed(chain[3:]):  # make room at #4, newest first (sequence is unique)
        AuditEvent.objects.filter(pk=event.pk).update(sequence=event.sequence + 1)
    AuditEvent.objects.create(
        sequence=4,
        created_at=chain[2].created_at,
        actor_type="system",
        actor="intruder",
        action="test.event",
        changes={"n": "forged"},
        previous_hash=chain[2].hash,
        hash="f" * 64,  # without the key, the intruder cannot compute the real HMAC
    )

    assert "event #4: its content does not match its hash" in broken_at()


def test_catches_a_row_rehashed_without_the_key(chain):
    import hashlib

    event = chain[1]
    event.changes = {"n": "rewritten"}
    fake = hashlib.sha256(json.dumps(event.changes).encode()).hexdigest()
    AuditEvent.objects.filter(pk=event.pk).update(changes=event.changes, hash=fake)

    assert "event #2" in broken_at()


def test_catches_reordered_rows(chain):
    AuditEvent.objects.filter(sequence=2).update(sequence=100)
    AuditEvent.objects.filter(sequence=3).update(sequence=2)
    AuditEvent.objects.filter(sequence=100).update(sequence=3)

    assert "event #2" in broken_at()


def test_catches_newest_rows_cut_off_with_the_head_rewound(chain, tmp_path):
    checkpoint = tmp_path / "checkpoint.json"
    call_command("audit_checkpoint", str(checkpoint), stdout=io.StringIO())
    assert json.loads(checkpoint.read_text())["sequence"] == 5
    # Whoever cuts off the tail and rewinds the head leaves a valid-looking chain...
    AuditEvent.objects.filter(sequence__gte=4).delete()
    AuditChainHead.objects.update(sequence=3, hash=chain[2].hash, public_hash=chain[2].public_hash)
    assert verify().startswith("Audit chain intact: 3 events")

    # ...which the checkpoint exported earlier exposes.
    assert "newest events were removed" in broken_at(checkpoint=str(checkpoint))


def test_cut_off_tail_is_caught_by_the_head_alone(chain):
    AuditEvent.objects.filter(sequence=5).delete()

    assert "newest events were removed or the head was edited" in broken_at()


def test_checkpoint_of_an_intact_chain_verifies(chain, tmp_path):
    checkpoint = tmp_path / "checkpoint.json"
    call_command("audit_checkpoint", str(checkpoint), stdout=io.StringIO())
    audit.record("later.event", audit.Actor.system())

    out = io.StringIO()
    call_command("verify_audit", checkpoint=str(checkpoint), stdout=out)
    assert out.getvalue() == "Audit chain intact: 6 events, head #6.\n"


def test_diff_masks_secret_fields():
    changes = audit.diff(
        {"name": "a", "value": "old-secret"},
        {"name": "b", "value": "new-secret"},
        secret_fields=["value"],
    )

    assert changes == {"name": ["a", "b"], "value": [audit.SECRET_MARK, audit.SECRET_MARK]}


def test_an_event_beyond_the_head_was_not_written_by_interlock(chain):
    last = chain[-1]
    AuditEvent.objects.create(
        sequence=last.sequence + 1,
        action="forged",
        actor_type=last.actor_type,
        actor="x",
        previous_hash=last.hash,
        hash="0" * 64,
        created_at=last.created_at,
    )

    assert "event #6: it lies beyond the chain head" in broken_at()


def test_the_audit_page_checks_only_what_came_after_the_scheduler_verified(chain, settings):
    settings.AUDIT_PAGE_VERIFY_LIMIT = 3
    assert chain_status.current() == (None, "")  # too long for the page, never verified

    chain_status.verify_and_store()
    audit.record("test.event", audit.Actor.system("test"), changes={"n": 6})
    status, verified_at = chain_status.current()
    assert (status.is_valid, status.checked, status.head_sequence) == (True, 6, 6)
    assert verified_at

    AuditEvent.objects.filter(sequence=6).update(changes={"n": 66})
    status, _ = chain_status.current()
    assert (status.is_valid, status.broken_sequence) == (False, 6)


def test_a_broken_chain_found_by_the_scheduler_stays_on_the_page(chain, settings):
    settings.AUDIT_PAGE_VERIFY_LIMIT = 3
    AuditEvent.objects.filter(sequence=2).update(changes={"n": 22})

    chain_status.verify_and_store()
    AuditEvent.objects.filter(sequence=2).update(changes={"n": 2})  # put back: still reported

    status, _ = chain_status.current()
    assert (status.is_valid, status.broken_sequence) == (False, 2)


TRICKY_CHANGES = [
    {"digests": {"prompt": "ab" * 32}, "source_reference": "webhook msg_1"},
    {"text": 'é ✓ 日本 \u2028 \\ " \n\t\x01', "emoji": "🙂", "lone": "\ud800"},
    {"n": [1, -0.0, 2.5, 1e16, 1e-7, 10**30, True, False, None], "deep": {"a": [{"b": [[]]}]}},
    {"float": float("nan")},  # JSON reads back another NaN
    {"float": float("inf")},
    {"tuple": (1, 2)},  # reads back as a list
    {1: "an integer key"},  # reads back as "1"
    {"status": AuditEvent.ActorType.SYSTEM},  # a str enum reads back as plain text
    {"when": datetime.date(2026, 12, 3)},  # default=str
    {"flag": enum.IntEnum("E", "A").A},
]


def shape(value):
    """The value with the type of everything in it, so an equal list and tuple differ."""
    if isinstance(value, dict):
        return ("dict", [(shape(key), shape(item)) for key, item in value.items()])
    if isinstance(value, list | tuple):
        return (type(value).__name__, [shape(item) for item in value])
    return (type(value).__name__, repr(value))


@pytest.mark.parametrize("changes", TRICKY_CHANGES)
def test_changes_kept_as_they_are_are_what_the_json_round_trip_gives(changes):
    round_trip = json.loads(json.dumps(changes, default=str))

    assert shape(audit._json_safe(changes)) == shape(round_trip)
    if canonical_json.is_plain(changes):
        assert audit._json_safe(changes) is changes


def test_only_changes_json_gives_back_alike_are_kept_as_they_are():
    kept = [canonical_json.is_plain(changes) for changes in TRICKY_CHANGES]
    assert kept == [True] * 3 + [False] * 7
