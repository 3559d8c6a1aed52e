"""RabbitMQ connections (pika) for the amqp source and sink: URL parsing, safe error text."""

import pika

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def connect(url: str) -> pika.BlockingConnection:
    parameters = pika.URLParameters(url)
    parameters.connection_attempts = 1
    parameters.socket_timeout = 5
    parameters.blocked_connection_timeout = 30
    parameters.heartbeat = 30
    return pika.BlockingConnection(parameters)


def describe_error(error: Exception) -> str:
    """pika's errors can repeat the URL; name the error class and its reply text only."""
    reply = getattr(error, "reply_text", "")
    return f"{type(error).__name__}{': ' + reply if reply else ''}"
