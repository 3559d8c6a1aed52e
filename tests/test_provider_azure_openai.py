"""The azure_openai kind against a local server speaking Azure OpenAI's deployments API."""

import pytest

from connectors.errors import ProviderError
from connectors.providers.azure_openai import API_VERSION, AzureOpenAIProvider
from connectors.providers.base import ProviderConfig
from tests.conftest import CANARY_SECRET

SCHEMA = {
    "type": "object",
    "required": ["decision"],
    "properties": {"decision": {"enum": ["approve", "reject"]}, "reason": {"type": "string"}},
}


def azure(server, *, deployment="gpt4o-test", settings=None, parameters=None, secret=CANARY_SECRET):
    config = ProviderConfig(
        "azure_openai", server.base_url, deployment, 5, parameters or {}, settings or {}
    )
    return AzureOpenAIProvider(config, secret)


def test_calls_the_deployment_with_api_version_and_api_key(azure_openai_server):
    azure_openai_server.reply('{"decision": "approve", "reason": "fine"}')

    completion = azure(azure_openai_server, parameters={"temperature": 0}).complete(
        "Decide on invoice 42", json_schema=SCHEMA
    )

    [request] = azure_openai_server.requests
    assert request.path == "/openai/deployments/gpt4o-test/chat/completions"
    assert request.query == {"api-version": API_VERSION} == {"api-version": "2024-10-21"}
    assert request.headers["api-key"] == CANARY_SECRET
    assert "authorization" not in request.headers
    assert request.body == {  # the deployment names the model: no "model" field
        "messages": [{"role": "user", "content": "Decide on invoice 42"}],
        "temperature": 0,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "result", "schema": SCHEMA, "strict": False},
        },
    }
    assert completion.text == '{"decision": "approve", "reason": "fine"}'
    assert (completion.tokens_in, completion.tokens_out) == (4, 4)
    assert (completion.model, completion.stop_reason) == ("gpt-4o-2024-08-06", "stop")


def test_a_filtered_prompt_is_permanent_and_names_the_categories(azure_openai_server):
    azure_openai_server.script([("content_filter",)])

    with pytest.raises(ProviderError) as caught:
        azure(azure_openai_server).complete("something hateful")

    assert (caught.value.code, caught.value.permanent) == ("content_refused", True)
    assert caught.value.message.startswith("the content filter refused the prompt (hate: high)")


def test_a_filtered_answer_is_permanent_and_names_the_categories(azure_openai_server):
    azure_openai_server.script([("stop", "content_filter")])

    with pytest.raises(ProviderError) as caught:
        azure(azure_openai_server).complete("tell a violent story")

    assert (caught.value.code, caught.value.permanent) == ("content_refused", True)
    assert caught.value.message == "the content filter withheld the answer (violence: medium)"


def test_a_length_finish_is_a_truncated_answer(azure_openai_server):
    azure_openai_server.script([("stop", "length", '{"reason": "customer <SS')])

    with pytest.raises(ProviderError) as caught:
        azure(azure_openai_server).complete("Decide", json_schema=SCHEMA)

    assert (caught.value.code, caught.value.permanent) == ("truncated_answer", True)


def test_a_rate_limit_honours_retry_after_ms(azure_openai_server):
    azure_openai_server.script([("rate_limited", 250)])

    with pytest.raises(ProviderError) as caught:
        azure(azure_openai_server).complete("hello")

    assert (caught.value.permanent, caught.value.retry_after) == (False, 0.25)
    assert "exceeded token rate limit" in caught.value.message


@pytest.mark.parametrize(
    ("step", "permanent"),
    [(("status", 500), False), (("status", 503), False), (("status", 400), True)],
)
def test_errors_are_classified(azure_openai_server, step, permanent):
    azure_openai_server.script([step])

    with pytest.raises(ProviderError) as caught:
        azure(azure_openai_server).complete("hello")

    assert (caught.value.code, caught.value.permanent) == ("provider_error", permanent)


def test_an_api_version_without_json_schema_is_named_with_the_setting_to_change(
    azure_openai_server,
):
    old = {"api_version": "2024-02-01"}

    with pytest.raises(ProviderError) as caught:
        azure(azure_openai_server, settings=old).complete("Decide", json_schema=SCHEMA)
    azure_openai_server.reply('{"decision": "reject"}')
    json_mode = azure(azure_openai_server, settings={**old, "structured_output": "json_object"})

    assert (caught.value.code, caught.value.permanent) == ("structured_output_unsupported", True)
    assert "set the provider's structured_output setting to json_object or prompt" in (
        caught.value.message
    )
    assert json_mode.complete("Decide", json_schema=SCHEMA).text == '{"decision": "reject"}'
    body = azure_openai_server.requests[-1].body
    assert body["response_format"] == {"type": "json_object"}
    assert body["messages"][0]["content"].endswith('"reject"]}, "reason": {"type": "string"}}}')


def test_a_missing_deployment_and_a_wrong_key_are_named(azure_openai_server):
    with pytest.raises(ProviderError) as missing:
        azure(azure_openai_server, deployment="gpt-nope").complete("hello")
    with pytest.raises(ProviderError) as wrong:
        azure(azure_openai_server, secret="azure-wrong").complete("hello")

    assert (missing.value.code, missing.value.permanent) == ("model_not_found", True)
    assert "no deployment named 'gpt-nope'" in missing.value.message
    assert wrong.value.permanent and "Access denied" in wrong.value.message


def test_test_connection_asks_the_deployment(azure_openai_server):
    assert azure(azure_openai_server).test_connection() == (
        "OK: deployment gpt4o-test answered (model gpt-4o-2024-08-06, api-version 2024-10-21)"
    )
    with pytest.raises(ProviderError) as missing:
        azure(azure_openai_server, deployment="gpt-nope").test_connection()

    assert missing.value.code == "model_not_found"
