"""Database polling against real SQLite, PostgreSQL and MariaDB: claim, write back, race."""

import html
import json
import threading

import pytest
import sqlalchemy as sa
from django.core.exceptions import ValidationError

from connectors import legacy_db, polling, validation
from connectors.models import Connector, Credential, Job
from connectors.sources.db_poll import DbPollSource
from tests.legacy_databases import create_tasks_table, drop, legacy_url  # noqa: F401
from tests.worker import drain

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def tasks(legacy_url):  # noqa: F811
    table = create_tasks_table(legacy_url, 12)
    yield legacy_url, table
    drop(legacy_url, table)


@pytest.fixture
def poller(tasks, make_connector):
    url, table = tasks
    credential = Credential(name="legacy-db", kind=Credential.Kind.DATABASE)
    credential.set_value(url)
    credential.save()
    return make_connector(
        "tasks",
        inputs=[("body", "text", True), ("title", "title", False)],
        outputs=[("text", "ai_output")],
        prompt="Summarise {{ title }}: {{ text }}",
        source_kind="db_poll",
        source_config={
            "credential": "legacy-db",
            "table": table.name,
            "key_column": "id",
            "status_column": "ai_status",
            "error_column": "ai_error",
        },
        sink_kind="db_update",
        batch_size=5,
        max_attempts=2,
    )


def rows(url: str, table: sa.Table) -> dict[int, tuple]:
    with legacy_db.engine_for(url).connect() as connection:
        result = connection.execute(
            sa.select(table.c.id, table.c.ai_status, table.c.ai_output, table.c.ai_error)
        )
        return {row.id: tuple(row)[1:] for row in result}


def test_pending_tasks_are_answered_and_marked_complete(tasks, poller):
    url, table = tasks

    submitted = [polling.poll(poller) for _ in range(4)]
    drain()

    assert submitted == [5, 5, 2, 0]
    final = rows(url, table)
    assert {status for status, _, _ in final.values()} == {"complete"}
    assert final[3][1] == "Demo answer (no AI was called): Summarise task 3: body 3"
    assert Job.objects.filter(status="succeeded").count() == 12
    job = Job.objects.get(idempotency_key="row:3")
    assert job.source_metadata == {"key": 3}
    assert job.write_outcome["target"] == f"{table.name} id=3"


def test_an_answer_may_not_write_the_columns_the_pipeline_manages(tasks, poller):
    url, table = tasks
    poller.mappings.create(direction="output", source_path="text", target_name="ai_status")

    polling.poll(poller)
    drain()

    status, output, error = rows(url, table)[1]
    assert (status, output) == ("error", None)  # not the AI's text in the status column
    assert "would set ai_status, which the pipeline manages" in error
    assert Job.objects.get(idempotency_key="row:1").status == "dead"


@pytest.mark.parametrize(
    ("outputs", "message"),
    [(set(), "needs output mappings"), ({"ai_output", "id"}, "may not write id")],
)
def test_db_update_output_mappings_are_checked_when_saved(outputs, message):
    source = {"table": "tasks", "key_column": "id", "status_column": "ai_status"}

    with pytest.raises(ValidationError, match=message):
        validation.check_writable_columns("db_update", {}, source, outputs)


def test_database_errors_never_repeat_the_values_they_complain_about(tasks):
    url, table = tasks
    pii = "SSN 219-09-9999"
    try:
        with legacy_db.engine_for(url).begin() as connection:
            connection.execute(table.insert().values(id=pii))  # not an integer (SQLite takes it)
            connection.execute(table.insert().values(id=pii))  # a duplicate key
    except sa.exc.DBAPIError as error:
        raised = error
    described = legacy_db.describe_error(raised)

    assert type(raised.orig).__name__ in described
    assert pii not in described


def test_claimed_rows_are_not_taken_again(tasks, poller):
    url, table = tasks

    polling.poll(poller)

    claimed = [key for key, (status, _, _) in rows(url, table).items() if status == "processing"]
    assert claimed == [1, 2, 3, 4, 5]
    assert polling.poll(poller) == 5
    assert Job.objects.count() == 10


def test_two_pollers_racing_never_take_the_same_row(tasks, poller):
    url, table = tasks
    counts = []

    def race():
        for _ in range(3):
            counts.append(polling.poll(Connector.objects.get(pk=poller.pk)))

    racers = [threading.Thread(target=race) for _ in range(2)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    while polling.poll(poller):
        pass

    assert Job.objects.count() == 12
    assert sorted(Job.objects.values_list("idempotency_key", flat=True)) == sorted(
        f"row:{n}" for n in range(1, 13)
    )
    assert {status for status, _, _ in rows(url, table).values()} == {"processing"}


def test_a_row_that_cannot_be_mapped_gets_the_error_status(tasks, poller):
    url, table = tasks
    with legacy_db.engine_for(url).begin() as connection:
        connection.execute(sa.update(table).where(table.c.id == 2).values(body=None))

    polling.poll(poller)

    status, _, error = rows(url, table)[2]
    assert status == "error"
    assert error == "required field 'body' is missing"
    assert not Job.objects.filter(idempotency_key="row:2").exists()


def test_a_dead_job_marks_its_row_as_error(tasks, poller, settings):
    url, table = tasks
    poller.prompt_template = "{{ text }}"
    poller.output_format = "json"
    poller.output_schema = {"type": "object", "required": ["never"]}
    poller.save()

    polling.poll(poller)
    drain()

    status, output, error = rows(url, table)[1]
    assert (status, output) == ("error", None)
    assert error.startswith("invalid_output: the answer does not match the schema")
    assert Job.objects.filter(status="dead").count() == 5


def test_a_row_set_back_to_pending_is_run_again(tasks, poller):
    url, table = tasks
    polling.poll(poller)
    drain()
    with legacy_db.engine_for(url).begin() as connection:
        connection.execute(sa.update(table).where(table.c.id == 1).values(ai_status="pending"))

    while polling.poll(poller):
        pass
    drain()

    assert rows(url, table)[1][0] == "complete"
    assert Job.objects.filter(source_metadata__key=1).count() == 2


def test_test_connection_checks_the_table_and_columns(tasks, poller):
    source = polling.build_source(poller)
    assert source.test_connection() == (
        f"OK: table {tasks[1].name} found with its columns; 12 rows pending"
    )

    broken = DbPollSource(poller, {**source.config, "status_column": "state"}, source._secrets)
    with pytest.raises(ValueError, match="has no column 'state'"):
        broken.test_connection()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"table": "t"}, "missing credential, key_column, status_column"),
        (
            {
                "credential": "c",
                "table": "t",
                "key_column": "id",
                "status_column": "s",
                "done_value": "pending",
            },
            "must all differ",
        ),
        (
            {"credential": "c", "table": "t", "key_column": "id", "status_column": "s", "x": 1},
            "unknown keys x",
        ),
    ],
)
def test_config_is_validated(config, message):
    with pytest.raises(ValueError, match=message):
        DbPollSource.validate_config(config)


def test_the_admin_refuses_a_table_or_column_that_does_not_exist(admin_client, tasks, poller):
    from django.urls import reverse

    from tests.test_admin import connector_form

    form = connector_form(
        poller.provider,
        slug="tasks-2",
        source_kind="db_poll",
        source_config=json.dumps({**poller.source_config, "status_column": "state"}),
        sink_kind="db_update",
    )
    response = admin_client.post(reverse("admin:connectors_connector_add"), form)

    assert response.status_code == 200
    assert f"table {tasks[1].name!r} has no column 'state'" in html.unescape(
        response.content.decode()
    )
    assert not Connector.objects.filter(slug="tasks-2").exists()


def test_the_admin_tests_source_and_sink_connections(admin_client, tasks, poller):
    from django.urls import reverse

    response = admin_client.post(
        reverse("admin:connectors_connector_changelist"),
        {"action": "test_connections", "_selected_action": [str(poller.pk)]},
        follow=True,
    )

    page = html.unescape(response.content.decode())
    assert (
        f"Tasks source: OK: table {tasks[1].name} found with its columns; 12 rows pending" in page
    )
    assert f"Tasks sink: OK: table {tasks[1].name} found" in page


def test_a_job_lost_with_its_worker_on_the_last_attempt_marks_its_row(tasks, poller):
    from connectors import jobs, lifecycle

    url, table = tasks
    poller.max_attempts = 1
    poller.save()
    polling.poll(poller)
    job = Job.objects.get(idempotency_key="row:1")
    lifecycle.claim([str(job.id)], worker="doomed:1")  # then the worker is SIGKILLed
    Job.objects.filter(id=job.id).update(lease_expires_at="2000-01-01T00:00:00Z")

    jobs.reconcile()

    status, _, error = rows(url, table)[1]
    assert status == "error"
    assert error == "worker_lost: the worker stopped before finishing (lease expired)"
    assert Job.objects.get(id=job.id).status == "dead"


def test_write_back_is_one_transaction_per_batch_and_conditional_per_row(tasks, poller):
    from connectors import pipeline
    from connectors.sinks.base import Delivery

    url, table = tasks
    polling.poll(poller)  # rows 1-5 claimed
    sink = pipeline.build_sink(poller)
    commits = []

    def count_commit(connection):
        commits.append(1)

    sa.event.listen(sink.engine, "commit", count_commit)
    deliveries = [
        Delivery(f"job-{key}", "tasks", "", {"ai_output": f"answer {key}"}, 1, {"key": key})
        for key in (1, 2, 3, 9)  # row 9 was never claimed
    ]
    try:
        written = sink.write_many(deliveries)
    finally:
        sa.event.remove(sink.engine, "commit", count_commit)

    assert [written[f"job-{key}"].status for key in (1, 2, 3)] == ["updated"] * 3
    assert "the row is not claimed (status 'pending')" in str(written["job-9"])
    assert len(commits) == 1
    final = rows(url, table)
    assert final[2][:2] == ("complete", "answer 2")
    assert final[9][0] == "pending"
    again = sink.write_many(deliveries[:1])  # a retry after a crash: already written
    assert again["job-1"].detail == "already written"


def test_with_a_claim_column_only_the_claiming_job_writes_its_row(tasks, poller):
    from connectors import pipeline
    from connectors.sinks.base import Delivery

    url, table = tasks
    poller.source_config = {**poller.source_config, "claim_column": "ai_job"}
    poller.save()
    polling.poll(poller)
    job = Job.objects.get(idempotency_key="row:1")
    with legacy_db.engine_for(url).connect() as connection:
        claimed_by = connection.execute(sa.select(table.c.ai_job).where(table.c.id == 1)).scalar()
    assert claimed_by == str(job.id)

    with legacy_db.engine_for(url).begin() as connection:  # the row was re-claimed by another job
        connection.execute(sa.update(table).where(table.c.id == 2).values(ai_job="another-job"))
    job_2 = Job.objects.get(idempotency_key="row:2")
    sink = pipeline.build_sink(poller)
    written = sink.write_many(
        [Delivery(str(job_2.id), "tasks", "", {"ai_output": "late"}, 1, {"key": 2})]
    )
    assert "the row is claimed by another job" in str(written[str(job_2.id)])
    assert written[str(job_2.id)].permanent

    drain()
    final = rows(url, table)
    assert final[1][0] == "complete"
    assert final[2][0] == "processing"  # left to the job that holds it
