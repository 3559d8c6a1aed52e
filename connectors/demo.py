"""The demo setup `make run` seeds on an empty database: a connector whose provider calls no AI."""

from django.db import transaction

from connectors import audit
from connectors.models import ApiKey, Connector, FieldMapping, Provider, RedactionRule
from connectors.providers.demo import DemoProvider
from connectors.sinks.none import NoSink

DEMO_SCHEMA = {
    "type": "object",
    "required": ["decision", "reason"],
    "properties": {
        "decision": {"enum": ["approve", "reject"]},
        "reason": {"type": "string"},
    },
}


def seed_demo() -> tuple[Connector, str] | None:
    """Create the demo provider, connector and an API key, unless any connector exists."""
    if Connector.objects.exists():
        return None
    actor = audit.Actor.system("seed")
    with transaction.atomic():
        provider = Provider.objects.create(name="demo", kind=DemoProvider.kind, max_concurrency=8)
        connector = Connector.objects.create(
            name="Demo invoice approval (demo provider: no AI is called)",
            slug="demo",
            provider=provider,
            prompt_template=(
                "Approve or reject this invoice note: {{ text }} "
                "(customer contact {{ email }}). Answer JSON."
            ),
            output_format=Connector.OutputFormat.JSON,
            output_schema=DEMO_SCHEMA,
            sink_kind=NoSink.kind,
        )
        FieldMapping.objects.bulk_create(
            [
                FieldMapping(
                    connector=connector,
                    direction="input",
                    source_path="text",
                    target_name="text",
                    transform="strip",
                    is_required=True,
                    position=0,
                ),
                FieldMapping(
                    connector=connector,
                    direction="input",
                    source_path="customer.email",
                    target_name="email",
                    position=1,
                ),
                FieldMapping(
                    connector=connector,
                    direction="output",
                    source_path="decision",
                    target_name="ai_decision",
                    position=0,
                ),
                FieldMapping(
                    connector=connector,
                    direction="output",
                    source_path="reason",
                    target_name="ai_reason",
                    position=1,
                ),
            ]
        )
        RedactionRule.objects.bulk_create(
            [
                RedactionRule(connector=connector, detector="email", action="mask", position=0),
                RedactionRule(connector=connector, detector="ssn", action="hash", position=1),
            ]
        )
        api_key, plain, _ = ApiKey.issue(connector, name="demo")
        audit.record("demo.seed", actor, connector, connector=connector.slug)
        audit.record("api_key.create", actor, api_key, connector=connector.slug)
    return connector, plain
