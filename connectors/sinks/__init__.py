"""Sink kinds: where results are written back. Adding one is adding a module and a line here."""

from connectors.registry import Registry

SINKS = Registry(
    "sink",
    {
        "http": ("connectors.sinks.http.HttpSink", "HTTP callback (Standard Webhooks)"),
        "none": ("connectors.sinks.none.NoSink", "None (the caller reads the job API)"),
        "db_update": ("connectors.sinks.db_update.DbUpdateSink", "Database row update"),
        "file": ("connectors.sinks.file.FileSink", "File (outbox, same format as the input)"),
        "amqp": ("connectors.sinks.amqp.AmqpSink", "Message queue reply (AMQP)"),
    },
    default="none",
)
