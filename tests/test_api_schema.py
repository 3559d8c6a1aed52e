"""The OpenAPI schema says what the API really answers: every documented status of every
operation is produced by a real request, and its body is validated against the schema."""

import json
import re
import time
import uuid
from pathlib import Path
from xml.etree import ElementTree

import pytest
from django.db import connection
from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker

from connectors.api import schema as api_schema
from connectors.api.authentication import SIGNATURE_ERRORS
from connectors.errors import ConfigError, MappingError, RedactionError, UnstorableValue
from tests.conftest import post_records
from tests.test_intake import make_the_database_unreachable
from tests.test_review_api import REVIEW_CASES, REVIEW_REFUSALS
from tests.worker import drain

pytestmark = pytest.mark.django_db(transaction=True)

RECORDS = "/api/v1/connectors/{slug}/records/"
JOB = "/api/v1/jobs/{job_id}/"
HEALTH = "/api/v1/health/"
ERROR = {"$ref": "#/components/schemas/Error"}


@pytest.fixture
def connector(make_connector):
    return make_connector("invoices")


@pytest.fixture
def openapi(client):
    response = client.get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def bearer(key: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def job_url(client, key: str) -> str:
    return post_records(client, "invoices", {"text": "a"}, key=key).json()["jobs"][0]["url"]


def one_request_per_minute(connector) -> None:
    while time.time() % 60 > 55:  # both requests must fall in one minute's count
        time.sleep(0.5)
    connector.source_config = {"requests_per_minute": 1}
    connector.save()


def records_finished(client, key, **_):
    headers = {"Idempotency-Key": "finished-1"}
    post_records(client, "invoices", {"text": "a"}, key=key, headers=headers)
    drain()
    return post_records(
        client, "invoices", {"text": "a"}, key=key, headers=headers, query="?wait=1"
    )


def records_for_another_connector(client, key, make_connector, **_):
    make_connector("other")
    return post_records(client, "other", {"text": "a"}, key=key)


def records_reusing_a_key(client, key, **_):
    post_records(client, "invoices", {"text": "a"}, key=key, headers={"Idempotency-Key": "k"})
    return post_records(
        client, "invoices", {"text": "b"}, key=key, headers={"Idempotency-Key": "k"}
    )


def records_too_large(client, key, settings, **_):
    settings.INTAKE_MAX_BODY_BYTES = 10
    return post_records(client, "invoices", {"text": "more than ten bytes"}, key=key)


def records_over_the_rate(client, key, connector, **_):
    one_request_per_minute(connector)
    post_records(client, "invoices", {"text": "a"}, key=key)
    return post_records(client, "invoices", {"text": "b"}, key=key)


def records_for_a_disabled_connector(client, key, connector, **_):
    connector.is_enabled = False
    connector.save()
    return post_records(client, "invoices", {"text": "a"}, key=key)


def job_with_a_bad_webhook_id(client, key, connector, api_key, **_):
    url = job_url(client, key)
    signing_key = api_key(connector, signed=True)[1]
    return client.get(url, **bearer(signing_key), HTTP_WEBHOOK_ID="m" * 256)


def job_from_another_network(client, key, connector, api_key, **_):
    url = job_url(client, key)
    record, restricted_key, _ = api_key(connector)
    record.allowed_networks = ["10.0.0.0/8"]
    record.save()
    return client.get(url, **bearer(restricted_key))


def job_over_the_rate(client, key, connector, **_):
    one_request_per_minute(connector)
    url = job_url(client, key)
    return client.get(url, **bearer(key))


def job_without_a_database(client, key, monkeypatch, **_):
    url = job_url(client, key)
    make_the_database_unreachable(monkeypatch)
    try:
        return client.get(url, **bearer(key))
    finally:
        monkeypatch.undo()
        connection.close()


def wsdl(client, slug="invoices", key=None):
    headers = {**bearer(key), "HTTP_ACCEPT": "application/json"} if key else {}
    return client.get(RECORDS.format(slug=slug) + "?wsdl", **headers)


def wsdl_over_the_rate(client, key, connector, **_):
    one_request_per_minute(connector)
    wsdl(client, key=key)
    return wsdl(client, key=key)


def wsdl_of_a_disabled_connector(client, key, connector, **_):
    connector.is_enabled = False
    connector.save()
    return wsdl(client, key=key)


def health_without_redis(client, settings, **_):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    return client.get(HEALTH)


# (path, method, status) -> a real request that gets that answer.
CASES = {
    (RECORDS, "post", 202): lambda client, key, **_: post_records(
        client, "invoices", {"records": [{"text": "a"}, {"text": "b"}]}, key=key
    ),
    (RECORDS, "post", 200): records_finished,
    (RECORDS, "post", 400): lambda client, key, **_: post_records(
        client, "invoices", None, key=key, raw="{not json"
    ),
    (RECORDS, "post", 401): lambda client, **_: post_records(
        client, "invoices", {"text": "a"}, key="ilk_wrong"
    ),
    (RECORDS, "post", 403): records_for_another_connector,
    (RECORDS, "post", 404): lambda client, key, **_: post_records(
        client, "nope", {"text": "a"}, key=key
    ),
    (RECORDS, "post", 409): records_reusing_a_key,
    (RECORDS, "post", 413): records_too_large,
    (RECORDS, "post", 415): lambda client, key, **_: client.post(
        RECORDS.format(slug="invoices"),
        "<r><text>a</text></r>",
        "application/xml",
        **bearer(key),
        HTTP_ACCEPT="application/json",
    ),
    (RECORDS, "post", 422): lambda client, key, **_: post_records(
        client, "invoices", {"records": [{"text": "a"}, {"no": "text"}]}, key=key
    ),
    (RECORDS, "post", 429): records_over_the_rate,
    (RECORDS, "post", 503): records_for_a_disabled_connector,
    (RECORDS, "get", 200): lambda client, key, **_: client.get(
        RECORDS.format(slug="invoices") + "?wsdl", **bearer(key)
    ),
    (RECORDS, "get", 401): lambda client, **_: client.get(
        RECORDS.format(slug="invoices") + "?wsdl", HTTP_ACCEPT="application/json"
    ),
    (RECORDS, "get", 403): lambda client, key, make_connector, **_: (
        make_connector("other") and wsdl(client, "other", key)
    ),
    (RECORDS, "get", 404): lambda client, key, **_: wsdl(client, "nope", key),
    (RECORDS, "get", 429): wsdl_over_the_rate,
    (RECORDS, "get", 503): wsdl_of_a_disabled_connector,
    (JOB, "get", 200): lambda client, key, **_: client.get(job_url(client, key), **bearer(key)),
    (JOB, "get", 400): job_with_a_bad_webhook_id,
    (JOB, "get", 401): lambda client, key, **_: client.get(job_url(client, key)),
    (JOB, "get", 403): job_from_another_network,
    (JOB, "get", 404): lambda client, key, **_: client.get(
        f"/api/v1/jobs/{uuid.uuid4()}/", **bearer(key)
    ),
    (JOB, "get", 429): job_over_the_rate,
    (JOB, "get", 503): job_without_a_database,
    (HEALTH, "get", 200): lambda client, **_: client.get(HEALTH),
    (HEALTH, "get", 503): health_without_redis,
    **REVIEW_CASES,
}


def documented_response(openapi: dict, path: str, method: str, status: int) -> dict:
    responses = openapi["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} answered an undocumented {status}"
    return responses[str(status)]


def assert_matches_schema(openapi: dict, documented: dict, body) -> None:
    body_schema = documented["content"]["application/json"]["schema"]
    # The operation's schema with the components beside it, so that its $refs resolve.
    validator = OAS30ReadValidator(
        {**body_schema, "components": openapi["components"]}, format_checker=oas30_format_checker
    )
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
    assert not errors, f"{json.dumps(body)[:500]} does not match the schema: {errors}"


@pytest.mark.parametrize(("path", "method", "status"), list(CASES), ids=str)
def test_a_real_answer_matches_its_documented_schema(
    openapi,
    path,
    method,
    status,
    client,
    connector,
    key,
    api_key,
    make_connector,
    settings,
    monkeypatch,
):
    response = CASES[path, method, status](
        client=client,
        key=key,
        connector=connector,
        api_key=api_key,
        make_connector=make_connector,
        settings=settings,
        monkeypatch=monkeypatch,
    )

    assert response.status_code == status, response.content[:300]
    documented = documented_response(openapi, path, method, status)
    if "application/json" not in documented["content"]:  # the WSDL
        assert response["Content-Type"].split(";")[0] in documented["content"]
        assert ElementTree.fromstring(response.content).tag.endswith("}definitions")
        return
    body = response.json()
    assert_matches_schema(openapi, documented, body)
    if documented["content"]["application/json"]["schema"] == ERROR:
        assert set(body) <= set(openapi["components"]["schemas"]["Error"]["properties"])
        assert f"`{body['code']}`" in documented["description"]  # listed under its status


def test_every_documented_answer_is_checked_with_a_real_request(openapi):
    documented = {
        (path, method, int(status))
        for path, operations in openapi["paths"].items()
        for method, operation in operations.items()
        for status in operation["responses"]
    }

    assert documented == set(CASES)


def codes_the_api_sends() -> set[tuple[int, str]]:
    """Every (status, code) the API code can answer, read from its source and error tables."""
    api = Path(api_schema.__file__).parent
    literal = re.compile(r'ApiError\(\s*(?:status\.HTTP_)?(\d{3})\w*,\s*"(\w+)"')
    sent = {
        (int(status), code)
        for source in api.glob("*.py")
        for status, code in literal.findall(source.read_text())
    }
    sent |= {(401, code) for code, _ in SIGNATURE_ERRORS.values()}
    sent |= {(401, "not_authenticated"), (503, "database_unavailable"), (404, "not_found")}
    # A refused record (views.rejection): its pipeline error's code, "missing_field" for mapping.
    rejected = {UnstorableValue.code, RedactionError.code, ConfigError.code}
    sent |= {(422, code) for code in rejected} | {(422, "missing_field")}
    sent |= {(409, "idempotency_key_reused")} | REVIEW_REFUSALS
    assert MappingError.code == "mapping_error"  # the one views.rejection renames
    return sent


def test_every_error_code_is_documented_under_its_status(openapi):
    enum = set(openapi["components"]["schemas"]["CodeEnum"]["enum"])
    documented = {
        (status, code) for status, meanings in api_schema.ERRORS.items() for code in meanings
    }

    assert codes_the_api_sends() == documented
    assert enum == {code for _, code in documented}


def test_the_idempotency_key_limits_are_documented(openapi):
    parameters = openapi["paths"][RECORDS]["post"]["parameters"]
    [idempotency_key] = [p for p in parameters if p["name"] == "Idempotency-Key"]

    assert idempotency_key["schema"]["maxLength"] == 200
    pattern = re.compile(idempotency_key["schema"]["pattern"])
    assert pattern.match("inv-42") and not pattern.match("has space") and not pattern.match("")
