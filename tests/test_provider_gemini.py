"""The gemini kind against a local server speaking the Gemini API's generateContent."""

import pytest

from connectors.errors import ProviderError
from connectors.plugins import SettingError
from connectors.providers.base import ProviderConfig
from connectors.providers.gemini import GeminiProvider, gemini_schema
from tests.conftest import CANARY_SECRET
from tests.fixtures_http import gemini_schema_problems

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["decision"],
    "properties": {"decision": {"enum": ["approve", "reject"]}, "reason": {"type": "string"}},
}
CONVERTED = {
    "type": "OBJECT",
    "properties": {
        "decision": {"type": "STRING", "format": "enum", "enum": ["approve", "reject"]},
        "reason": {"type": "STRING"},
    },
    "propertyOrdering": ["decision", "reason"],
    "required": ["decision"],
}


def gemini(server, *, model="gemini-test", parameters=None, secret=CANARY_SECRET):
    config = ProviderConfig("gemini", server.base_url, model, 5, parameters or {})
    return GeminiProvider(config, secret)


def test_json_output_asks_for_json_with_the_converted_schema(gemini_server):
    gemini_server.reply('{"decision": "approve", "reason": "fine"}')
    parameters = {"generationConfig": {"temperature": 0}, "safetySettings": []}

    completion = gemini(gemini_server, parameters=parameters).complete(
        "Decide on invoice 42", json_schema=SCHEMA
    )

    [request] = gemini_server.requests
    assert (request.method, request.path) == ("POST", "/v1beta/models/gemini-test:generateContent")
    assert request.headers["x-goog-api-key"] == CANARY_SECRET
    assert request.query == {}
    assert request.body == {
        "contents": [{"role": "user", "parts": [{"text": "Decide on invoice 42"}]}],
        "safetySettings": [],
        "generationConfig": {
            "temperature": 0,
            "responseMimeType": "application/json",
            "responseSchema": CONVERTED,
        },
    }
    assert completion.text == '{"decision": "approve", "reason": "fine"}'
    assert (completion.tokens_in, completion.tokens_out) == (4, 4)
    assert (completion.model, completion.stop_reason) == ("gemini-test-001", "STOP")


def test_a_text_answer_sends_no_generation_config_and_models_prefix_is_accepted(gemini_server):
    gemini_server.reply("Approved.")

    completion = gemini(gemini_server, model="models/gemini-test").complete("Say hi")

    assert "generationConfig" not in gemini_server.requests[0].body
    assert completion.text == "Approved."


@pytest.mark.parametrize(
    ("schema", "converted"),
    [
        ({"type": ["string", "null"]}, {"type": "STRING", "nullable": True}),
        (
            {"enum": ["a", None]},
            {"type": "STRING", "format": "enum", "enum": ["a"], "nullable": True},
        ),
        ({"const": "fixed"}, {"type": "STRING", "format": "enum", "enum": ["fixed"]}),
        ({"enum": [1, 2, 3]}, {"type": "INTEGER"}),
        (
            {"type": "integer", "minimum": 0, "exclusiveMaximum": 9},
            {"type": "INTEGER", "minimum": 0},
        ),
        ({"type": "string", "format": "email"}, {"type": "STRING"}),
        ({"type": "string", "format": "date-time"}, {"type": "STRING", "format": "date-time"}),
        ({"type": "array"}, {"type": "ARRAY", "items": {"type": "STRING"}}),
        (
            {"items": {"type": "number"}, "minItems": 1},
            {"type": "ARRAY", "items": {"type": "NUMBER"}, "minItems": 1},
        ),
        (
            {"anyOf": [{"type": "string"}, {"type": "null"}]},
            {"nullable": True, "anyOf": [{"type": "STRING"}]},
        ),
        (
            {"oneOf": [{"type": "integer"}, {"type": "boolean"}]},
            {"anyOf": [{"type": "INTEGER"}, {"type": "BOOLEAN"}]},
        ),
        ({"type": ["integer", "string"]}, {"anyOf": [{"type": "INTEGER"}, {"type": "STRING"}]}),
        ({}, {"type": "STRING"}),
        (
            {
                "properties": {"x": {"$ref": "#/$defs/money"}},
                "required": ["x", "gone"],
                "$defs": {"money": {"type": "number"}},
            },
            {
                "type": "OBJECT",
                "properties": {"x": {"type": "NUMBER"}},
                "propertyOrdering": ["x"],
                "required": ["x"],
            },
        ),
        (
            {"properties": {"next": {"$ref": "#"}}},
            {
                "type": "OBJECT",
                "properties": {"next": {"type": "STRING"}},
                "propertyOrdering": ["next"],
            },
        ),
    ],
)
def test_json_schema_becomes_gemini_schema(schema, converted):
    assert gemini_schema(schema) == converted
    assert gemini_schema_problems(converted) == []  # and Gemini would take it


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (
            ("blocked", "SAFETY"),
            "blocked the prompt (blockReason SAFETY; HARM_CATEGORY_DANGEROUS_CONTENT: HIGH)",
        ),
        (
            ("stop", "SAFETY"),
            "withheld the answer (finishReason SAFETY; HARM_CATEGORY_DANGEROUS_CONTENT: HIGH)",
        ),
        (("stop", "RECITATION", "text"), "withheld the answer (finishReason RECITATION)"),
    ],
)
def test_safety_blocks_are_permanent_and_named(gemini_server, step, message):
    gemini_server.script([step])

    with pytest.raises(ProviderError) as caught:
        gemini(gemini_server).complete("Decide", json_schema=SCHEMA)

    assert (caught.value.code, caught.value.permanent) == ("content_refused", True)
    assert message in caught.value.message


def test_a_max_tokens_finish_is_a_truncated_answer(gemini_server):
    gemini_server.script([("stop", "MAX_TOKENS", '{"decision": "app')])

    with pytest.raises(ProviderError) as caught:
        gemini(gemini_server).complete("Decide", json_schema=SCHEMA)

    assert (caught.value.code, caught.value.permanent) == ("truncated_answer", True)
    assert "generationConfig.maxOutputTokens" in caught.value.message


@pytest.mark.parametrize(
    ("step", "code", "permanent", "retry_after"),
    [
        (("rate_limited", "7s"), "provider_error", False, 7.0),
        (("rate_limited", "0.5s"), "provider_error", False, 0.5),
        (("status", 429, {"Retry-After": "3"}), "provider_error", False, 3.0),
        (("status", 503), "provider_error", False, None),
        (("status", 504), "provider_error", False, None),
        (("malformed",), "provider_error", False, None),
        (("status", 400), "provider_error", True, None),
        (("status", 403), "provider_error", True, None),
        (
            (
                "body",
                400,
                {
                    "error": {
                        "code": 400,
                        "status": "INVALID_ARGUMENT",
                        "message": "The input token count (1200000) exceeds the maximum "
                        "number of tokens allowed (1048576).",
                    }
                },
            ),
            "context_too_long",
            True,
            None,
        ),
    ],
)
def test_errors_are_classified_with_google_retry_info(
    gemini_server, step, code, permanent, retry_after
):
    gemini_server.script([step])

    with pytest.raises(ProviderError) as caught:
        gemini(gemini_server).complete("hello")

    error = caught.value
    assert (error.code, error.permanent, error.retry_after) == (code, permanent, retry_after)


def test_an_unknown_model_and_a_wrong_key_are_named(gemini_server):
    with pytest.raises(ProviderError) as unknown:
        gemini(gemini_server, model="gemini-nope").complete("hello")
    with pytest.raises(ProviderError) as wrong:
        gemini(gemini_server, secret="AIza-wrong").complete("hello")

    assert (unknown.value.code, unknown.value.permanent) == ("model_not_found", True)
    assert "models/gemini-nope is not found" in unknown.value.message
    assert wrong.value.permanent and "API key not valid" in wrong.value.message
    assert "AIza-wrong" not in wrong.value.message


def test_a_quoted_key_is_scrubbed(gemini_server):
    gemini_server.script([("echo_key",)])

    with pytest.raises(ProviderError) as caught:
        gemini(gemini_server).complete("hello")

    assert CANARY_SECRET not in caught.value.message
    assert "***" in caught.value.message


def test_test_connection_checks_the_key_the_model_and_generate_content(gemini_server):
    assert gemini(gemini_server).test_connection() == (
        "OK: the key was accepted and model gemini-test (Gemini Test) can generateContent "
        "(1048576 input tokens)"
    )
    assert gemini_server.requests[0].path == "/v1beta/models/gemini-test"

    gemini_server.models["embedding-test"] = ["embedContent"]
    with pytest.raises(ProviderError, match="cannot generateContent") as embedding:
        gemini(gemini_server, model="embedding-test").test_connection()
    with pytest.raises(ProviderError) as unknown:
        gemini(gemini_server, model="gemini-nope").test_connection()

    assert embedding.value.code == unknown.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"contents": []}, "parameters cannot set contents"),
        (
            {"generationConfig": {"responseSchema": {}}},
            "generationConfig cannot set responseSchema",
        ),
        ({"generationConfig": "hot"}, "generationConfig must be a mapping"),
    ],
)
def test_parameters_cannot_take_over_what_the_kind_writes(parameters, message):
    with pytest.raises(SettingError, match=message):
        GeminiProvider.validate_provider("", "gemini-test", parameters, {})
