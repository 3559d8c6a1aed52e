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


OAUTH2_CONFIG = {"url": "https://x", "auth": "oauth2", "client_id": "a", "credential": "c"}


def oauth2_sink(callback_server, token_server) -> HttpSink:
    config = {
        "url": callback_server.url,
        "auth": "oauth2",
        "token_url": token_server.url,
        "client_id": "erp-client",
        "scope": "callbacks",
        "credential": "erp-oauth",
    }
    return HttpSink(HttpSink.validate_config(config), {"credential": CANARY_SECRET})


def test_oauth2_fetches_one_token_and_sends_it_with_every_callback(callback_server, token_server):
    target = oauth2_sink(callback_server, token_server)
    target.write(DELIVERY)
    target.write(DELIVERY)

    assert token_server.requests == [
        {
            "grant_type": "client_credentials",
            "client_id": "erp-client",
            "client_secret": CANARY_SECRET,
            "scope": "callbacks",
        }
    ]
    authorizations = [headers["authorization"] for headers, _, _ in callback_server.received]
    assert authorizations == ["Bearer access-1", "Bearer access-1"]


def test_a_refused_access_token_is_replaced_on_the_next_attempt(callback_server, token_server):
    callback_server.script([401])
    target = oauth2_sink(callback_server, token_server)

    with pytest.raises(SinkError) as caught:
        target.write(DELIVERY)
    target.write(DELIVERY)

    assert not caught.value.permanent
    authorizations = [headers["authorization"] for headers, _, _ in callback_server.received]
    assert authorizations == ["Bearer access-1", "Bearer access-2"]


@pytest.mark.parametrize(
    ("status", "error", "permanent", "message"),
    [
        (401, "invalid_client", True, "HTTP 401: invalid_client"),
        (400, "invalid_scope", True, "check the client id, secret and scope"),
        (503, "temporarily_unavailable", False, "HTTP 503"),
    ],
)
def test_token_endpoint_refusals_are_named_and_never_echo_the_secret(
    callback_server, token_server, status, error, permanent, message
):
    description = f"client secret {CANARY_SECRET} is wrong"  # a careless server echoes it
    token_server.script([(status, {"error": error, "error_description": description})])

    with pytest.raises(SinkError) as caught:
        oauth2_sink(callback_server, token_server).write(DELIVERY)

    assert caught.value.permanent is permanent
    assert message in str(caught.value)
    assert CANARY_SECRET not in str(caught.value)
    assert callback_server.received == []  # nothing is sent without a token


def test_oauth2_test_connection_fetches_a_token(callback_server, token_server):
    assert oauth2_sink(callback_server, token_server).test_connection().startswith("OK")

    [(headers, _, _)] = callback_server.received
    assert headers["authorization"] == "Bearer access-1"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "missing url"),
        ({"url": "https://x", "auth": "oauth2"}, "needs token_url, client_id, credential"),
        (
            {
                "url": "https://x",
                "auth": "oauth2",
                "token_url": "x",
                "client_id": "a",
                "credential": "c",
            },
            "token_url must be",
        ),
        ({"url": "https://x", "client_id": "a"}, "are for auth: oauth2"),
        ({"url": "ftp://x"}, "http:// or https://"),
        ({"url": "https://x", "colour": "red"}, "unknown keys colour"),
        (
            {"url": "https://x", "auth": "digest"},
            "auth must be one of bearer, basic, header, oauth2",
        ),
        ({"url": "https://x", "timeout": 0}, "timeout"),
        ({"url": "https://x", "headers": {"Authorization": "x"}}, "put it in a credential"),
        ({"url": "https://x", "headers": {"X-Api-Key": "x"}}, "X-Api-Key would keep a secret"),
        ({"url": "https://x", "auth": "header"}, "auth: header needs header"),
        ({"url": "https://x", "auth": "header", "header": "X Key"}, "a header name"),
    ],
)
def test_http_sink_config_is_validated(config, message):
    with pytest.raises(ValueError, match=message):
        HttpSink.validate_config(config)


def test_a_credential_can_go_in_a_named_header(callback_server):
    config = {
        "url": callback_server.url,
        "auth": "header",
        "header": "X-Api-Key",
        "credential": "c",
    }

    HttpSink(HttpSink.validate_config(config), {"credential": CANARY_SECRET}).write(DELIVERY)

    [(headers, _, _)] = callback_server.received
    assert headers["x-api-key"] == CANARY_SECRET and "authorization" not in headers


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
