"""SOAP 1.1 and 1.2 at the webhook, through the real API: envelopes in, SOAP responses and
Faults out, the WSDL, and nothing stored for a refusal."""

import json
import logging
import uuid
from xml.etree import ElementTree

import pytest

from connectors.models import ApiKey, Job
from connectors.sources.webhook import WebhookSource
from tests.conftest import CANARY_SECRET
from tests.test_intake import signed_headers
from tests.worker import drain

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/v1/connectors/invoices/records/"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
TNS = "urn:interlock:connector:invoices"
SCHEMA = {
    "type": "object",
    "required": ["decision"],
    "properties": {
        "decision": {"enum": ["approve", "reject"]},
        "confidence": {"type": "number"},
        "flags": {"type": "array", "items": {"type": "string"}},
    },
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
        source_config={"accepts": ["json", "xml", "soap"]},
    )


def envelope(payload: str, version: str = SOAP11, header: str = "") -> str:
    return (
        f'<?xml version="1.0"?><s:Envelope xmlns:s="{version}">{header}'
        f"<s:Body>{payload}</s:Body></s:Envelope>"
    )


RECORD = (
    f'<submit xmlns="{TNS}"><customer><email>a@b.example</email></customer>'
    "<text>late delivery</text></submit>"
)


def post11(client, body, *, key=None, query="", **headers):
    """SOAP 1.1 as a client sends it: text/xml and a SOAPAction header."""
    extra = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    extra.setdefault("HTTP_SOAPACTION", '"urn:interlock:connector:invoices#submit"')
    extra.update(headers)
    data = body if isinstance(body, bytes) else body.encode()
    return client.post(URL + query, data, "text/xml; charset=utf-8", **extra)


def post12(client, body, *, key=None, query="", **headers):
    extra = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    extra.update(headers)
    content_type = 'application/soap+xml; charset=utf-8; action="urn:anything"'
    return client.post(URL + query, body.encode(), content_type, **extra)


def body_of(response, version: str = SOAP11) -> ElementTree.Element:
    root = ElementTree.fromstring(response.content)
    assert root.tag == f"{{{version}}}Envelope"
    [body] = root
    assert body.tag == f"{{{version}}}Body"
    [element] = body
    return element


def jobs_of(response, version: str = SOAP11) -> list[dict]:
    answer = body_of(response, version)
    assert answer.tag == f"{{{TNS}}}submitResponse"
    return [{child.tag.split("}")[1]: child for child in job} for job in answer]


def fault_of(response, version: str = SOAP11) -> dict:
    """The Fault's code (1.2: and subcode) and text, and its <error> detail's fields."""
    fault = body_of(response, version)
    assert fault.tag == f"{{{version}}}Fault"
    if version == SOAP11:
        code, text = fault.findtext("faultcode"), fault.findtext("faultstring")
        detail = fault.find("detail")
        subcode = None
    else:
        code = fault.findtext(f"{{{SOAP12}}}Code/{{{SOAP12}}}Value")
        subcode = fault.findtext(f"{{{SOAP12}}}Code/{{{SOAP12}}}Subcode/{{{SOAP12}}}Value")
        text = fault.findtext(f"{{{SOAP12}}}Reason/{{{SOAP12}}}Text")
        detail = fault.find(f"{{{SOAP12}}}Detail")
    [error] = detail
    assert error.tag == f"{{{TNS}}}error"
    fields = {child.tag.split("}")[1]: child.text for child in error}
    return {"fault_code": code, "subcode": subcode, "text": text, "error": fields}


def test_a_soap_11_envelope_is_a_record_answered_with_its_job(client, connector, key):
    response = post11(client, envelope(RECORD), key=key)

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/xml; charset=utf-8"
    [job] = jobs_of(response)
    stored = Job.objects.get()
    assert job["id"].text == str(stored.id)
    assert job["status"].text == stored.status == "queued"
    assert job["url"].text == f"/api/v1/jobs/{stored.id}/"
    assert stored.prompt == "a@b.example: late delivery"


def test_a_soap_12_envelope_is_answered_in_soap_12(client, connector, key):
    response = post12(client, envelope(RECORD, SOAP12), key=key)

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/soap+xml; charset=utf-8"
    [job] = jobs_of(response, SOAP12)
    assert job["id"].text == str(Job.objects.get().id)


def test_an_envelope_without_soapaction_is_still_soap(client, connector, key):
    """A SOAP 1.1 client that leaves out SOAPAction: the envelope's namespace says it is SOAP."""
    response = client.post(
        URL, envelope(RECORD).encode(), "text/xml", HTTP_AUTHORIZATION=f"Bearer {key}"
    )

    assert response.status_code == 200, response.content
    assert jobs_of(response)[0]["status"].text == "queued"
    assert Job.objects.get().prompt == "a@b.example: late delivery"


def test_every_record_element_in_the_body_is_a_record(client, connector, key):
    connector.source_config = WebhookSource.validate_config(
        {"accepts": ["soap"], "record_element": "invoice"}
    )
    connector.save()
    invoices = "".join(
        f"<invoice><customer><email>{n}@b.example</email></customer><text>t{n}</text></invoice>"
        for n in (1, 2, 3)
    )

    response = post11(client, envelope(f"<submit>{invoices}</submit>"), key=key)

    assert response.status_code == 200, response.content
    ids = [job["id"].text for job in jobs_of(response)]
    prompts = dict(Job.objects.values_list("id", "prompt"))
    assert [prompts[uuid.UUID(i)] for i in ids] == [
        "1@b.example: t1",
        "2@b.example: t2",
        "3@b.example: t3",
    ]


def test_wait_answers_the_results_typed_as_the_wsdl_says(client, connector, key):
    post11(client, envelope(RECORD), key=key, HTTP_IDEMPOTENCY_KEY="inv-1")
    drain()

    response = post11(
        client, envelope(RECORD), key=key, query="?wait=1", HTTP_IDEMPOTENCY_KEY="inv-1"
    )

    assert response.status_code == 200, response.content
    [job] = jobs_of(response)
    assert job["status"].text == "succeeded"
    assert job["attempts"].text == "1"
    result = {child.tag.split("}")[1]: child.text for child in job["result"]}
    assert result == {"ai_decision": "approve", "score": "0"}
    assert json.loads(job["result_json"].text) == {"ai_decision": "approve", "score": 0}
    assert "error" not in job
    assert response["Idempotent-Replayed"] == "true"


def test_an_idempotency_key_returns_the_same_job(client, connector, key):
    first = jobs_of(post11(client, envelope(RECORD), key=key, HTTP_IDEMPOTENCY_KEY="k1"))
    again = post11(client, envelope(RECORD), key=key, HTTP_IDEMPOTENCY_KEY="k1")

    assert jobs_of(again)[0]["id"].text == first[0]["id"].text
    assert again["Idempotent-Replayed"] == "true"
    assert Job.objects.count() == 1


def test_a_signed_envelope_is_verified_over_the_raw_body(client, connector, api_key):
    _, signing_key, secret = api_key(connector, signed=True)
    body = envelope(RECORD).encode()
    headers = {
        "HTTP_" + name.upper().replace("-", "_"): value
        for name, value in signed_headers(secret, body).items()
    }

    signed = post11(client, body, key=signing_key, **headers)
    tampered = post11(client, body.replace(b"late", b"LATE"), key=signing_key, **headers)

    assert signed.status_code == 200, signed.content
    assert tampered.status_code == 401
    fault = fault_of(tampered)
    assert fault["fault_code"] == "soap:Client"
    assert fault["error"]["code"] == "invalid_signature"
    assert Job.objects.count() == 1


# --- Faults -------------------------------------------------------------------------------

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><submit>
<customer><email>a@b.example</email></customer><text>&lol1;</text></submit></s:Body></s:Envelope>"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE s:Envelope [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><submit>
<customer><email>a@b.example</email></customer><text>&secret;</text></submit></s:Body></s:Envelope>"""
MUST_UNDERSTAND = envelope(
    RECORD,
    header='<s:Header><Security xmlns="urn:wsse" s:mustUnderstand="1">x</Security></s:Header>',
)
DEEP = envelope("<submit>" + "<a>" * 80 + "x" + "</a>" * 80 + "</submit>")

MALFORMED = {
    "billion laughs": (BILLION_LAUGHS, "soap:Client", "DTDs and entities are not allowed"),
    "external entity": (EXTERNAL_ENTITY, "soap:Client", "DTDs and entities are not allowed"),
    "not well formed": (envelope("<submit>").replace("</s:Body>", ""), "soap:Client", "well-"),
    "not an envelope": ("<submit><text>a</text></submit>", "soap:Client", "not a SOAP envelope"),
    "unknown version": (
        envelope(RECORD, "urn:soap-2.0"),
        "soap:VersionMismatch",
        "neither SOAP 1.1",
    ),
    "no body": (f'<s:Envelope xmlns:s="{SOAP11}"/>', "soap:Client", "has no Body"),
    "empty body": (envelope(""), "soap:Client", "Body is empty"),
    "must understand": (MUST_UNDERSTAND, "soap:MustUnderstand", "<Security> must be understood"),
    "too deep": (DEEP, "soap:Client", "64 levels"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_or_hostile_soap_is_a_fault_and_stores_nothing(client, connector, key, case):
    body, fault_code, words = MALFORMED[case]

    response = post11(client, body, key=key)

    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "text/xml; charset=utf-8"
    fault = fault_of(response)
    assert fault["fault_code"] == fault_code
    assert fault["error"]["code"] == "invalid_body"
    assert words in fault["text"] and fault["error"]["detail"] == fault["text"]
    assert Job.objects.count() == 0
    assert "root:" not in response.content.decode()  # nothing of /etc/passwd


def test_a_soap_12_fault_has_code_reason_and_our_code_as_subcode(client, connector):
    response = post12(client, envelope(RECORD, SOAP12), key="ilk_wrong")

    assert response.status_code == 401
    assert response["Content-Type"] == "application/soap+xml; charset=utf-8"
    fault = fault_of(response, SOAP12)
    assert fault["fault_code"] == "soap:Sender"
    assert fault["subcode"] == "tns:invalid_api_key"
    assert fault["error"]["code"] == "invalid_api_key"
    assert fault["text"] == fault["error"]["detail"] == "The API key is unknown or revoked."


@pytest.mark.parametrize(
    ("setup", "status", "code", "fault_code"),
    [
        ("wrong key", 401, "invalid_api_key", "soap:Client"),
        ("no key", 401, "not_authenticated", "soap:Client"),
        ("disabled", 503, "connector_disabled", "soap:Server"),
        ("soap not accepted", 415, "unsupported_media_type", "soap:Client"),
        ("too large", 413, "body_too_large", "soap:Client"),
        ("missing field", 422, "missing_field", "soap:Client"),
        ("key reused", 409, "idempotency_key_reused", "soap:Client"),
        ("rate limited", 429, "rate_limited", "soap:Client"),
        ("empty", 400, "empty_body", "soap:Client"),
    ],
)
def test_every_refusal_is_a_fault_with_the_json_apis_status_and_code(
    client, connector, key, settings, setup, status, code, fault_code
):
    body, use_key, headers = envelope(RECORD), key, {}
    if setup == "wrong key":
        use_key = "ilk_wrong"
    elif setup == "no key":
        use_key = None
    elif setup == "disabled":
        connector.is_enabled = False
        connector.save()
    elif setup == "soap not accepted":
        connector.source_config = {"accepts": ["json", "xml"]}
        connector.save()
    elif setup == "too large":
        settings.INTAKE_MAX_BODY_BYTES = 100
    elif setup == "missing field":
        body = envelope("<submit><text>no email</text></submit>")
    elif setup == "key reused":
        post11(client, body, key=key, HTTP_IDEMPOTENCY_KEY="k")
        body, headers = envelope(RECORD.replace("late", "early")), {"HTTP_IDEMPOTENCY_KEY": "k"}
    elif setup == "rate limited":
        connector.source_config = {"accepts": ["soap"], "requests_per_minute": 1}
        connector.save()
        post11(client, body, key=key)
    elif setup == "empty":
        body = "  \n"
    before = Job.objects.count()

    response = post11(client, body, key=use_key, **headers)

    assert response.status_code == status, response.content
    fault = fault_of(response)
    assert fault["fault_code"] == fault_code
    assert fault["error"]["code"] == code
    assert fault["text"] == fault["error"]["detail"]
    assert Job.objects.count() == before
    if status == 415:
        accepted = ElementTree.fromstring(response.content).iter(f"{{{TNS}}}accepted")
        assert [element.text for element in accepted] == [
            "application/json",
            "application/xml",
            "text/xml",
        ]
    if status == 429:
        assert response["Retry-After"] == fault["error"]["retry_after"]


def test_a_batch_past_the_limit_is_a_413_fault(client, connector, key, settings):
    connector.source_config = {"accepts": ["soap"], "record_element": "invoice"}
    connector.save()
    settings.INTAKE_MAX_BATCH = 1
    invoice = "<invoice><customer><email>a@b.example</email></customer><text>t</text></invoice>"

    response = post11(client, envelope(f"<submit>{invoice * 2}</submit>"), key=key)

    assert response.status_code == 413
    assert fault_of(response)["error"]["code"] == "batch_too_large"
    assert fault_of(response)["error"]["limit"] == "1"
    assert Job.objects.count() == 0


def test_a_soap_body_to_a_soap_only_connector_that_is_not_an_envelope_is_a_400_fault(
    client, connector, key
):
    connector.source_config = {"accepts": ["soap"]}
    connector.save()

    response = client.post(
        URL, b"<submit><text>a</text></submit>", "text/xml", HTTP_AUTHORIZATION=f"Bearer {key}"
    )

    assert response.status_code == 400
    assert fault_of(response)["text"] == (
        "The body is not a SOAP envelope: its root element is <submit>."
    )


# --- WSDL ---------------------------------------------------------------------------------

XS = "{http://www.w3.org/2001/XMLSchema}"
WSDL = "{http://schemas.xmlsoap.org/wsdl/}"


def get_wsdl(client, key):
    return client.get(URL + "?wsdl", HTTP_AUTHORIZATION=f"Bearer {key}")


def test_the_wsdl_describes_the_record_the_result_and_the_address(client, connector, key):
    response = get_wsdl(client, key)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/xml; charset=utf-8"
    root = ElementTree.fromstring(response.content)
    assert root.get("targetNamespace") == TNS
    [record] = [t for t in root.iter(f"{XS}complexType") if t.get("name") == "Record"]
    fields = {e.get("name"): e for e in record.iter(f"{XS}element")}
    assert set(fields) == {"customer", "email", "text"}
    assert fields["email"].get("minOccurs") == "1" and fields["text"].get("type") == "xs:string"
    [result] = [e for e in root.iter(f"{XS}element") if e.get("name") == "result"]
    types = {e.get("name"): e.get("type") for e in result.iter(f"{XS}element")}
    assert types == {"result": None, "ai_decision": "xs:string", "score": "xs:double"}
    addresses = [port[0].get("location") for port in root.iter(f"{WSDL}port")]
    assert addresses == [f"http://testserver{URL}"] * 2


def test_the_wsdl_needs_a_key_of_the_connector(client, connector, make_connector, api_key):
    other_key = api_key(make_connector("other"))[1]

    anonymous = client.get(URL + "?wsdl")
    foreign = get_wsdl(client, other_key)

    assert anonymous.status_code == 401
    assert ElementTree.fromstring(anonymous.content).findtext("code") == "not_authenticated"
    assert foreign.status_code == 403
    assert ElementTree.fromstring(foreign.content).findtext("code") == "key_not_for_connector"


def test_a_get_without_wsdl_is_refused(client, connector, key):
    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_ACCEPT="application/json")

    assert response.status_code == 405
    assert "?wsdl" in response.json()["detail"]


def test_no_secret_reaches_the_wsdl_the_answers_faults_or_logs(
    client, connector, api_key, credential, caplog
):
    """The intake key, its signing secret and the provider's credential stay out of every new
    surface, also when the key is wrong or revoked."""
    connector.provider.credential = credential
    connector.provider.save()
    record, plain, secret = api_key(connector, signed=True)
    caplog.set_level(logging.DEBUG)
    body = envelope(RECORD).encode()
    headers = {
        "HTTP_" + name.upper().replace("-", "_"): value
        for name, value in signed_headers(secret, body).items()
    }

    answers = [
        get_wsdl(client, plain),
        post11(client, body, key=plain, **headers),
        post11(client, body, key=plain),  # unsigned: a fault
        post12(client, envelope(RECORD, SOAP12), key=plain + "x"),
    ]
    ApiKey.objects.filter(pk=record.pk).update(revoked_at="2026-01-01T00:00:00Z")
    answers.append(post11(client, body, key=plain))

    assert [a.status_code for a in answers] == [200, 200, 401, 401, 401]
    surfaces = [a.content.decode() for a in answers] + [caplog.text]
    for text in surfaces:
        for secret_value in (plain, secret, CANARY_SECRET, record.key_hash):
            assert secret_value not in text
