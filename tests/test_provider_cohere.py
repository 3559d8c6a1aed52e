"""The cohere kind against a local server speaking Cohere's Chat API v2."""

import pytest

from connectors.errors import ProviderError
from connectors.providers.base import ProviderConfig
from connectors.providers.cohere import CohereProvider
from tests.conftest import CANARY_SECRET

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["decision"],
    "properties": {
        "decision": {"enum": ["approve", "reject"]},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 3},
    },
}


def cohere(server, *, model="command-test", parameters=None, secret=CANARY_SECRET):
    config = ProviderConfig("cohere", server.base_url, model, 5, parameters or {})
    return CohereProvider(config, secret)


def test_json_output_sends_the_schema_cohere_accepts_and_reads_billed_units(cohere_server):
    cohere_server.reply('{"decision": "approve", "score": 0.9}')

    completion = cohere(cohere_server, parameters={"temperature": 0}).complete(
        "Decide on invoice 42", json_schema=SCHEMA
    )

    [request] = cohere_server.requests
    assert (request.method, request.path) == ("POST", "/v2/chat")
    assert request.headers["authorization"] == f"Bearer {CANARY_SECRET}"
    assert request.body == {
        "model": "command-test",
        "messages": [{"role": "user", "content": "Decide on invoice 42"}],
        "stream": False,
        "temperature": 0,
        "response_format": {
            "type": "json_object",
            "json_schema": {
                "type": "object",
                "required": ["decision"],
                "properties": {
                    "decision": {"enum": ["approve", "reject"]},
                    "score": {"type": "number"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    }
    # billed_units (what is billed), not tokens (which count Cohere's own preamble too).
    assert (completion.tokens_in, completion.tokens_out) == (4, 4)
    assert (completion.model, completion.stop_reason) == ("command-test", "COMPLETE")
    assert completion.text == '{"decision": "approve", "score": 0.9}'


def test_a_text_answer_sends_no_response_format(cohere_server):
    cohere_server.reply("Approved.")

    assert cohere(cohere_server).complete("Say hi").text == "Approved."
    assert "response_format" not in cohere_server.requests[0].body


def test_a_max_tokens_finish_is_a_truncated_answer(cohere_server):
    cohere_server.script([("stop", "MAX_TOKENS", '{"decision": "appr')])

    with pytest.raises(ProviderError) as caught:
        cohere(cohere_server).complete("Decide", json_schema=SCHEMA)

    assert (caught.value.code, caught.value.permanent) == ("truncated_answer", True)
    assert "raise max_tokens in the provider's parameters" in caught.value.message


@pytest.mark.parametrize(
    ("step", "code", "permanent", "retry_after"),
    [
        (("status", 429, {"Retry-After": "4"}), "provider_error", False, 4.0),
        (("status", 500), "provider_error", False, None),
        (("status", 499), "provider_error", False, None),  # "request cancelled": retry, says Cohere
        (("stop", "ERROR", ""), "provider_error", False, None),
        (("stop", "TIMEOUT", ""), "provider_error", False, None),
        (("malformed",), "provider_error", False, None),
        (("status", 400), "provider_error", True, None),
        (("status", 402), "provider_error", True, None),
        (
            (
                "body",
                400,
                {
                    "message": "too many tokens: total number of tokens in the prompt "
                    "cannot exceed 4081 - received 4292."
                },
            ),
            "context_too_long",
            True,
            None,
        ),
        (
            (
                "body",
                400,
                {
                    "message": "too many tokens: max tokens must be less than or equal "
                    "to 4096, the maximum output for this model - received 8192."
                },
            ),
            "provider_error",
            True,
            None,
        ),
    ],
)
def test_errors_are_classified(cohere_server, step, code, permanent, retry_after):
    cohere_server.script([step])

    with pytest.raises(ProviderError) as caught:
        cohere(cohere_server).complete("hello")

    error = caught.value
    assert (error.code, error.permanent, error.retry_after) == (code, permanent, retry_after)


def test_an_unknown_model_and_a_wrong_key_are_permanent(cohere_server):
    with pytest.raises(ProviderError) as unknown:
        cohere(cohere_server, model="command-nope").complete("hello")
    with pytest.raises(ProviderError, match="invalid api token") as wrong:
        cohere(cohere_server, secret="co-wrong").complete("hello")
    cohere_server.script([("echo_key",)])
    with pytest.raises(ProviderError) as echoed:
        cohere(cohere_server).complete("hello")

    assert (unknown.value.code, unknown.value.permanent) == ("model_not_found", True)
    assert wrong.value.permanent
    assert CANARY_SECRET not in echoed.value.message and "***" in echoed.value.message


def test_test_connection_checks_the_key_and_that_the_model_serves_chat(cohere_server):
    assert cohere(cohere_server).test_connection() == (
        "OK: the key was accepted and model command-test serves chat (256000 tokens of context)"
    )
    assert cohere_server.requests[0].path == "/v1/models/command-test"

    cohere_server.models["embed-test"] = ["embed"]
    with pytest.raises(ProviderError, match="does not serve chat") as embedding:
        cohere(cohere_server, model="embed-test").test_connection()
    with pytest.raises(ProviderError) as unknown:
        cohere(cohere_server, model="command-nope").test_connection()
    with pytest.raises(ProviderError, match="HTTP 401"):
        cohere(cohere_server, secret="wrong").test_connection()

    assert embedding.value.code == unknown.value.code == "model_not_found"
