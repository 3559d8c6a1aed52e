"""A SOAP client generated from the connector's WSDL by zeep calls the webhook end to end, on a
live server, with a real worker process answering `?wait=`."""

import pytest
import requests
import zeep
from zeep.exceptions import Fault
from zeep.transports import Transport

from connectors.models import Job
from tests.worker import start_worker_process

pytestmark = pytest.mark.django_db(transaction=True)

SCHEMA = {
    "type": "object",
    "required": ["decision"],
    "properties": {"decision": {"enum": ["approve", "reject"]}, "confidence": {"type": "number"}},
}


@pytest.fixture
def connector(make_connector):
    return make_connector(
        "invoices",
        inputs=(("customer.email", "email", True), ("text", "text", True)),
        outputs=(("decision", "ai_decision"), ("confidence", "score")),
        prompt="{{ email }}: {{ text }}",
        output_format="json",
        output_schema=SCHEMA,
        source_config={"accepts": ["soap"]},
    )


def soap_client(live_server, key: str, **headers) -> zeep.Client:
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {key}", **headers})
    wsdl = f"{live_server.url}/api/v1/connectors/invoices/records/?wsdl"
    return zeep.Client(wsdl, transport=Transport(session=session, timeout=30))


@pytest.mark.parametrize("binding", ["RecordsSoap11", "RecordsSoap12"])
def test_a_client_generated_from_the_wsdl_submits_a_record(live_server, connector, key, binding):
    client = soap_client(live_server, key)
    service = client.bind("Records", binding)

    answer = service.submit(customer={"email": "a@b.example"}, text="late delivery")

    [job] = answer
    stored = Job.objects.get()
    assert (job.id, job.status, job.url) == (str(stored.id), "queued", f"/api/v1/jobs/{stored.id}/")
    assert stored.prompt == "a@b.example: late delivery"


def test_with_wait_the_client_gets_the_typed_result(
    live_server, connector, key, settings, redis_url
):
    worker = start_worker_process(settings, redis_url)
    try:
        client = soap_client(live_server, key)
        address = f"{live_server.url}/api/v1/connectors/invoices/records/?wait=20"
        service = client.create_service("{urn:interlock:connector:invoices}RecordsSoap12", address)

        [job] = service.submit(customer={"email": "a@b.example"}, text="late delivery")
    finally:
        worker.terminate()
        worker.wait(10)

    assert job.status == "succeeded"
    assert (job.result.ai_decision, job.result.score) == ("approve", 0.0)
    assert job.error is None and job.attempts == 1
    assert Job.objects.get().result == {"ai_decision": "approve", "score": 0}


def test_a_refusal_reaches_the_client_as_a_fault_with_our_code(live_server, connector, key):
    client = soap_client(live_server, key, **{"Idempotency-Key": "inv-1"})
    client.service.submit(customer={"email": "a@b.example"}, text="one")

    with pytest.raises(Fault) as raised:
        client.service.submit(customer={"email": "a@b.example"}, text="another record")

    fault = raised.value
    assert fault.code == "soap:Client"
    [error] = fault.detail
    assert error.findtext("{urn:interlock:connector:invoices}code") == "idempotency_key_reused"
    assert fault.message == error.findtext("{urn:interlock:connector:invoices}detail")
    assert Job.objects.count() == 1
