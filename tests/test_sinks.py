"""Sinks: the signed HTTP callback and the job-API-only sink."""

import pytest

from connectors.errors import SinkError
from connectors.sinks.base import Delivery
from connectors.sinks.http import HttpSink
from connectors.sinks.none import NoSink
from tests.conftest import CANARY_SECRET

SIGNING_SECRET = "whsec_" + "c2VjcmV0LXNpZ25pbmcta2V5LWZvci1jYWxsYmFja3M="
DELIVERY = Delivery(
    job_id="3f1c2d4e-0000-4000-8000-000000000001",
    connector="invoices",
    source_reference="webhook msg_1",
    result={"ai_decision": "approve"},
    attempt=1,
)


def sink(url: str, **secrets) -> HttpSink:
    config = {"url": url, "credential": "erp", "signing_credential": "erp-signing"}
    return HttpSink(config, secrets)


def test_posts_the_result_signed_with_the_job_id(callback_server):
    outcome = sink(
        callback_server.url, credential=CANARY_SECRET, signing_credential=SIGNING_SECRET
    ).write(DELIVERY)

    [(headers, _, body)] = callback_server.received
    assert body == {
        "job_id": DELIVERY.job_id,
        "connector": "invoices",
        "source_reference": "webhook msg_1",
        "result": {"ai_decision": "approve"},
        "attempt": 1,
    }
    assert headers["webhook-id"] == headers["idempotency-key"] == DELIVERY.job_id
    assert headers["authorization"] == f"Bearer {CANARY_SECRET}"
    assert callback_server.verify(SIGNING_SECRET, 0)
    assert not callback_server.verify("whsec_" + "b3RoZXItc2VjcmV0LWtleS0xMjM0NTY3ODkw", 0)
    assert (outcome.target, outcome.status, outcome.detail) == (callback_server.url, "200", "")


def test_every_attempt_carries_the_same_webhook_id(callback_server):
    target = sink(callback_server.url)
    target.write(DELIVERY)
    target.write(Delivery(**{**DELIVERY.__dict__, "attempt": 2}))

    assert {headers["webhook-id"] for headers, _, _ in callback_server.received} == {
        DELIVERY.job_id
    }


@pytest.mark.parametrize(("status", "permanent"), [(503, False), (429, False), (400, True)])
def test_failures_are_classified(callback_server, status, permanent):
    callback_server.script([status])

    with pytest.raises(SinkError) as caught:
        sink(callback_server.url, credential=CANARY_SECRET).write(DELIVERY)

    assert caught.value.permanent is permanent
    assert CANARY_SECRET not in str(caught.value)


def test_conflict_means_already_written(callback_server):
    callback_server.script([409])

    outcome = sink(callback_server.url).write(DELIVERY)

    assert (outcome.status, outcome.detail) == ("409", "already written")


def test_basic_auth(callback_server):
    HttpSink({"url": callback_server.url, "auth": "basic"}, {"credential": "erp:pw"}).write(
        DELIVERY
    )

    assert callback_server.received[0][0]["authorization"] == "Basic ZXJwOnB3"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "needs a url"),
        ({"url": "ftp://x"}, "http:// or https://"),
        ({"url": "https://x", "colour": "red"}, "unknown keys colour"),
        ({"url": "https://x", "auth": "digest"}, "auth must be"),
        ({"url": "https://x", "timeout": 0}, "timeout"),
        ({"url": "https://x", "headers": {"Authorization": "x"}}, "with a credential"),
    ],
)
def test_http_sink_config_is_validated(config, message):
    with pytest.raises(ValueError, match=message):
        HttpSink.validate_config(config)


def test_none_sink_stores_for_the_job_api():
    outcome = NoSink({}, {}).write(DELIVERY)

    assert (outcome.target, outcome.status) == ("job API", "stored")
    assert not NoSink.can_restore_tokens
    with pytest.raises(ValueError):
        NoSink.validate_config({"url": "x"})


def test_test_connection_sends_the_credential_and_explains_refusals(callback_server):
    target = sink(callback_server.url, credential=CANARY_SECRET)

    assert target.test_connection() == f"OK: {callback_server.url} answered HTTP 200"
    assert callback_server.received[0][0]["authorization"] == f"Bearer {CANARY_SECRET}"

    callback_server.script([401, 404])
    with pytest.raises(SinkError, match="the credential was refused"):
        target.test_connection()
    with pytest.raises(SinkError, match="check the URL's path"):
        target.test_connection()


def test_test_connection_to_nothing_says_it_cannot_connect():
    with pytest.raises(SinkError, match="cannot connect"):
        sink("http://127.0.0.1:1/cb").test_connection()
