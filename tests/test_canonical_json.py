"""canonical_json.dumps writes json.dumps's canonical bytes (sorted keys, compact, non-ASCII as
it is), whichever library writes them: every stored event must still verify."""

import datetime
import decimal
import json

import pytest

from connectors import audit, canonical_json
from connectors.models import AuditEvent
from tests.conftest import post_records


def old_canonical(value) -> bytes:
    """The bytes as audit.canonical wrote them before canonical_json (and as
    tools/verify_evidence.py writes them)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def old_content(event) -> dict:
    """What audit.canonical hashed, as it built it before canonical_json."""
    names = ["sequence", "actor_type", "actor", "action", "object_type", "object_id"]
    names += ["object_repr", "connector", "changes", "ip_address", "previous_hash"]
    content = {name: getattr(event, name) for name in names}
    return content | {"created_at": event.created_at.isoformat(timespec="microseconds")}


EVERY_ASCII = "".join(map(chr, range(128)))
TRICKY = [
    {"text": EVERY_ASCII, EVERY_ASCII: "a key of every ASCII character"},
    {"é": "ü ✓ 日本 \u2028\u2029 \ufeff \x7f \x80 \xa0", "emoji": "🙂👍🏽", "z": 1, "a": 2, "É": 3},
    {"nested": {"b": [{"d": [], "c": {}}, [[None]], True, False], "a": {"y": 1, "x": 2}}},
    {"ints": [0, -1, 2**31, 2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1]},
    {"big": 10**30, "negative": -(10**25)},  # beyond 64 bits: json writes them
    {"floats": [0.1, 1.5, -0.0, 100.0, 1e16, 1e-7, 1.5e300, 5e-324, 2.0**60]},
    {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")},
    {"tuple": (1, "two", (3,))},
    {"enum": AuditEvent.ActorType.API_KEY, "int key": {1: "one", 2: "two"}},
    ["a list", "at the top", 1, None],
    'a lone string with "quotes" and \\ and \n\r\t\b\f',
    12345678901234567890,
    None,
    {"sequence": 1, "created_at": "2026-12-03T07:00:00.000000+00:00", "ip_address": None},
]


@pytest.mark.parametrize("value", TRICKY)
def test_writes_the_old_canonical_bytes(value):
    assert canonical_json.dumps(value) == old_canonical(value)


@pytest.mark.parametrize(
    "value",
    [{"when": datetime.date(2026, 12, 3)}, {"price": decimal.Decimal("1.5")}, {"s": "\ud800"}],
)
def test_what_json_refuses_it_refuses_alike(value):
    with pytest.raises((TypeError, UnicodeEncodeError)) as old:
        old_canonical(value)
    with pytest.raises(type(old.value)):
        canonical_json.dumps(value)


def test_only_values_without_floats_go_to_orjson():
    assert canonical_json.is_plain(TRICKY[0], floats=False)
    assert canonical_json.is_plain(TRICKY[4], floats=False)  # orjson refuses, json writes
    assert not canonical_json.is_plain(TRICKY[5], floats=False)
    assert canonical_json.is_plain(TRICKY[5])
    assert not canonical_json.is_plain(TRICKY[6])  # NaN: orjson would write null
    assert not canonical_json.is_plain(TRICKY[7])  # a tuple
    assert not canonical_json.is_plain(TRICKY[8])  # a str enum, an integer key


@pytest.mark.parametrize("value", TRICKY[:10])
def test_a_lineage_digest_is_the_old_one(value):
    old = audit._integral(value)
    assert audit.digest_value(value) == audit.hashlib.sha256(old_canonical(old)).hexdigest()


@pytest.mark.django_db
def test_a_body_s_events_hash_their_old_canonical_bytes_without_json(
    client, make_connector, api_key, monkeypatch
):
    connector = make_connector("invoices")
    records = [{"text": f"record {n} é ✓ 🙂 \u2028"} for n in range(50)]
    response = post_records(client, "invoices", {"records": records}, key=api_key(connector)[1])
    assert response.status_code == 202

    events = list(AuditEvent.objects.order_by("sequence"))
    created = [event for event in events if event.action == "job.created"]
    assert len(created) == 50
    for event in events:
        assert audit.canonical(event) == old_canonical(old_content(event))
        assert event.hash == audit.crypto.audit_mac(old_canonical(old_content(event)))
    assert audit.verify().is_valid

    def no_json(*args, **kwargs):
        raise AssertionError("json.dumps was used")

    monkeypatch.setattr(canonical_json.json, "dumps", no_json)
    assert [audit.compute_hash(event) for event in created] == [e.hash for e in created]
