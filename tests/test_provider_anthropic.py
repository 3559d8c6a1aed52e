"""The anthropic kind against a local server speaking the Messages API."""

import json

import pytest

from connectors.errors import ProviderError
from connectors.plugins import SettingError
from connectors.providers.anthropic import TOOL_NAME, AnthropicProvider
from connectors.providers.base import ProviderConfig
from tests.conftest import CANARY_SECRET

SCHEMA = {
    "type": "object",
    "required": ["decision"],
    "properties": {"decision": {"enum": ["approve", "reject"]}, "reason": {"type": "string"}},
}


def anthropic(server, *, model="claude-test", settings=None, parameters=None, secret=CANARY_SECRET):
    config = ProviderConfig(
        "anthropic", server.base_url, model, 5, parameters or {}, settings or {}
    )
    return AnthropicProvider(config, secret)


def test_json_output_is_a_forced_tool_call_and_usage_is_read(anthropic_server):
    anthropic_server.reply('{"decision": "approve", "reason": "fine"}')

    completion = anthropic(anthropic_server, parameters={"temperature": 0}).complete(
        "Decide on invoice 42", json_schema=SCHEMA
    )

    [request] = anthropic_server.requests
    assert (request.method, request.path) == ("POST", "/v1/messages")
    assert request.headers["x-api-key"] == CANARY_SECRET
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.body == {
        "model": "claude-test",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Decide on invoice 42"}],
        "temperature": 0,
        "tools": [
            {
                "name": TOOL_NAME,
                "description": "Record the answer as a JSON object that matches the schema.",
                "input_schema": SCHEMA,
            }
        ],
        "tool_choice": {"type": "tool", "name": TOOL_NAME},
    }
    assert json.loads(completion.text) == {"decision": "approve", "reason": "fine"}
    assert (completion.tokens_in, completion.tokens_out) == (4, 4)
    assert (completion.model, completion.stop_reason) == ("claude-test", "tool_use")


def test_a_text_answer_sends_no_tools_and_honours_the_max_tokens_setting(anthropic_server):
    anthropic_server.reply("Approved.")

    completion = anthropic(anthropic_server, settings={"max_tokens": 64}).complete("Say hi")

    body = anthropic_server.requests[0].body
    assert "tools" not in body and "tool_choice" not in body
    assert body["max_tokens"] == 64
    assert (completion.text, completion.stop_reason) == ("Approved.", "end_turn")


def test_a_max_tokens_stop_is_a_truncated_answer(anthropic_server):
    anthropic_server.script([("stop", "max_tokens", '{"reason": "customer <SS')])

    with pytest.raises(ProviderError) as caught:
        anthropic(anthropic_server, settings={"max_tokens": 16}).complete("Decide")

    assert (caught.value.code, caught.value.permanent) == ("truncated_answer", True)
    assert "raise the provider's max_tokens setting (now 16)" in caught.value.message


def test_a_refusal_is_permanent_and_named(anthropic_server):
    anthropic_server.script([("stop", "refusal")])

    with pytest.raises(ProviderError) as caught:
        anthropic(anthropic_server).complete("Decide", json_schema=SCHEMA)

    assert (caught.value.code, caught.value.permanent) == ("content_refused", True)
    assert "stop_reason refusal" in caught.value.message


@pytest.mark.parametrize(
    ("step", "code", "permanent", "retry_after", "message"),
    [
        (("status", 529), "provider_error", False, None, "Anthropic is overloaded"),
        (("status", 429, {"retry-after": "7"}), "provider_error", False, 7.0, "HTTP 429"),
        (("status", 500), "provider_error", False, None, "HTTP 500"),
        (("malformed",), "provider_error", False, None, "malformed"),
        (("status", 400), "provider_error", True, None, "invalid_request_error"),
        (("status", 404), "model_not_found", True, None, "no model 'claude-test'"),
        (
            (
                "body",
                400,
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "message": "prompt is too long: 210000 tokens > 200000 maximum",
                    },
                },
            ),
            "context_too_long",
            True,
            None,
            "210000 tokens > 200000 maximum",
        ),
    ],
)
def test_errors_are_classified(anthropic_server, step, code, permanent, retry_after, message):
    anthropic_server.script([step])

    with pytest.raises(ProviderError) as caught:
        anthropic(anthropic_server).complete("hello")

    error = caught.value
    assert (error.code, error.permanent, error.retry_after) == (code, permanent, retry_after)
    assert message in error.message


def test_a_wrong_key_is_permanent_and_a_quoted_key_is_scrubbed(anthropic_server):
    with pytest.raises(ProviderError, match="HTTP 401") as wrong:
        anthropic(anthropic_server, secret="sk-ant-wrong").complete("hello")
    anthropic_server.script([("echo_key",)])
    with pytest.raises(ProviderError) as echoed:
        anthropic(anthropic_server).complete("hello")

    assert wrong.value.permanent
    assert "Incorrect API key provided: ***" in echoed.value.message
    assert CANARY_SECRET not in echoed.value.message


def test_test_connection_checks_the_key_and_the_model(anthropic_server):
    assert anthropic(anthropic_server).test_connection() == (
        "OK: the key was accepted and model claude-test (Claude Test) exists"
    )
    request = anthropic_server.requests[0]
    assert (request.method, request.path) == ("GET", "/v1/models/claude-test")

    with pytest.raises(ProviderError) as unknown:
        anthropic(anthropic_server, model="claude-nope").test_connection()
    with pytest.raises(ProviderError, match="HTTP 401"):
        anthropic(anthropic_server, secret="wrong").test_connection()

    assert (unknown.value.code, unknown.value.permanent) == ("model_not_found", True)


@pytest.mark.parametrize(
    ("parameters", "own", "setting", "message"),
    [
        ({"max_tokens": 10}, {}, "parameters", "parameters cannot set max_tokens"),
        ({"tools": []}, {}, "parameters", "parameters cannot set tools"),
        ({}, {"max_tokens": 0}, "max_tokens", "max_tokens must be at least 1"),
        ({}, {"max_tokens": "many"}, "max_tokens", "max_tokens must be a whole number"),
        ({}, {"colour": "red"}, "settings", "unknown settings colour; known:"),
        ({}, {"model": "x"}, "settings", "settings cannot hold model"),
    ],
)
def test_settings_are_validated(parameters, own, setting, message):
    with pytest.raises(SettingError, match=message) as refused:
        AnthropicProvider.validate_provider("", "claude-test", parameters, own)

    assert refused.value.setting == setting


def test_defaults_fill_in_the_vendor_url_and_max_tokens():
    config = AnthropicProvider.validate_provider("", "claude-test", {}, {})

    assert config["base_url"] == "https://api.anthropic.com"
    assert (config["max_tokens"], config["anthropic_version"]) == (1024, "2023-06-01")
    provider = AnthropicProvider(ProviderConfig("anthropic", "", "claude-test"), None)
    assert provider.base_url == "https://api.anthropic.com"
