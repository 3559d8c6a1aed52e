"""Intake's requests stored together: the threads of a process that arrive while one stores wait
for the next turn and are stored in one transaction; each gets its own answer, and one bad
request refuses only itself."""

import threading
import time
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from connectors import audit, group_commit, jobs
from connectors.api.errors import ApiError
from connectors.api.views import Intake, store_intakes
from connectors.models import AuditEvent, Job, WebhookReceipt
from connectors.work import Submission


def store_each(calls):
    def store(tickets):
        calls.append([ticket.item for ticket in tickets])
        for ticket in tickets:
            if ticket.item == "bad":
                ticket.error = ValueError("bad item")
            else:
                ticket.result = f"stored {ticket.item}"

    return store


def test_a_lone_item_is_stored_at_once():
    calls = []

    assert group_commit.together("lone", "a", store_each(calls)) == "stored a"
    assert calls == [["a"]]


def test_items_arriving_while_one_is_stored_are_stored_together_with_their_own_answers():
    calls, first_started, release = [], threading.Event(), threading.Event()
    store = store_each(calls)

    def slow_first(tickets):
        first_started.set()
        release.wait(10)
        store(tickets)

    answers = {}

    def call(item, how):
        try:
            answers[item] = group_commit.together("key", item, how)
        except ValueError as error:
            answers[item] = error

    first = threading.Thread(target=call, args=("a", slow_first))
    first.start()
    first_started.wait(10)
    others = [threading.Thread(target=call, args=(item, store)) for item in ("b", "bad", "c")]
    for thread in others:
        thread.start()
    deadline = time.monotonic() + 10
    while len(group_commit._waiting.get("key", [])) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    release.set()
    for thread in (first, *others):
        thread.join(10)

    assert calls[0] == ["a"]
    assert sorted(calls[1]) == ["b", "bad", "c"] and len(calls) == 2
    assert answers["a"] == "stored a" and answers["c"] == "stored c"
    assert isinstance(answers["bad"], ValueError)


def test_a_store_that_raises_fails_every_ticket_it_took():
    def broken(tickets):
        raise RuntimeError("database gone")

    with pytest.raises(RuntimeError, match="database gone"):
        group_commit.together("broken", "a", broken)
    assert "broken" not in group_commit._waiting


def intake(connector, api_key, text, *, address="10.0.0.1", webhook_id=None):
    request = SimpleNamespace(auth=api_key, webhook_id=webhook_id)
    prepared = jobs.prepare(connector, [Submission(record={"text": text})])
    return Intake(request, prepared, audit.Actor.api_key(api_key, address), is_batch=False)


@pytest.mark.django_db(transaction=True)
def test_requests_stored_together_share_one_append_and_keep_their_own_actors(
    make_connector, api_key
):
    connector = make_connector("grouped", batch_size=20)
    first_key, second_key = api_key(connector)[0], api_key(connector)[0]
    intakes = [
        intake(connector, first_key, "one", address="10.0.0.1"),
        intake(connector, second_key, "two", address="10.0.0.2"),
        intake(connector, first_key, "three", address="10.0.0.3"),
    ]
    tickets = [group_commit.Ticket(item) for item in intakes]
    audit.record("before", audit.Actor.system())  # the head exists (a flush may have emptied it)

    with CaptureQueriesContext(connection) as queries:
        store_intakes(tickets)

    head_reads = [q for q in queries.captured_queries if "auditchainhead" in q["sql"].lower()]
    assert len(head_reads) == 2  # one read under the lock and one update, for all three
    results = [ticket.result for ticket in tickets]
    assert all(ticket.error is None for ticket in tickets)
    assert [job.input_data["text"] for ((job, is_new),) in results] == ["one", "two", "three"]
    events = AuditEvent.objects.filter(action="job.created").order_by("sequence")
    assert [(event.object_id, event.actor, event.ip_address) for event in events] == [
        (str(job.id), f"{key.prefix}…", address)
        for ((job, _),), key, address in zip(
            results,
            (first_key, second_key, first_key),
            ("10.0.0.1", "10.0.0.2", "10.0.0.3"),
            strict=True,
        )
    ]
    assert len({job.rq_job_id for job in Job.objects.all()}) == 1  # one RQ job for the three
    assert audit.verify().is_valid


@pytest.mark.django_db(transaction=True)
def test_a_replayed_webhook_refuses_only_its_own_request(make_connector, api_key):
    connector = make_connector("grouped")
    key = api_key(connector)[0]
    WebhookReceipt.objects.create(api_key=key, webhook_id="seen-before")
    tickets = [
        group_commit.Ticket(intake(connector, key, "one", webhook_id="new-1")),
        group_commit.Ticket(intake(connector, key, "two", webhook_id="seen-before")),
        group_commit.Ticket(intake(connector, key, "three")),
    ]

    store_intakes(tickets)

    assert isinstance(tickets[1].error, ApiError) and tickets[1].error.status_code == 409
    stored = {job.input_data["text"] for job in Job.objects.all()}
    assert stored == {"one", "three"}
    assert [ticket.result[0][0].input_data["text"] for ticket in (tickets[0], tickets[2])] == [
        "one",
        "three",
    ]
    assert AuditEvent.objects.filter(action="job.created").count() == 2
    assert set(WebhookReceipt.objects.values_list("webhook_id", flat=True)) == {
        "seen-before",
        "new-1",
    }
    assert audit.verify().is_valid
