"""Message queues against the real RabbitMQ on loopback: consume, reply, refuse, reconnect."""

import contextlib
import json
import os
import subprocess
import threading
import time
import uuid

import pika
import pytest

from connectors import polling
from connectors.management.commands import run_sources
from connectors.models import Job
from tests.worker import drain

pytestmark = pytest.mark.django_db(transaction=True)
URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


@pytest.fixture
def broker():
    try:
        connection = pika.BlockingConnection(pika.URLParameters(URL))
    except pika.exceptions.AMQPConnectionError:
        reason = f"RabbitMQ is not reachable at {URL}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must test against RabbitMQ, but {reason}")
        pytest.skip(reason)
    channel = connection.channel()
    queues = {name: f"interlock-test-{name}-{uuid.uuid4().hex[:8]}" for name in ("in", "out")}
    for queue in queues.values():
        channel.queue_declare(queue, durable=True)
    yield channel, queues
    with contextlib.suppress(pika.exceptions.AMQPError):  # the reconnect test closed it
        connection.close()
    cleanup = pika.BlockingConnection(pika.URLParameters(URL))
    for queue in queues.values():
        cleanup.channel().queue_delete(queue)
    cleanup.close()


@pytest.fixture
def consumer(broker, make_connector):
    _, queues = broker
    connector = make_connector(
        "queue",
        inputs=[("note", "text", True)],
        outputs=[("text", "answer")],
        prompt="Classify: {{ text }}",
        source_kind="amqp",
        source_config={"queue": queues["in"], "prefetch": 10},
        sink_kind="amqp",
    )
    stop = threading.Event()
    thread = threading.Thread(target=polling.consume, args=(connector, stop), daemon=True)
    thread.start()
    yield connector
    stop.set()
    thread.join(10)


def publish(channel, queue: str, body, **properties) -> None:
    text = body if isinstance(body, str) else json.dumps(body)
    channel.basic_publish("", queue, text, pika.BasicProperties(**properties))


def wait_for_jobs(count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while Job.objects.count() < count:
        assert time.monotonic() < deadline, f"only {Job.objects.count()} of {count} jobs arrived"
        time.sleep(0.05)


def replies(channel, queue: str, count: int, timeout: float = 10) -> list:
    found, deadline = [], time.monotonic() + timeout
    while len(found) < count and time.monotonic() < deadline:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            time.sleep(0.05)
            continue
        found.append((properties.correlation_id, json.loads(body)))
    return found


def test_messages_become_jobs_and_answers_go_to_reply_to(broker, consumer):
    channel, queues = broker
    for n in range(3):
        publish(
            channel,
            queues["in"],
            {"note": f"message {n}"},
            reply_to=queues["out"],
            correlation_id=f"c{n}",
            message_id=f"m{n}",
        )

    wait_for_jobs(3)
    drain()

    answers = dict(replies(channel, queues["out"], 3))
    assert set(answers) == {"c0", "c1", "c2"}
    assert answers["c1"]["status"] == "succeeded"
    assert answers["c1"]["result"] == {
        "answer": "Demo answer (no AI was called): Classify: message 1"
    }
    assert Job.objects.get(idempotency_key="msg:m1").source_metadata == {
        "reply_to": queues["out"],
        "correlation_id": "c1",
    }


def test_a_redelivered_message_is_the_same_job(broker, consumer):
    channel, queues = broker
    publish(channel, queues["in"], {"note": "once"}, message_id="same")
    publish(channel, queues["in"], {"note": "once"}, message_id="same")

    wait_for_jobs(1)
    time.sleep(0.5)

    assert Job.objects.count() == 1
    assert channel.queue_declare(queues["in"], passive=True).method.message_count == 0


def test_a_reused_message_id_with_another_body_is_refused_not_swallowed(broker, consumer):
    channel, queues = broker
    publish(channel, queues["in"], {"note": "order 1"}, message_id="1")
    wait_for_jobs(1)
    publish(
        channel,
        queues["in"],
        {"note": "order 2"},
        message_id="1",
        reply_to=queues["out"],
        correlation_id="second",
    )

    [(correlation, answer)] = replies(channel, queues["out"], 1)

    assert correlation == "second" and answer["status"] == "refused"
    assert "already used for a different record" in answer["error"]
    assert Job.objects.count() == 1


def test_messages_without_ids_are_each_a_job_and_odd_properties_do_not_block(broker, consumer):
    channel, queues = broker
    publish(channel, queues["in"], {"note": "ping"})
    publish(channel, queues["in"], {"note": "ping"})  # the same request, sent twice on purpose
    publish(channel, queues["in"], {"note": "odd"}, correlation_id=b"\xff\xfe", message_id="odd")

    wait_for_jobs(3)

    assert (
        Job.objects.get(idempotency_key="msg:odd").source_metadata["correlation_id"]
        == "\ufffd\ufffd"
    )


def test_a_saved_connector_restarts_its_consumer_with_the_new_settings(broker, make_connector):
    channel, queues = broker
    connector = make_connector(
        "queue",
        inputs=[("note", "text", True)],
        prompt="Old: {{ text }}",
        source_kind="amqp",
        source_config={"queue": queues["in"]},
        sink_kind="amqp",
    )
    command, consumers = run_sources.Command(), {}
    command.manage_consumers(consumers)
    first = consumers[connector.id][0]

    connector.prompt_template = "New: {{ text }}"
    connector.save()
    command.manage_consumers(consumers)
    try:
        publish(channel, queues["in"], {"note": "after the edit"}, message_id="m")
        wait_for_jobs(1)
    finally:
        for thread, stop, _ in consumers.values():
            stop.set()
            thread.join(10)

    assert consumers[connector.id][0] is not first and not first.is_alive()
    assert Job.objects.get().prompt == "New: after the edit"


def test_an_answer_to_a_reply_queue_that_is_gone_fails_at_once(broker, consumer):
    channel, queues = broker
    publish(channel, queues["in"], {"note": "x"}, reply_to="interlock-test-gone", message_id="g")
    wait_for_jobs(1)

    drain()

    job = Job.objects.get()
    assert (job.status, job.attempts) == (Job.Status.DEAD, 1)  # not retried max_attempts times
    assert "is the reply queue gone?" in job.error_message


def test_a_bad_message_is_refused_with_a_reply(broker, consumer):
    channel, queues = broker
    publish(channel, queues["in"], "not json", reply_to=queues["out"], correlation_id="bad")
    publish(channel, queues["in"], {"other": 1}, reply_to=queues["out"], correlation_id="unmapped")
    deep = '{"note": ' + "[" * 5000 + "]" * 5000 + "}"  # once crashed the consumer, forever
    publish(channel, queues["in"], deep, reply_to=queues["out"], correlation_id="deep")

    answers = dict(replies(channel, queues["out"], 3))

    assert answers["bad"] == {"status": "refused", "error": "the message must be a JSON object"}
    assert answers["deep"] == answers["bad"]
    assert answers["unmapped"] == {
        "status": "refused",
        "error": "required field 'note' is missing",
    }
    assert Job.objects.count() == 0


def test_the_consumer_reconnects_after_the_broker_drops_it(broker, consumer):
    channel, queues = broker
    publish(channel, queues["in"], {"note": "before"}, message_id="before")
    wait_for_jobs(1)

    result = subprocess.run(
        ["rabbitmqctl", "close_all_connections", "broker restart (test)"],
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    time.sleep(1)
    publisher = pika.BlockingConnection(pika.URLParameters(URL)).channel()
    publish(publisher, queues["in"], {"note": "after"}, message_id="after")

    wait_for_jobs(2, timeout=20)
    assert set(Job.objects.values_list("idempotency_key", flat=True)) == {"msg:before", "msg:after"}
    publisher.connection.close()


def test_test_connection_counts_waiting_messages(broker, make_connector):
    channel, queues = broker
    publish(channel, queues["in"], {"note": "x"})
    connector = make_connector(
        "queue", source_kind="amqp", source_config={"queue": queues["in"]}, sink_kind="none"
    )

    message = polling.build_source(connector).test_connection()

    assert message == f"OK: queue {queues['in']} reachable; 1 messages waiting"
