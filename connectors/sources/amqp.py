"""Message queues: consume JSON records from a RabbitMQ queue with manual acknowledgements.

A message is acknowledged only after its job row is committed, so a consumer that dies in
between leaves it on the queue; redelivered, it maps to the same job through its idempotency key
(the message_id, else the correlation_id, else a hash of the body). A message that is not a JSON
object is rejected without requeue (it goes to the queue's dead-letter exchange, if it has one)
and, when it names a reply_to queue, answered with the error.
"""

import json
import logging
import uuid
from collections.abc import Callable

import pika

from connectors import amqp, crypto, legacy_json
from connectors.plugins import BOOLEAN, CREDENTIAL, INTEGER, Setting
from connectors.sources.base import Source
from connectors.work import Submission

logger = logging.getLogger(__name__)


class AmqpSource(Source):
    kind = "amqp"
    is_consumer = True
    settings = (
        Setting("queue", required=True, help="The queue to consume."),
        Setting("credential", CREDENTIAL, help="The broker URL credential (amqp://…)."),
        Setting(
            "prefetch",
            INTEGER,
            default=100,
            minimum=1,
            maximum=10000,
            help="Messages taken at once (and submitted in one transaction).",
        ),
        Setting("declare", BOOLEAN, default=True, help="Declare the queue (durable) on start."),
    )

    @property
    def url(self) -> str:
        return self._secrets.get("credential") or amqp.DEFAULT_URL

    def open_channel(self):
        connection = amqp.connect(self.url)
        channel = connection.channel()
        if self.config["declare"]:
            channel.queue_declare(queue=self.config["queue"], durable=True)
        return connection, channel

    def consume(self, submit: Callable, stop) -> None:
        connection, channel = self.open_channel()
        channel.basic_qos(prefetch_count=self.config["prefetch"])
        pending: list = []
        try:
            for method, properties, body in channel.consume(
                self.config["queue"], inactivity_timeout=0.2
            ):
                if method is not None:
                    pending.append((method, properties, body))
                if pending and (method is None or len(pending) >= self.config["prefetch"]):
                    self.take(channel, submit, pending)
                    pending = []
                if stop.is_set():
                    break
        finally:
            if connection.is_open:
                try:
                    channel.cancel()  # unacknowledged messages go back to the queue
                    connection.close()
                except Exception:  # the broker may already be gone
                    logger.debug("closing the AMQP connection failed", exc_info=True)

    def take(self, channel, submit: Callable, messages: list) -> None:
        """Submit a burst of messages as jobs in one transaction, then acknowledge them."""
        items, refused = [], []
        for method, properties, body in messages:
            try:
                record = legacy_json.loads(body)
            except ValueError:  # not UTF-8 or not JSON; NaN, huge numbers, too deep
                record = None
            if not isinstance(record, dict):
                refused.append((method, properties, "the message must be a JSON object"))
                continue
            items.append((method, properties, item_for(properties, body, record)))
        rejected: list = []
        if items:
            submit([item for _, _, item in items], rejected=rejected)
        for rejection in rejected:
            method, properties, _ = items[rejection.index]
            refused.append((method, properties, rejection.error.message))
        refused_tags = {method.delivery_tag for method, _, _ in refused}
        for method, _, _ in items:
            if method.delivery_tag not in refused_tags:
                channel.basic_ack(method.delivery_tag)
        for method, properties, message in refused:
            if properties.reply_to:
                channel.basic_publish(
                    "",
                    properties.reply_to,
                    json.dumps({"status": "refused", "error": message}),
                    pika.BasicProperties(
                        correlation_id=properties.correlation_id, content_type="application/json"
                    ),
                )
            channel.basic_reject(method.delivery_tag, requeue=False)

    def test_connection(self) -> str:
        try:
            connection, channel = self.open_channel()
            waiting = channel.queue_declare(
                queue=self.config["queue"], durable=True, passive=True
            ).method.message_count
            connection.close()
        except Exception as error:
            raise ValueError(f"cannot reach the queue: {amqp.describe_error(error)}") from None
        return f"OK: queue {self.config['queue']} reachable; {waiting} messages waiting"


def item_for(properties, body: bytes, record: dict) -> Submission:
    """A message as a submission. Its message_id (else correlation_id) makes a redelivery the
    same job, and a reused id with another body is refused, not swallowed. A message without
    either is a new job each time: two equal bodies may be two real requests."""
    message_id, correlation_id = text(properties.message_id), text(properties.correlation_id)
    if message_id:
        key = f"msg:{message_id}"
    elif correlation_id:
        key = f"corr:{correlation_id}"
    else:
        key = f"uuid:{uuid.uuid4()}"
    return Submission(
        record=record,
        idempotency_key=key[:255],
        source_reference=f"message {message_id or correlation_id}".strip(),
        source_metadata={"reply_to": text(properties.reply_to), "correlation_id": correlation_id},
        fingerprint=crypto.record_fingerprint(record),
    )


def text(value) -> str:
    """A message property as storable text: pika hands over bytes when it is not UTF-8."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return str(value).replace("\x00", "")[:255]
