"""The ollama kind against a local server speaking Ollama's native /api/chat."""

import pytest

from connectors.errors import ProviderError
from connectors.plugins import SettingError
from connectors.providers.base import ProviderConfig
from connectors.providers.ollama import OllamaProvider
from tests.fixtures_http import OllamaServer, serve

SCHEMA = {
    "type": "object",
    "required": ["decision"],
    "properties": {"decision": {"enum": ["approve", "reject"]}, "reason": {"type": "string"}},
}


def ollama(server, *, model="llama-test", parameters=None, secret=None):
    config = ProviderConfig("ollama", server.base_url, model, 5, parameters or {})
    return OllamaProvider(config, secret)


def test_json_output_is_the_format_schema_and_tokens_are_eval_counts(ollama_server):
    ollama_server.reply('{"decision": "approve", "reason": "fine"}')
    parameters = {"options": {"temperature": 0, "num_ctx": 8192}, "keep_alive": "10m"}

    completion = ollama(ollama_server, parameters=parameters).complete(
        "Decide on invoice 42", json_schema=SCHEMA
    )

    [request] = ollama_server.requests
    assert (request.method, request.path) == ("POST", "/api/chat")
    assert "authorization" not in request.headers
    assert request.body == {
        "model": "llama-test",
        "messages": [{"role": "user", "content": "Decide on invoice 42"}],
        "stream": False,
        "options": {"temperature": 0, "num_ctx": 8192},
        "keep_alive": "10m",
        "format": SCHEMA,
    }
    assert completion.text == '{"decision": "approve", "reason": "fine"}'
    assert (completion.tokens_in, completion.tokens_out) == (4, 4)
    assert (completion.model, completion.stop_reason) == ("llama-test", "stop")


def test_a_text_answer_sends_no_format(ollama_server):
    ollama_server.reply("Approved.")

    assert ollama(ollama_server).complete("Say hi").text == "Approved."
    assert "format" not in ollama_server.requests[0].body


def test_an_answer_cut_at_num_predict_is_a_truncated_answer(ollama_server):
    ollama_server.reply("Customer <SSN_1> is approved because the invoice matches the order")

    with pytest.raises(ProviderError) as caught:
        ollama(ollama_server, parameters={"options": {"num_predict": 2}}).complete("Decide")

    assert (caught.value.code, caught.value.permanent) == ("truncated_answer", True)
    assert "done_reason length" in caught.value.message
    assert "raise options.num_predict" in caught.value.message


@pytest.mark.parametrize(
    ("step", "code", "permanent"),
    [
        (("status", 500), "provider_error", False),
        (("status", 503), "provider_error", False),
        (("malformed",), "provider_error", False),
        (("status", 400), "provider_error", True),
        (("body", 200, {"model": "llama-test", "done": False}), "provider_error", False),
    ],
)
def test_errors_are_classified(ollama_server, step, code, permanent):
    ollama_server.script([step])

    with pytest.raises(ProviderError) as caught:
        ollama(ollama_server).complete("hello")

    assert (caught.value.code, caught.value.permanent) == (code, permanent)


def test_a_model_not_pulled_is_named_with_the_command_that_pulls_it(ollama_server):
    with pytest.raises(ProviderError) as caught:
        ollama(ollama_server, model="mistral").complete("hello")

    assert (caught.value.code, caught.value.permanent) == ("model_not_found", True)
    assert "run: ollama pull mistral" in caught.value.message


def test_a_credential_goes_as_a_bearer_token_to_a_proxy_that_checks_it():
    from tests.conftest import CANARY_SECRET

    for server in serve(OllamaServer(key=CANARY_SECRET)):
        assert ollama(server, secret=CANARY_SECRET).complete("hi").text
        with pytest.raises(ProviderError, match="HTTP 401") as refused:
            ollama(server, secret="wrong").complete("hi")

        assert server.requests[0].headers["authorization"] == f"Bearer {CANARY_SECRET}"
        assert refused.value.permanent


def test_test_connection_shows_the_model(ollama_server):
    assert ollama(ollama_server).test_connection() == (
        "OK: Ollama has model llama-test (3.2B Q4_K_M)"
    )
    request = ollama_server.requests[0]
    assert (request.path, request.body) == ("/api/show", {"model": "llama-test"})

    with pytest.raises(ProviderError, match="ollama pull mistral") as missing:
        ollama(ollama_server, model="mistral").test_connection()
    with pytest.raises(ProviderError, match="cannot connect") as down:
        down_config = ProviderConfig("ollama", "http://127.0.0.1:1", "llama-test", 5)
        OllamaProvider(down_config, None).test_connection()

    assert missing.value.code == "model_not_found"
    assert not down.value.permanent


def test_parameters_cannot_set_what_the_kind_writes():
    with pytest.raises(SettingError, match="parameters cannot set format, stream"):
        OllamaProvider.validate_provider("", "llama3.2", {"stream": True, "format": "json"}, {})
