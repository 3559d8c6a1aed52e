"""Answer on the message queue: to the message's reply_to with its correlation_id, or to a
configured exchange and routing key. Publishes are confirmed by the broker (publisher confirms,
mandatory routing), so an answer the broker did not take is retried, not lost."""

import contextlib
import json
import threading

import pika
from pika.exceptions import AMQPError, UnroutableError

from connectors import amqp
from connectors.errors import SinkError
from connectors.plugins import CREDENTIAL, Setting
from connectors.sinks.base import Sink
from connectors.work import Delivery, WriteOutcome


class AmqpSink(Sink):
    kind = "amqp"
    can_restore_tokens = True
    settings = (
        Setting("credential", CREDENTIAL, help="The broker URL credential; default: the source's."),
        Setting("exchange", help="Where answers go when a message names no reply_to queue."),
        Setting("routing_key", help="Their routing key (with exchange)."),
    )

    def __init__(self, config: dict, secrets: dict[str, str], **kwargs) -> None:
        super().__init__(config, secrets, **kwargs)
        self._lock = threading.Lock()  # pika connections are not thread-safe
        self._connection = None
        self._channel = None

    @classmethod
    def effective_config(cls, sink_config: dict, source_config: dict) -> dict:
        inherited = (
            {"credential": source_config["credential"]} if "credential" in source_config else {}
        )
        return {**inherited, **sink_config}

    def channel(self):
        if self._channel is None or not self._channel.is_open:
            url = self._secrets.get("credential") or amqp.DEFAULT_URL
            self._connection = amqp.connect(url)
            self._channel = self._connection.channel()
            self._channel.confirm_delivery()
        return self._channel

    def publish(self, delivery: Delivery, body: dict) -> str:
        reply_to = delivery.source_metadata.get("reply_to")
        exchange = "" if reply_to else self.config.get("exchange", "")
        routing_key = reply_to or self.config.get("routing_key", "")
        if not routing_key:
            raise SinkError(
                "no reply_to on the message and no routing_key configured", permanent=True
            )
        properties = pika.BasicProperties(
            content_type="application/json",
            correlation_id=delivery.source_metadata.get("correlation_id") or None,
            message_id=delivery.job_id,
            delivery_mode=pika.DeliveryMode.Persistent,
        )
        with self._lock:
            try:
                self.channel().basic_publish(
                    exchange, routing_key, json.dumps(body), properties, mandatory=True
                )
            except UnroutableError:
                # No queue is bound to it (a reply_to queue the caller has deleted): retrying
                # cannot help. The channel is still fine.
                raise SinkError(
                    f"message queue: nothing receives messages routed to {routing_key!r} "
                    f"(exchange {exchange or '(default)'}); is the reply queue gone?",
                    permanent=True,
                ) from None
            except (AMQPError, OSError) as error:
                self._channel = None
                self.close()  # the broken connection goes with its channel
                raise SinkError(f"message queue: {amqp.describe_error(error)}") from None
        return f"{exchange or '(default)'}/{routing_key}"

    def close(self) -> None:
        if self._connection is not None and self._connection.is_open:
            with contextlib.suppress(AMQPError):  # already gone
                self._connection.close()

    def write(self, delivery: Delivery) -> WriteOutcome:
        target = self.publish(
            delivery,
            {
                "job_id": delivery.job_id,
                "connector": delivery.connector,
                "status": "succeeded",
                "result": delivery.result,
            },
        )
        return WriteOutcome(target=target, status="published")

    def report_failure(self, delivery: Delivery, error: str) -> None:
        self.publish(
            delivery,
            {
                "job_id": delivery.job_id,
                "connector": delivery.connector,
                "status": "dead",
                "error": error,
            },
        )
