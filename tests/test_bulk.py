"""bulk.insert stores what bulk_create would; a 1,000-record body's events still chain."""

import uuid

import pytest

from connectors import audit, bulk
from connectors.models import AuditEvent, Job
from tests.conftest import post_records

pytestmark = pytest.mark.django_db


@pytest.fixture
def connector(make_connector):
    return make_connector("invoices")


def job(connector, key: str, **fields) -> Job:
    return Job(
        id=uuid.uuid4(),
        connector=connector,
        idempotency_key=key,
        input_data={"text": "é ✓", "n": [1, 2.5, None]},
        redaction_hits={"email": 1},
        prompt="Classify: x",
        **fields,
    )


@pytest.mark.parametrize("count", [1, 3])  # one row: one INSERT; more: COPY on PostgreSQL
def test_a_row_inserted_in_bulk_reads_back_as_bulk_create_stores_it(connector, count):
    ours, theirs = job(connector, "ours"), job(connector, "theirs")
    bulk.insert([ours, *(job(connector, f"more {n}") for n in range(count - 1))])
    Job.objects.bulk_create([theirs])

    fields = [
        f.attname
        for f in Job._meta.concrete_fields
        if f.attname not in ("id", "idempotency_key", "created_at")
    ]
    stored = {j.idempotency_key: j for j in Job.objects.all()}
    assert {f: getattr(stored["ours"], f) for f in fields} == {
        f: getattr(stored["theirs"], f) for f in fields
    }
    assert stored["ours"].created_at == ours.created_at


def test_columns_made_once_per_connection_store_each_insert_s_own_values(connector):
    first = audit.Actor("system", "a", "10.0.0.1")
    second = audit.Actor("system", "b", "10.0.0.2")
    audit.record("one", first)
    audit.record_many([audit.entry_for("two", second), audit.entry_for("three", first)])

    stored = list(AuditEvent.objects.order_by("sequence").values_list("action", "ip_address"))
    assert stored[-3:] == [("one", "10.0.0.1"), ("two", "10.0.0.2"), ("three", "10.0.0.1")]
    assert audit.verify().is_valid


def test_conflicting_rows_are_skipped_when_asked(connector):
    bulk.insert([job(connector, "same")])
    bulk.insert([job(connector, "same"), job(connector, "other")], ignore_conflicts=True)

    assert sorted(Job.objects.values_list("idempotency_key", flat=True)) == ["other", "same"]


def test_the_events_of_a_1000_record_body_chain_and_verify(client, connector, api_key):
    key = api_key(connector)[1]
    body = {"records": [{"text": f"record {n}"} for n in range(1000)]}

    assert post_records(client, "invoices", body, key=key).status_code == 202

    assert AuditEvent.objects.filter(action="job.created").count() == 1000
    sequences = list(AuditEvent.objects.order_by("sequence").values_list("sequence", flat=True))
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    assert audit.verify().is_valid
    AuditEvent.objects.filter(sequence=sequences[500]).update(changes={"tampered": True})
    assert not audit.verify().is_valid


def test_built_instances_are_what_the_model_makes_each_with_its_own_defaults(connector):
    rows = [{"idempotency_key": "a", "prompt": "p"}, {"idempotency_key": "b", "prompt": "q"}]
    built = bulk.build(Job, {"connector": connector, "provider_name": "x"}, rows)
    made = [Job(connector=connector, provider_name="x", **row) for row in rows]

    fresh = ("id", "created_at")  # callable defaults: called for each instance
    for ours, theirs in zip(built, made, strict=True):
        assert {f.attname: getattr(ours, f.attname) for f in Job._meta.concrete_fields} | {
            name: None for name in fresh
        } == {f.attname: getattr(theirs, f.attname) for f in Job._meta.concrete_fields} | {
            name: None for name in fresh
        }
        assert ours.connector is connector and ours._state.adding
    assert built[0].id != built[1].id
    assert built[0].source_metadata is not built[1].source_metadata  # default=dict, each its own
    bulk.insert(built)
    assert sorted(Job.objects.values_list("idempotency_key", "prompt")) == [("a", "p"), ("b", "q")]


def test_a_row_naming_no_column_is_refused(connector):
    with pytest.raises(TypeError, match="connector"):
        bulk.build(Job, {}, [{"connector": connector}])
