"""Answers in the request's format: `Accept` first, else the body's type; errors too."""

import csv
import io
import json
from urllib.parse import parse_qs
from xml.etree import ElementTree

import pytest

from connectors.api import answer_formats
from connectors.models import Job
from connectors.sources.webhook import WebhookSource
from tests.worker import drain

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/v1/connectors/invoices/records/"
XML = "<invoice><customer><email>a@b.example</email></customer><text>late</text></invoice>"
CSV = "email,text\r\na@b.example,one\r\nc@d.example,two\r\n"
FORM = "customer.email=a%40b.example&text=one"
JSON = '{"customer": {"email": "a@b.example"}, "text": "one"}'


@pytest.fixture
def connector(make_connector):
    return make_connector(
        "invoices",
        inputs=(("customer.email", "email", True), ("text", "text", True)),
        outputs=(("decision", "ai_decision"),),
        prompt="{{ email }}: {{ text }}",
        output_format="json",
        output_schema={"type": "object", "properties": {"decision": {"enum": ["approve"]}}},
        source_config={"accepts": ["json", "xml", "csv", "form"]},
    )


def post(client, body, content_type, key=None, query="", **headers):
    if key:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client.post(URL + query, body.encode(), content_type, **headers)


def flat_mappings(connector) -> None:
    connector.mappings.filter(source_path="customer.email").update(source_path="email")


def xml_jobs(response) -> list[dict]:
    root = ElementTree.fromstring(response.content)
    assert root.tag == "jobs"
    return [{child.tag: child.text for child in job} for job in root]


def csv_rows(response, encoding="utf-8", delimiter=",") -> list[dict]:
    text = response.content.decode(encoding)
    return list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))


def stored_refs() -> list[dict]:
    return [
        {"id": str(job.id), "status": job.status, "url": f"/api/v1/jobs/{job.id}/"}
        for job in Job.objects.order_by("created_at", "prompt")
    ]


@pytest.mark.parametrize("content_type", ["application/xml", "text/xml"])
def test_an_xml_body_is_answered_in_xml_of_its_own_media_type(client, connector, key, content_type):
    response = post(client, XML, content_type, key)

    assert response.status_code == 202
    assert response["Content-Type"] == f"{content_type}; charset=utf-8"
    assert xml_jobs(response) == stored_refs()


def test_a_csv_body_is_answered_with_a_row_per_job_in_the_connectors_encoding(
    client, connector, key
):
    flat_mappings(connector)
    connector.source_config = WebhookSource.validate_config(
        {"accepts": ["csv"], "delimiter": ";", "encoding": "latin-1"}
    )
    connector.save()
    body = "email;text\r\na@b.example;caf\xe9\r\nc@d.example;two\r\n".encode("latin-1")

    response = client.post(URL, body, "text/csv", HTTP_AUTHORIZATION=f"Bearer {key}")

    assert response.status_code == 202, response.content
    assert response["Content-Type"] == "text/csv; charset=latin-1"
    assert csv_rows(response, "latin-1", ";") == stored_refs()


def test_a_form_is_answered_as_a_form_with_dotted_names(client, connector, key):
    response = post(client, FORM, "application/x-www-form-urlencoded", key)

    assert response.status_code == 202
    assert response["Content-Type"] == "application/x-www-form-urlencoded"
    [job] = stored_refs()
    assert parse_qs(response.content.decode()) == {
        "jobs.id": [job["id"]],
        "jobs.status": [job["status"]],
        "jobs.url": [job["url"]],
    }


def test_json_sent_as_a_form_to_a_json_connector_is_answered_in_json(
    client, make_connector, api_key
):
    """`curl -d '{…}'` labels JSON as a form: it is read and answered as JSON, as always."""
    key = api_key(make_connector("plain"))[1]

    response = client.post(
        "/api/v1/connectors/plain/records/",
        '{"text": "a"}',
        "application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )

    assert response.status_code == 202
    assert response.json()["jobs"][0]["status"] == "queued"


@pytest.mark.parametrize(
    ("body", "content_type", "accept", "answered"),
    [
        (XML, "application/xml", "application/json", "application/json"),
        (JSON, "application/json", "application/xml", "application/xml; charset=utf-8"),
        (
            JSON,
            "application/json",
            "text/html, text/csv;q=0.5, */*;q=0.1",
            "text/csv; charset=utf-8",
        ),
        (JSON, "application/json", "*/*", "application/json"),
        (XML, "application/xml", "*/*", "application/xml; charset=utf-8"),
        (
            CSV,
            "text/csv",
            "text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2",
            "text/csv; charset=utf-8",
        ),
        (FORM, "application/x-www-form-urlencoded", "text/xml", "text/xml; charset=utf-8"),
    ],
)
def test_accept_chooses_the_answers_format_and_wildcards_leave_it_to_the_body(
    client, connector, key, body, content_type, accept, answered
):
    if content_type == "text/csv":
        flat_mappings(connector)

    response = post(client, body, content_type, key, HTTP_ACCEPT=accept)

    assert response.status_code == 202, response.content
    assert response["Content-Type"] == answered


def test_errors_are_answered_in_the_bodys_format(client, connector, key):
    flat_mappings(connector)
    xml = post(client, "<invoice><text>a</invoice>", "application/xml", key)
    rows = post(client, "email,text\r\na@b.example,one\r\nonly one field\r\n", "text/csv", key)
    form = post(client, "text=no+email", "application/x-www-form-urlencoded", key)

    error = ElementTree.fromstring(xml.content)
    assert (xml.status_code, error.tag, error.findtext("code")) == (400, "error", "invalid_body")
    assert "not well-formed" in error.findtext("detail")
    assert rows.status_code == 400
    assert csv_rows(rows) == [
        {
            "code": "invalid_record",
            "detail": "Row 2 (line 3) expected 2 fields, found 1; nothing was accepted.",
            "index": "1",
        }
    ]
    assert form.status_code == 422
    assert parse_qs(form.content.decode())["code"] == ["missing_field"]
    assert parse_qs(form.content.decode())["field"] == ["email"]
    assert Job.objects.count() == 0


def test_a_refusal_before_the_key_is_known_follows_the_label(client, connector):
    """An XML or CSV caller with a wrong key reads its own format; a form label is JSON then,
    as it may be `curl -d` JSON."""
    xml = post(client, XML, "text/xml", "ilk_wrong")
    rows = post(client, CSV, "text/csv", "ilk_wrong")
    form = post(client, FORM, "application/x-www-form-urlencoded", "ilk_wrong")

    assert ElementTree.fromstring(xml.content).findtext("code") == "invalid_api_key"
    assert csv_rows(rows)[0]["code"] == "invalid_api_key"
    assert form.json()["code"] == "invalid_api_key"
    assert [xml.status_code, rows.status_code, form.status_code] == [401, 401, 401]


def test_a_finished_job_in_xml_and_csv_carries_its_result(client, connector, key):
    post(client, XML, "application/xml", key, HTTP_IDEMPOTENCY_KEY="inv-1")
    drain()

    xml = post(client, XML, "application/xml", key, "?wait=1", HTTP_IDEMPOTENCY_KEY="inv-1")
    rows = post(
        client,
        XML,
        "application/xml",
        key,
        "?wait=1",
        HTTP_IDEMPOTENCY_KEY="inv-1",
        HTTP_ACCEPT="text/csv",
    )

    assert xml.status_code == rows.status_code == 200
    [job] = ElementTree.fromstring(xml.content)
    assert job.findtext("status") == "succeeded"
    assert job.findtext("result/ai_decision") == "approve"
    assert job.find("error").text is None and list(job.find("error")) == []  # null: empty
    assert job.findtext("tokens/input") == str(Job.objects.get().tokens_in)
    [row] = csv_rows(rows)
    assert (row["status"], row["result.ai_decision"], row["error"]) == ("succeeded", "approve", "")


def test_a_job_is_read_in_the_format_accept_names(client, connector, key):
    job_url = post(client, JSON, "application/json", key).json()["jobs"][0]["url"]

    xml = client.get(job_url, HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_ACCEPT="application/xml")
    default = client.get(job_url, HTTP_AUTHORIZATION=f"Bearer {key}")

    root = ElementTree.fromstring(xml.content)
    assert (root.tag, root.findtext("status")) == ("job", "queued")
    assert default.json()["status"] == "queued"


def test_csv_answers_are_formula_safe_and_xml_answers_hold_any_text():
    data = {"jobs": [{"id": "1", "result": {"note": '=HYPERLINK("x")', "odd key": "\x00a"}}]}

    text = answer_formats.to_csv(data, 200)
    xml = ElementTree.fromstring(answer_formats.to_xml(data, 200))

    assert list(csv.reader(io.StringIO(text)))[1] == ["1", '\'=HYPERLINK("x")', "\x00a"]
    assert xml.findtext("job/result/note") == '=HYPERLINK("x")'
    assert xml.findtext("job/result/odd_key") == "\ufffda"
    assert json.loads(answer_formats.form_value([1, 2])) == [1, 2]
