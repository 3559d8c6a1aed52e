"""Source kinds: where records come from. Adding one is adding a module and a line here."""

from connectors.registry import Registry

SOURCES = Registry(
    "source",
    {
        "webhook": ("connectors.sources.webhook.WebhookSource", "Webhook (HTTP API)"),
        "db_poll": ("connectors.sources.db_poll.DbPollSource", "Database polling (status column)"),
        "file_drop": ("connectors.sources.file_drop.FileDropSource", "File drop (folder)"),
        "amqp": ("connectors.sources.amqp.AmqpSource", "Message queue (AMQP / RabbitMQ)"),
    },
    default="webhook",
)
