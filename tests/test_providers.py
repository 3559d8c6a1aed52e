"""AI providers: the OpenAI wire format against a local server, errors, the demo provider."""

import json

import httpx
import jsonschema
import pytest

from connectors.errors import ProviderError
from connectors.providers.base import ProviderConfig
from connectors.providers.demo import DemoProvider
from connectors.providers.openai import OpenAIProvider
from tests.conftest import CANARY_SECRET

SCHEMA = {
    "type": "object",
    "required": ["decision", "reason"],
    "properties": {
        "decision": {"enum": ["approve", "reject"]},
        "reason": {"type": "string"},
        "score": {"type": "number"},
    },
}


def openai(base_url: str, *, timeout: float = 5, parameters=None, secret=CANARY_SECRET):
    settings = ProviderConfig("openai", base_url, "gpt-test", timeout, parameters or {})
    return OpenAIProvider(settings, secret)


def test_sends_chat_completions_with_schema_and_records_usage(openai_server):
    openai_server.reply('{"decision": "approve", "reason": "fine"}')
    provider = openai(openai_server.base_url, parameters={"temperature": 0})

    completion = provider.complete("Decide on invoice 42", json_schema=SCHEMA)

    [(path, headers, body)] = openai_server.requests
    assert path == "/v1/chat/completions"
    assert headers["authorization"] == f"Bearer {CANARY_SECRET}"
    assert body == {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "Decide on invoice 42"}],
        "temperature": 0,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "result", "schema": SCHEMA, "strict": False},
        },
    }
    assert completion.text == '{"decision": "approve", "reason": "fine"}'
    assert (completion.tokens_in, completion.tokens_out, completion.model) == (4, 4, "gpt-test")


@pytest.mark.parametrize(
    ("step", "permanent", "retry_after"),
    [
        (("status", 429, {"Retry-After": "7"}), False, 7.0),
        (("status", 500), False, None),
        (("status", 503), False, None),
        (("malformed",), False, None),
        (("status", 400), True, None),
        (("status", 401), True, None),
    ],
)
def test_errors_are_classified_and_never_quote_the_secret(
    openai_server, step, permanent, retry_after
):
    openai_server.script([step])

    with pytest.raises(ProviderError) as caught:
        openai(openai_server.base_url).complete("hello")

    assert (caught.value.permanent, caught.value.retry_after) == (permanent, retry_after)
    assert caught.value.code == "provider_error"
    assert CANARY_SECRET not in str(caught.value)


def test_a_provider_that_echoes_the_refused_key_does_not_leak_it(openai_server):
    openai_server.script([("echo_key",)])

    with pytest.raises(ProviderError) as caught:
        openai(openai_server.base_url).complete("hello")

    assert "Incorrect API key provided: ***" in str(caught.value)
    assert CANARY_SECRET not in str(caught.value)


def test_a_slow_provider_times_out_as_a_transient_error(openai_server):
    openai_server.script([("slow", 2, "late")])

    with pytest.raises(ProviderError, match="timed out") as caught:
        openai(openai_server.base_url, timeout=0.5).complete("hello")

    assert not caught.value.permanent


def test_an_unreachable_provider_is_a_transient_error():
    with pytest.raises(ProviderError, match="cannot connect") as caught:
        openai("http://127.0.0.1:1/v1").complete("hello")

    assert not caught.value.permanent


def test_azure_uses_the_api_key_header():
    seen = {}

    def answer(request: httpx.Request) -> httpx.Response:
        seen.update(request.headers)
        return httpx.Response(200, json={"choices": [{"message": {"content": "hi"}}]})

    settings = ProviderConfig("openai", "https://x.openai.azure.com/openai/v1", "gpt", 5, {})
    client = httpx.Client(transport=httpx.MockTransport(answer))
    completion = OpenAIProvider(settings, "azure-secret", client=client).complete("hello")

    assert seen["api-key"] == "azure-secret"
    assert "authorization" not in seen
    assert (completion.text, completion.tokens_in) == ("hi", 0)


def test_content_that_is_not_text_is_malformed():
    client = httpx.Client(
        transport=httpx.MockTransport(
            lambda request: httpx.Response(200, json={"choices": [{"message": {"content": None}}]})
        )
    )
    settings = ProviderConfig("openai", "https://api.example/v1", "gpt", 5, {})

    with pytest.raises(ProviderError, match="without text content"):
        OpenAIProvider(settings, None, client=client).complete("hello")


def test_test_connection_lists_models(openai_server):
    assert openai(openai_server.base_url).test_connection().startswith("OK")
    assert openai_server.requests[0][0] == "/v1/models"


@pytest.mark.parametrize(
    ("base_url", "model", "parameters", "message"),
    [
        ("", "gpt", {}, "missing base_url"),
        ("ftp://x", "gpt", {}, "must be an http:// or https:// address"),
        ("https://api.openai.com/v1", "", {}, "missing model"),
        ("https://api.openai.com/v1", "gpt", {"messages": []}, "cannot set messages"),
    ],
)
def test_openai_settings_are_validated(base_url, model, parameters, message):
    with pytest.raises(ValueError, match=message):
        OpenAIProvider.validate_config(
            {"base_url": base_url, "model": model, "parameters": parameters}
        )


def test_demo_provider_is_deterministic_and_satisfies_the_schema():
    provider = DemoProvider(ProviderConfig("demo", "", "", 5, {}), None)

    first = provider.complete("Decide on invoice 42", json_schema=SCHEMA)
    again = provider.complete("Decide on invoice 42", json_schema=SCHEMA)

    assert first.text == again.text
    jsonschema.validate(json.loads(first.text), SCHEMA)
    assert first.model == "demo"
    assert provider.complete("Say hi").text == "Demo answer (no AI was called): Say hi"
