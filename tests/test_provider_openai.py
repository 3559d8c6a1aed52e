"""The openai kind's structured-output modes, truncated answers and Test connection, against
an OpenAI-compatible server that behaves as llama-cpp-python's does."""

import json

import httpx
import pytest

from connectors.errors import ProviderError
from connectors.models import Job, Provider
from connectors.plugins import SettingError
from connectors.providers.base import ProviderConfig
from connectors.providers.openai import OpenAIProvider
from tests.conftest import CANARY_SECRET, CANARY_SSN, post_records
from tests.fixtures_http import LlamaCppServer, serve
from tests.worker import drain

SCHEMA = {
    "type": "object",
    "required": ["decision"],
    "properties": {"decision": {"enum": ["approve", "reject"]}, "reason": {"type": "string"}},
}
SCHEMA_TEXT = json.dumps(SCHEMA)


def openai(server, *, model=None, mode=None, parameters=None, secret=CANARY_SECRET):
    settings = {"structured_output": mode} if mode else {}
    model = model or getattr(server, "model", "gpt-test")
    config = ProviderConfig("openai", server.base_url, model, 5, parameters or {}, settings)
    return OpenAIProvider(config, secret)


def test_a_server_that_refuses_json_schema_fails_permanently_naming_the_setting(llamacpp_server):
    with pytest.raises(ProviderError) as caught:
        openai(llamacpp_server).complete("Decide", json_schema=SCHEMA)

    error = caught.value
    assert (error.code, error.permanent) == ("structured_output_unsupported", True)
    assert error.message.startswith("the server refused structured output json_schema (")
    assert "Input should be 'text' or 'json_object'" in error.message
    assert error.message.endswith(
        "set the provider's structured_output setting to json_object or prompt"
    )


def test_a_server_error_that_names_no_response_format_is_still_retried(openai_server):
    openai_server.script([("status", 500)])

    with pytest.raises(ProviderError) as caught:
        openai(openai_server).complete("Decide", json_schema=SCHEMA)

    assert (caught.value.code, caught.value.permanent) == ("provider_error", False)


def test_json_object_mode_sends_json_mode_and_the_schema_in_the_prompt(llamacpp_server):
    llamacpp_server.reply('{"decision": "approve"}')

    completion = openai(llamacpp_server, mode="json_object").complete("Decide", json_schema=SCHEMA)

    body = llamacpp_server.requests[0].body
    assert body["response_format"] == {"type": "json_object"}
    assert body["messages"][0]["content"] == (
        "Decide\n\nAnswer with only a JSON object that satisfies this JSON Schema:\n" + SCHEMA_TEXT
    )
    assert completion.text == '{"decision": "approve"}'


def test_prompt_mode_sends_the_schema_in_the_prompt_only(llamacpp_server):
    openai(llamacpp_server, mode="prompt").complete("Decide", json_schema=SCHEMA)
    openai(llamacpp_server, mode="prompt").complete("Say hi")  # a text connector: no schema

    with_schema, text_only = (request.body for request in llamacpp_server.requests)
    assert "response_format" not in with_schema
    assert with_schema["messages"][0]["content"].endswith(SCHEMA_TEXT)
    assert text_only["messages"][0]["content"] == "Say hi"


def test_a_length_finish_is_a_truncated_answer_saying_what_to_raise(llamacpp_server):
    llamacpp_server.reply("Approved for customer <SSN_1> because the order matches")

    with pytest.raises(ProviderError) as caught:
        openai(llamacpp_server, parameters={"max_tokens": 3}).complete("Decide")

    assert (caught.value.code, caught.value.permanent) == ("truncated_answer", True)
    assert caught.value.message == (
        "the answer was cut off at the token limit (finish_reason length); raise max_tokens "
        "(or max_completion_tokens) in the provider's parameters"
    )


def test_a_refusal_is_permanent_and_named():
    answer = {"choices": [{"message": {"content": None, "refusal": "I can't help with that."}}]}
    client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, json=answer)))
    config = ProviderConfig("openai", "https://api.example/v1", "gpt", 5)

    with pytest.raises(ProviderError) as caught:
        OpenAIProvider(config, None, client=client).complete("Decide", json_schema=SCHEMA)

    assert (caught.value.code, caught.value.permanent) == ("content_refused", True)
    assert caught.value.message == "the model refused to answer: I can't help with that."


def test_structured_output_is_one_of_the_modes():
    with pytest.raises(SettingError, match="must be one of json_schema, json_object, prompt"):
        OpenAIProvider.validate_provider("http://x/v1", "m", {}, {"structured_output": "grammar"})
    config = OpenAIProvider.validate_provider("http://x/v1", "m", {}, {})
    assert config["structured_output"] == "json_schema"


# --- Test connection -------------------------------------------------------------------------


def test_test_connection_refuses_a_model_the_server_does_not_serve(openai_server):
    with pytest.raises(ProviderError) as caught:
        openai(openai_server, model="no-such-model-xyz").test_connection()

    assert (caught.value.code, caught.value.permanent) == ("model_not_found", True)
    assert caught.value.message == (
        "the server does not serve model 'no-such-model-xyz' (it lists gpt-test)"
    )


def test_test_connection_says_when_the_server_checks_no_credential(llamacpp_server):
    assert openai(llamacpp_server).test_connection() == (
        "OK: the server lists model gemma-3-270m; note: it answered without the credential "
        "too, so it checks none"
    )
    assert openai(llamacpp_server, secret=None).test_connection() == (
        "OK: the server lists model gemma-3-270m; no credential is configured"
    )


def test_test_connection_says_the_credential_was_accepted_by_a_server_that_checks_it():
    for server in serve(LlamaCppServer(key=CANARY_SECRET)):
        assert openai(server).test_connection() == (
            "OK: the server lists model gemma-3-270m; it accepted the credential"
        )
        with pytest.raises(ProviderError, match="Invalid API Key") as refused:
            openai(server, secret="wrong").test_connection()

        assert refused.value.permanent


def test_test_connection_to_a_server_without_a_model_list_asks_the_model(llamacpp_server):
    llamacpp_server.lists_models = False
    llamacpp_server.reply("OK")

    assert openai(llamacpp_server).test_connection() == (
        "OK: the server does not list its models (no /models), but model gemma-3-270m "
        "answered a test prompt"
    )
    assert [request.method for request in llamacpp_server.requests] == ["GET", "POST"]


# --- End to end, with a real worker ----------------------------------------------------------

pytestmark_e2e = pytest.mark.django_db(transaction=True)


@pytest.fixture
def local_model(db, llamacpp_server, credential):
    return Provider.objects.create(
        name="gemma",
        kind="openai",
        base_url=llamacpp_server.base_url,
        model=llamacpp_server.model,
        credential=credential,
        timeout_seconds=5,
    )


@pytest.fixture
def json_connector(make_connector, local_model, callback_server):
    return make_connector(
        "local",
        provider=local_model,
        inputs=[("note", "text", True), ("ssn", "ssn", False)],
        outputs=[("decision", "ai_decision")],
        redaction=[("ssn", "tokenize")],
        prompt="Decide on: {{ text }} (customer {{ ssn }}). Answer JSON.",
        output_format="json",
        output_schema=SCHEMA,
        sink_kind="http",
        sink_config={"url": callback_server.url},
        max_attempts=8,
    )


def send(client, api_key, connector, record) -> Job:
    response = post_records(client, connector.slug, record, key=api_key(connector)[1])
    assert response.status_code == 202, response.content
    return Job.objects.get(id=response.json()["jobs"][0]["id"])


@pytestmark_e2e
def test_a_refused_mode_ends_the_job_at_once_instead_of_retrying_it_to_dead(
    client, api_key, json_connector, llamacpp_server, callback_server
):
    job = send(client, api_key, json_connector, {"note": "Invoice 42", "ssn": CANARY_SSN})

    drain()

    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.DEAD, 1)
    assert job.error_code == "structured_output_unsupported"
    assert "structured_output setting to json_object or prompt" in job.error_message
    assert len(llamacpp_server.requests) == 1  # not 8 (the issue saw 16 wasted calls)
    assert callback_server.received == []


@pytestmark_e2e
def test_a_truncated_answer_fails_the_job_and_writes_nothing_back(
    client, api_key, make_connector, local_model, llamacpp_server, callback_server
):
    local_model.parameters = {"max_tokens": 3}
    local_model.save()
    connector = make_connector(
        "notes",
        provider=local_model,
        inputs=[("ssn", "ssn", True)],
        redaction=[("ssn", "tokenize")],
        prompt="Write a note about customer {{ ssn }}.",
        sink_kind="http",
        sink_config={"url": callback_server.url},
        max_attempts=3,
    )
    llamacpp_server.responder = lambda prompt: f"Approved for customer {prompt.split()[-1]}"
    job = send(client, api_key, connector, {"ssn": CANARY_SSN})

    drain()

    job.refresh_from_db()
    assert (job.status, job.attempts, job.error_code) == (Job.Status.DEAD, 1, "truncated_answer")
    assert "raise max_tokens" in job.error_message
    assert callback_server.received == []  # no half answer, no SSN silently left unrestored


@pytestmark_e2e
def test_an_empty_answer_is_not_a_success_for_a_json_connector(
    client, api_key, make_connector, openai_provider, openai_server, callback_server
):
    connector = make_connector(
        "empty",
        provider=openai_provider,
        prompt="Decide on: {{ text }}. Answer JSON.",
        output_format="json",
        output_schema=SCHEMA,
        sink_kind="http",
        sink_config={"url": callback_server.url},
        max_attempts=3,
    )
    openai_server.reply("")
    job = send(client, api_key, connector, {"text": "Invoice 43"})

    drain()

    job.refresh_from_db()
    assert (job.status, job.attempts, job.error_code) == (Job.Status.DEAD, 1, "invalid_output")
    assert "not valid JSON" in job.error_message
    assert len(openai_server.requests) == 2  # the answer and its one repair
    assert callback_server.received == []


@pytestmark_e2e
def test_the_structured_output_setting_reaches_the_worker(
    client, api_key, json_connector, local_model, llamacpp_server, callback_server
):
    local_model.settings = {"structured_output": "prompt"}
    local_model.save()
    llamacpp_server.responder = lambda prompt: '{"decision": "approve"}'
    job = send(client, api_key, json_connector, {"note": "Invoice 44"})

    drain()

    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert "response_format" not in llamacpp_server.requests[0].body
    assert callback_server.received[0][2]["result"] == {"ai_decision": "approve"}
