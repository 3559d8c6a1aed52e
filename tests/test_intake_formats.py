"""The intake's other body types: XML, CSV and forms, through the real API."""

import pytest

from connectors.models import FieldMapping, Job, WebhookReceipt
from connectors.sources.webhook import WebhookSource
from tests.test_intake import signed_headers

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/v1/connectors/invoices/records/"
ALL_TYPES = ["json", "xml", "csv", "form"]
XML = "application/xml"
CSV = "text/csv"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def connector(make_connector):
    return make_connector(
        "invoices",
        inputs=(("customer.email", "email", True), ("text", "text", True)),
        prompt="{{ email }}: {{ text }}",
        source_config={"accepts": ALL_TYPES},
    )


def post(client, key, body, content_type, headers=None):
    """Asks for JSON answers (tests/test_answer_formats.py covers the others)."""
    headers = {"Accept": "application/json", **(headers or {})}
    extra = {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}
    data = body if isinstance(body, bytes) else body.encode()
    return client.post(URL, data, content_type, HTTP_AUTHORIZATION=f"Bearer {key}", **extra)


def configure(connector, **config) -> None:
    connector.source_config = WebhookSource.validate_config({"accepts": ALL_TYPES, **config})
    connector.save()


def map_flat_fields(connector) -> None:
    """CSV columns are flat: read the email from `email`."""
    connector.mappings.filter(source_path="customer.email").update(source_path="email")


def prompts() -> list[str]:
    return list(Job.objects.order_by("created_at", "prompt").values_list("prompt", flat=True))


def assert_refused(response, status, code) -> dict:
    assert response.status_code == status, response.content[:300]
    body = response.json()
    assert body["code"] == code and body["detail"]
    assert Job.objects.count() == 0
    return body


# --- XML ----------------------------------------------------------------------------------

ONE_XML = """<?xml version="1.0"?>
<invoice xmlns="urn:erp"><customer><email>a@b.example</email></customer><text>late</text>
<line>1</line><line>2</line></invoice>"""

MANY_XML = """<export xmlns:e="urn:erp"><e:invoices>
<e:invoice id="1"><customer><email>a@b.example</email></customer><text>one</text></e:invoice>
<e:invoice id="2"><customer><email>c@d.example</email></customer><text>two</text></e:invoice>
</e:invoices></export>"""


@pytest.mark.parametrize("content_type", [XML, "text/xml; charset=utf-8"])
def test_an_xml_root_element_is_one_record_with_namespaces_and_repeated_children(
    client, connector, key, content_type
):
    FieldMapping.objects.create(
        connector=connector, direction="input", source_path="line[1]", target_name="line"
    )

    response = post(client, key, ONE_XML, content_type)

    assert response.status_code == 202, response.content
    job = Job.objects.get(id=response.json()["jobs"][0]["id"])
    assert job.prompt == "a@b.example: late"
    assert job.input_data == {"email": "a@b.example", "text": "late", "line": "2"}


def test_every_record_element_of_an_xml_body_is_a_record(client, connector, key):
    configure(connector, record_element="invoice")

    response = post(client, key, MANY_XML, XML)

    assert response.status_code == 202, response.content
    assert len(response.json()["jobs"]) == 2
    assert prompts() == ["a@b.example: one", "c@d.example: two"]


def test_xml_without_the_record_element_is_refused(client, connector, key):
    configure(connector, record_element="order")

    body = assert_refused(post(client, key, MANY_XML, XML), 400, "invalid_body")
    assert "<order>" in body["detail"]


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]>
<invoice><customer><email>a@b.example</email></customer><text>&lol2;</text></invoice>"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE invoice [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<invoice><customer><email>a@b.example</email></customer><text>&secret;</text></invoice>"""
DTD_ONLY = """<?xml version="1.0"?><!DOCTYPE invoice SYSTEM "http://127.0.0.1:1/evil.dtd">
<invoice><text>a</text></invoice>"""


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY, DTD_ONLY])
def test_hostile_xml_is_refused_and_stores_nothing(client, connector, key, body):
    refused = assert_refused(post(client, key, body, XML), 400, "invalid_body")

    assert "DTDs and entities are not allowed" in refused["detail"]


@pytest.mark.parametrize("body", ["<invoice><text>a</invoice>", "not xml", "<a/><b/>"])
def test_xml_that_is_not_well_formed_is_a_400(client, connector, key, body):
    refused = assert_refused(post(client, key, body, XML), 400, "invalid_body")

    assert "not well-formed" in refused["detail"]


def test_xml_nested_too_deeply_is_refused(client, connector, key):
    body = "<invoice>" + "<a>" * 80 + "x" + "</a>" * 80 + "</invoice>"

    refused = assert_refused(post(client, key, body, XML), 400, "invalid_body")

    assert refused["limit"] == 64


def test_the_batch_limit_counts_xml_records(client, connector, key, settings):
    configure(connector, record_element="invoice")
    settings.INTAKE_MAX_BATCH = 1

    refused = assert_refused(post(client, key, MANY_XML, XML), 413, "batch_too_large")

    assert refused["limit"] == 1


# --- CSV ----------------------------------------------------------------------------------

CSV_BODY = 'email,text\r\na@b.example,one\r\nc@d.example,"two, quoted"\r\n'


def test_each_csv_row_is_a_record(client, connector, key):
    map_flat_fields(connector)

    response = post(client, key, CSV_BODY, CSV)

    assert response.status_code == 202, response.content
    assert len(response.json()["jobs"]) == 2
    assert Job.objects.get(prompt="c@d.example: two, quoted").input_data == {
        "email": "c@d.example",
        "text": "two, quoted",
    }


def test_csv_delimiter_encoding_and_header_come_from_the_connector(client, connector, key):
    configure(connector, delimiter=";", encoding="latin-1", header=False)
    connector.mappings.filter(source_path="customer.email").update(source_path="column1")
    connector.mappings.filter(source_path="text").update(source_path="column2")

    response = post(client, key, "m\xfcller@b.example;gr\xfc\xdfe\n".encode("latin-1"), CSV)

    assert response.status_code == 202, response.content
    assert prompts() == ["m\xfcller@b.example: gr\xfc\xdfe"]


def test_a_csv_row_with_the_wrong_number_of_fields_is_named_and_nothing_is_stored(
    client, connector, key
):
    map_flat_fields(connector)
    body = "email,text\na@b.example,one\nc@d.example,two,three\ne@f.example,four\n"

    refused = assert_refused(post(client, key, body, CSV), 400, "invalid_record")

    assert refused["index"] == 1
    assert refused["detail"] == ("Row 2 (line 3) expected 2 fields, found 3; nothing was accepted.")


def test_a_csv_body_in_another_encoding_is_a_clear_400(client, connector, key):
    map_flat_fields(connector)
    body = "email,text\na@b.example,ok\nc@d.example,gr\xfc\xdfe\n".encode("latin-1")

    refused = assert_refused(post(client, key, body, CSV), 400, "invalid_record")

    assert refused["index"] == 1
    assert refused["detail"] == ("Row 2 (line 3) cannot be decoded as utf-8; nothing was accepted.")


def test_a_csv_charset_that_is_not_the_connectors_encoding_is_a_400(client, connector, key):
    map_flat_fields(connector)

    refused = assert_refused(
        post(client, key, "email,text\na@b.example,ok\n", "text/csv; charset=latin-1"),
        400,
        "invalid_body",
    )

    assert "charset=latin-1" in refused["detail"] and "utf-8" in refused["detail"]


def test_a_csv_header_naming_a_field_twice_is_refused(client, connector, key):
    assert_refused(post(client, key, "text,text\na,b\n", CSV), 400, "invalid_body")


def test_the_batch_limit_counts_csv_rows(client, connector, key, settings):
    map_flat_fields(connector)
    settings.INTAKE_MAX_BATCH = 1

    refused = assert_refused(post(client, key, CSV_BODY, CSV), 413, "batch_too_large")

    assert refused["limit"] == 1


def test_a_csv_with_a_header_and_no_rows_is_refused(client, connector, key):
    assert_refused(post(client, key, "email,text\n", CSV), 400, "invalid_body")


# --- Forms --------------------------------------------------------------------------------


def test_a_form_is_one_record_with_dotted_names_as_paths(client, connector, key):
    FieldMapping.objects.create(
        connector=connector, direction="input", source_path="tags", target_name="tags"
    )
    body = "customer.email=a%40b.example&text=caf%C3%A9+late&tags=x&tags=y&empty="

    response = post(client, key, body, FORM)

    assert response.status_code == 202, response.content
    [job] = Job.objects.all()
    assert job.input_data == {"email": "a@b.example", "text": "caf\xe9 late", "tags": ["x", "y"]}
    assert job.prompt == "a@b.example: caf\xe9 late"


@pytest.mark.parametrize(
    "body",
    ["customer=x&customer.email=a", "customer.email=a&customer=x", "a..b=1", "text=%FF"],
)
def test_a_form_that_no_record_can_hold_is_refused(client, connector, key, body):
    assert_refused(post(client, key, body, FORM), 400, "invalid_body")


def test_a_form_name_nested_too_deeply_is_refused(client, connector, key):
    body = ".".join(["a"] * 80) + "=1"

    refused = assert_refused(post(client, key, body, FORM), 400, "invalid_body")

    assert refused["limit"] == 64


# --- Every format ---------------------------------------------------------------------------

BODIES = {
    "xml": (XML, ONE_XML),
    "csv": (CSV, "email,text\na@b.example,one\n"),
    "form": (FORM, "customer.email=a%40b.example&text=one"),
}


def test_a_type_the_connector_does_not_accept_is_a_415_naming_the_accepted_ones(
    client, connector, key
):
    configure(connector, accepts=["json", "csv"])

    refused = assert_refused(post(client, key, ONE_XML, XML), 415, "unsupported_media_type")

    assert refused["accepted"] == ["application/json", "text/csv"]
    assert refused["detail"] == (
        "This connector accepts application/json, text/csv; the body is application/xml."
    )


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "application/vnd.erp.invoice+json"]
)
def test_json_is_still_read_when_other_types_are_accepted(client, connector, key, content_type):
    body = '{"customer": {"email": "a@b.example"}, "text": "one"}'

    response = post(client, key, body, content_type)

    assert response.status_code == 202, response.content
    assert prompts() == ["a@b.example: one"]


@pytest.mark.parametrize("kind", ["xml", "csv"])
def test_a_connector_accepts_json_only_unless_it_says_otherwise(
    client, make_connector, api_key, kind
):
    make_connector("invoices")
    key = api_key(make_connector("plain"))[1]
    content_type, body = BODIES[kind]

    response = client.post(
        "/api/v1/connectors/plain/records/",
        body,
        content_type,
        HTTP_AUTHORIZATION=f"Bearer {key}",
        HTTP_ACCEPT="application/json",
    )

    assert response.status_code == 415
    assert response.json()["accepted"] == ["application/json"]
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/octet-stream"]
)
def test_a_json_connector_reads_json_sent_under_another_label(
    client, make_connector, api_key, content_type
):
    """Legacy systems send JSON as text/plain or as a form (curl -d): it is read as before."""
    key = api_key(make_connector("plain"))[1]

    response = client.post(
        "/api/v1/connectors/plain/records/",
        '{"text": "mislabelled"}',
        content_type,
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )

    assert response.status_code == 202, response.content
    assert Job.objects.get().input_data == {"text": "mislabelled"}


@pytest.mark.parametrize("kind", ["xml", "csv", "form"])
def test_an_oversize_body_is_a_413(client, connector, key, settings, kind):
    settings.INTAKE_MAX_BODY_BYTES = 20
    content_type, body = BODIES[kind]

    refused = assert_refused(post(client, key, body, content_type), 413, "body_too_large")

    assert refused["limit"] == 20


@pytest.mark.parametrize("kind", ["xml", "csv", "form"])
def test_an_idempotency_key_returns_the_same_jobs_for_every_format(client, connector, key, kind):
    if kind == "csv":
        map_flat_fields(connector)
    content_type, body = BODIES[kind]
    headers = {"Idempotency-Key": f"inv-{kind}"}

    first = post(client, key, body, content_type, headers)
    again = post(client, key, body, content_type, headers)

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["jobs"] == first.json()["jobs"]
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert Job.objects.count() == 1


@pytest.mark.parametrize("kind", ["xml", "csv", "form"])
def test_a_signed_request_is_verified_over_the_raw_body_for_every_format(
    client, connector, api_key, kind
):
    if kind == "csv":
        map_flat_fields(connector)
    _, plain, secret = api_key(connector, signed=True)
    content_type, body = BODIES[kind]
    raw = body.encode()

    accepted = post(client, plain, raw, content_type, signed_headers(secret, raw))
    tampered = post(client, plain, raw + b" ", content_type, signed_headers(secret, raw))

    assert accepted.status_code == 202, accepted.content
    assert tampered.status_code == 401
    assert tampered.json()["code"] == "invalid_signature"
    assert Job.objects.count() == 1
    assert WebhookReceipt.objects.count() == 1


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"accepts": ["json", "yaml"]}, "unknown body type 'yaml'"),
        ({"accepts": []}, "at least one"),
        ({"accepts": "xml"}, "list of texts"),
        ({"delimiter": ";;"}, "one character"),
        ({"encoding": "klingon"}, "unknown"),
        ({"record_element": "two words"}, "element name"),
        ({"header": "yes"}, "true or false"),
    ],
)
def test_the_body_settings_are_validated(config, message):
    with pytest.raises(ValueError, match=message):
        WebhookSource.validate_config(config)


def test_the_body_settings_have_defaults_that_are_not_stored():
    assert WebhookSource.validate_config({}) == {}
    assert WebhookSource.intake_body_settings({}) == {
        "accepts": ["json"],
        "record_element": "",
        "delimiter": ",",
        "encoding": "utf-8",
        "header": True,
    }
