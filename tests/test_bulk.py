"""bulk.insert stores what bulk_create would; a 1,000-record body's events still chain."""

import json
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


def comparable(value):
    """A value as stored, comparable: psycopg's Jsonb wrapper compares by identity."""
    return ("jsonb", json.dumps(value.obj)) if type(value).__name__ == "Jsonb" else value


def test_a_column_taken_whole_is_what_each_value_s_conversion_gives(connector):
    """bulk.column's one check per column against column_adapter's call per value, for columns
    taken as they are, columns with a value to convert, and columns always converted."""
    from django.db import connection
    from django.utils import timezone

    same = [job(connector, f"k{n}", attempts=n, cost="1.50") for n in range(3)]
    mixed = [*same, job(connector, "k3", attempts="7", tokens_in=True, cost=None)]
    mixed[0].created_at = timezone.now()
    mixed[1].id = str(uuid.uuid4())  # a text id: converted on PostgreSQL, as bulk_create does
    mixed[2].connector_id = str(connector.pk)
    for objects in (same, mixed):
        for copies in (False, True):
            for field in Job._meta.local_concrete_fields:
                adapt = bulk.column_adapter(field, connection, copies=copies)
                expected = [comparable(adapt(obj)) for obj in objects]
                taken = bulk.column(field, connection, copies=copies)(objects)
                assert [comparable(value) for value in taken] == expected, field
    assert bulk.column(Job._meta.get_field("attempts"), connection)(mixed)[3] == 7
    assert bulk.stored_as_is(Job._meta.get_field("attempts"), connection) is int
    assert bulk.stored_as_is(Job._meta.get_field("cost"), connection) is None


@pytest.mark.parametrize(
    "value",
    [
        {"text": 'é ✓ 🙂 \u2028 \x00 \x1f "q" \\', "n": [1, 2.5, -0.0, 1e16, 1e-7, None, True]},
        {"nested": {"b": [{"d": []}], "a": {}}, "big": 10**30},  # beyond 64 bits: json writes it
        {"tuple": (1, 2), 1: "an integer key"},  # not plain: json writes it
        [],
        "text",
    ],
)
def test_a_json_column_s_text_is_the_value_json_writes(value):
    field = Job._meta.get_field("input_data")
    adapt = bulk.json_text(field, converted=lambda obj: pytest.fail("None only"))

    assert json.loads(adapt(Job(input_data=value))) == json.loads(json.dumps(value))


@pytest.mark.django_db(transaction=True)  # the on-commit enqueue runs, and lets go of the jobs
def test_a_body_s_jobs_leave_with_the_request_not_with_a_full_collection(
    client, connector, api_key
):
    """No cycle keeps the jobs (DRF's `.data` list points back at its serializer): a body's
    objects would wait for a full collection, which costs ~80 ms in a loaded process."""
    import gc

    key = api_key(connector)[1]
    body = {"records": [{"text": f"record {n}"} for n in range(200)]}
    gc.collect()
    gc.disable()
    try:
        response = post_records(client, "invoices", body, key=key)
        alive = [obj for obj in gc.get_objects() if isinstance(obj, Job)]
    finally:
        gc.enable()
    assert response.status_code == 202 and len(response.json()["jobs"]) == 200
    ids = {job["id"] for job in response.json()["jobs"]}
    # Only this body's: an earlier test's stray reference is not what is held here.
    assert [job for job in alive if str(job.id) in ids] == []


def test_the_web_process_collects_young_objects_every_50000():
    import gc
    import importlib

    before = gc.get_threshold()
    try:
        wsgi = importlib.import_module("console.wsgi")
        importlib.reload(wsgi)
        assert gc.get_threshold() == (50_000, *before[1:])
    finally:
        gc.set_threshold(*before)
