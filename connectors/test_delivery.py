"""A marked test result sent through a connector's real sink, before a job needs it."""

import uuid

from connectors import pipeline, polling
from connectors.models import Connector
from connectors.sinks import SINKS
from connectors.work import Delivery

TEST_RESULT = {
    "interlock_test": True,
    "message": "Interlock test delivery: not a job's result; safe to ignore.",
}


def send(connector: Connector) -> tuple[bool, str]:
    """(delivered?, what happened): the sink's own write path, with a test job id."""
    if not SINKS.get(connector.sink_kind).can_send_test_delivery:
        return False, f"the {connector.sink_kind} sink does not take test deliveries"
    delivery = Delivery(
        job_id=f"test-{uuid.uuid4()}",
        connector=connector.slug,
        source_reference="Interlock test delivery",
        result=TEST_RESULT,
        attempt=0,
    )
    try:
        sink = pipeline.build_sink(connector)
        try:
            outcome = sink.write(delivery)
        finally:
            sink.close()
    except Exception as error:  # any failure is the answer shown, never a 500
        return False, polling.describe(error)
    detail = f" ({outcome.detail})" if outcome.detail else ""
    return True, f"delivered to {outcome.target}: status {outcome.status}{detail}"
