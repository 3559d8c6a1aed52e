"""What the scheduler does for held answers: deadline actions, overdue alerts, batched notices
that never quote a record, and the queue's figures on the dashboard and in /metrics."""

from datetime import timedelta

import pytest
import sqlalchemy as sa
from django.core import mail
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from connectors import legacy_db, polling, review, review_schedule
from connectors.models import AuditEvent, Credential, Job, Review
from tests.conftest import CANARY_SSN
from tests.legacy_databases import create_tasks_table
from tests.test_review import ALICE, BOB, settle

pytestmark = pytest.mark.django_db(transaction=True)


def past_deadline(job) -> None:
    Review.objects.filter(job=job).update(deadline=timezone.now() - timedelta(minutes=1))


@pytest.mark.parametrize(("action", "status"), [("reject", "rejected"), ("approve", "queued")])
def test_the_scheduler_applies_the_deadline_action(make_held, review_connector, action, status):
    review_connector.review_deadline_action = action
    review_connector.save()
    due, not_yet = make_held(), make_held()
    past_deadline(due)

    call_command("run_scheduler", once=True)

    assert Job.objects.get(id=due.id).status == status
    assert Job.objects.get(id=not_yet.id).status == "awaiting_review"
    event = AuditEvent.objects.get(
        action=f"review.{action}d" if action == "approve" else "review.rejected"
    )
    assert event.actor == "scheduler" and event.changes["via"] == "deadline"
    assert event.changes["reason"] == "the review deadline (72 h) passed"


def test_past_the_deadline_with_alert_the_job_waits_and_on_call_hears_once(
    make_held, settings, callback_server
):
    settings.ALERT_EMAILS = ["oncall@example.com"]
    settings.ALERT_WEBHOOK_URL = callback_server.url
    job = make_held()
    past_deadline(job)
    Review.objects.update(notified_at=timezone.now())  # only the overdue alert is under test

    first = review_schedule.apply_deadlines()
    second = review_schedule.apply_deadlines()

    assert (first["alerted"], second["alerted"]) == (1, 0)
    assert Job.objects.get().status == "awaiting_review"
    [message] = mail.outbox
    assert (
        message.subject
        == "Interlock: 1 held answer(s) of connector invoices are past their deadline"
    )
    [(_, _, payload)] = callback_server.received
    assert payload["event"] == "review.overdue" and payload["count"] == 1
    for text in (message.body, str(payload)):
        assert "Invoice 12345" not in text and "SSN" not in text and CANARY_SSN not in text


def test_new_held_answers_are_announced_in_one_message_per_connector(
    make_held, make_connector, settings, callback_server
):
    settings.ALERT_EMAILS = ["reviewers@example.com"]
    settings.ALERT_WEBHOOK_URL = callback_server.url
    for _ in range(3):
        make_held()
    make_held(make_connector("claims", review_policy="always"))

    assert review_schedule.notify_reviewers() == 2
    assert review_schedule.notify_reviewers() == 0  # nothing new since

    subjects = sorted(message.subject for message in mail.outbox)
    assert subjects == [
        "Interlock: 1 answer(s) of connector claims wait for review",
        "Interlock: 3 answer(s) of connector invoices wait for review",
    ]
    assert "/admin/connectors/review/?connector__id__exact=" in mail.outbox[0].body
    assert sorted(p["count"] for _, _, p in callback_server.received) == [1, 3]
    everything = " ".join(m.body for m in mail.outbox) + str(callback_server.received)
    assert "Invoice 12345" not in everything and "<SSN_1>" not in everything
    make_held()
    assert review_schedule.notify_reviewers() == 1


def test_a_notice_no_channel_took_is_tried_again(make_held, settings):
    settings.ALERT_WEBHOOK_URL = "http://127.0.0.1:1/nothing-listens"
    make_held()

    assert review_schedule.notify_reviewers() == 0
    assert Review.objects.get().notified_at is None


def test_the_queue_shows_on_the_dashboard_and_in_metrics(admin_client, make_held, settings):
    settings.METRICS_TOKEN = "metrics-token-123456"
    make_held(held_at=timezone.now() - timedelta(hours=2))
    overdue = make_held(held_at=timezone.now() - timedelta(hours=5))
    past_deadline(overdue)

    page = admin_client.get(reverse("admin:index")).content.decode()
    metrics = admin_client.get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-token-123456")

    assert "Review queue:" in page and "2 waiting</a>, the oldest for 5 h 0 min" in page
    assert "1 past the deadline" in page
    text = metrics.content.decode()
    assert 'interlock_reviews_waiting{connector="invoices"} 2.0' in text
    assert 'interlock_reviews_overdue{connector="invoices"} 1.0' in text
    [age] = [line for line in text.splitlines() if line.startswith("interlock_review_oldest")]
    assert 5 * 3600 <= float(age.split()[-1]) < 5 * 3600 + 60


def test_held_rows_of_a_legacy_table_are_written_back_or_told_of_their_rejection(
    make_connector, tmp_path
):
    url = f"sqlite:///{tmp_path / 'legacy.sqlite3'}"
    table = create_tasks_table(url, 3)
    credential = Credential(name="legacy-db", kind=Credential.Kind.DATABASE)
    credential.set_value(url)
    credential.save()
    connector = make_connector(
        "tasks",
        inputs=[("body", "text", True)],
        outputs=[("text", "ai_output")],
        prompt="Summarise: {{ text }}",
        source_kind="db_poll",
        source_config={
            "credential": "legacy-db",
            "table": table.name,
            "key_column": "id",
            "status_column": "ai_status",
            "error_column": "ai_error",
        },
        sink_kind="db_update",
        review_policy="always",
    )

    assert polling.poll(connector) == 3
    settle()
    held = {job.source_metadata["key"]: job for job in Job.objects.all()}
    assert {job.status for job in held.values()} == {"awaiting_review"}
    assert {row.ai_status for row in legacy_rows(url, table)} == {"processing"}

    review.decide(held[1].id, ALICE, "approve")
    review.decide(held[2].id, BOB, "edit", answer="A shorter summary")
    review.decide(held[3].id, ALICE, "reject", reason="the task is a duplicate")
    call_command("run_scheduler", once=True)
    settle()

    rows = {row.id: (row.ai_status, row.ai_output, row.ai_error) for row in legacy_rows(url, table)}
    assert rows[1] == ("complete", "Demo answer (no AI was called): Summarise: body 1", None)
    assert rows[2] == ("complete", "A shorter summary", None)
    assert rows[3] == ("error", None, "rejected: the task is a duplicate")
    assert Review.objects.get(job=held[3]).failure_reported_at is not None
    statuses = {key: Job.objects.get(id=job.id).status for key, job in held.items()}
    assert statuses == {1: "succeeded", 2: "succeeded", 3: "rejected"}


def legacy_rows(url, table):
    with legacy_db.engine_for(url).connect() as connection:
        return list(connection.execute(sa.select(table)))
