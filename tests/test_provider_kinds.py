"""Every provider kind with a fake server, the same way: a connector through it end to end with
a real worker, retried and permanent failures, Test connection, the admin form, and the
configuration file's round trip."""

import io
import json
import re

import pytest
import yaml
from django.core.management import call_command
from django.urls import reverse

from connectors.models import Job, Provider
from tests.conftest import CANARY_SECRET, CANARY_SSN, post_records
from tests.fixtures_http import FAKE_KINDS
from tests.worker import drain

SCHEMA = {
    "type": "object",
    "required": ["decision"],
    "properties": {"decision": {"enum": ["approve", "reject"]}, "reason": {"type": "string"}},
}
PROMPT = "Decide on: {{ text }} (customer {{ ssn }}). Answer JSON."


def echo_token(prompt: str) -> str:
    """An AI that approves and quotes the customer placeholder it was given."""
    token = re.search(r"<SSN_\d+>", prompt)
    return json.dumps({"decision": "approve", "reason": f"customer {token.group(0)} ok"})


@pytest.fixture
def kind_provider(request, db, fake_kind):
    fake, server = fake_kind
    credential = request.getfixturevalue(fake.credential)
    return Provider.objects.create(
        name=fake.kind.replace("_", "-"),
        kind=fake.kind,
        base_url=server.base_url,
        model=fake.model,
        credential=credential,
        settings=fake.settings,
        timeout_seconds=5,
        price_per_1m_input="1000",
        price_per_1m_output="2000",
    )


@pytest.fixture
def connector(make_connector, kind_provider, callback_server):
    return make_connector(
        "invoices",
        provider=kind_provider,
        inputs=[("note", "text", True), ("customer.ssn", "ssn", False)],
        outputs=[("decision", "ai_decision"), ("reason", "ai_reason")],
        redaction=[("ssn", "tokenize")],
        prompt=PROMPT,
        output_format="json",
        output_schema=SCHEMA,
        sink_kind="http",
        sink_config={"url": callback_server.url},
        max_attempts=3,
    )


def send(client, api_key, connector) -> Job:
    record = {"note": "Invoice 42", "customer": {"ssn": CANARY_SSN}}
    response = post_records(client, "invoices", record, key=api_key(connector)[1])
    assert response.status_code == 202, response.content
    return Job.objects.get(id=response.json()["jobs"][0]["id"])


@pytest.mark.django_db(transaction=True)
def test_a_record_travels_through_every_kind(
    client, api_key, connector, fake_kind, callback_server
):
    fake, server = fake_kind
    server.responder = echo_token
    job = send(client, api_key, connector)

    drain()

    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.SUCCEEDED, 1)
    [sent] = server.prompts()
    # A kind set to json_object mode (the Azure fake) also gets the schema after the prompt.
    assert sent.startswith("Decide on: Invoice 42 (customer <SSN_1>). Answer JSON.")
    assert CANARY_SSN not in sent
    assert ("JSON Schema" in sent) == (fake.settings.get("structured_output") == "json_object")
    [(_, _, payload)] = callback_server.received
    assert payload["result"] == {"ai_decision": "approve", "ai_reason": f"customer {CANARY_SSN} ok"}
    assert job.result == {"ai_decision": "approve", "ai_reason": "customer <SSN_1> ok"}
    assert job.tokens_in == len(sent.split())  # the prompt's words, as each fake counts tokens
    assert job.tokens_out == 6
    assert job.cost > 0
    assert job.model
    assert job.stop_reason  # the provider's own word (end_turn, STOP, stop, tool_use, …)
    assert job.attempt_rows.get().stop_reason == job.stop_reason


@pytest.mark.django_db(transaction=True)
def test_every_kind_retries_what_is_transient(
    client, api_key, connector, fake_kind, callback_server
):
    fake, server = fake_kind
    server.script([fake.retried])
    server.responder = echo_token
    job = send(client, api_key, connector)

    drain()

    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.SUCCEEDED, 2)
    outcomes = list(job.attempt_rows.values_list("outcome", "error_code"))
    assert outcomes == [("failed", "provider_error"), ("succeeded", "")]
    assert len(callback_server.received) == 1


@pytest.mark.django_db(transaction=True)
def test_every_kind_ends_a_permanent_failure_at_once_and_names_it(
    client, api_key, connector, fake_kind, callback_server
):
    fake, server = fake_kind
    server.script([fake.refused])
    job = send(client, api_key, connector)

    drain()

    job.refresh_from_db()
    assert (job.status, job.attempts, job.error_code) == (Job.Status.DEAD, 1, fake.refused_code)
    assert len(server.prompts()) == 1
    assert callback_server.received == []


def test_connection(admin_client, provider) -> str:
    response = admin_client.post(
        reverse("admin:connectors_provider_changelist"),
        {"action": "test_connection", "_selected_action": [str(provider.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    return " ".join(str(message) for message in response.context["messages"])


test_connection.__test__ = False  # a helper, not a test


def test_test_connection_for_every_kind_checks_the_model(admin_client, kind_provider):
    assert test_connection(admin_client, kind_provider).startswith(f"{kind_provider.name}: OK")

    kind_provider.model = "no-such-model-xyz"
    kind_provider.save()
    answer = test_connection(admin_client, kind_provider)

    assert answer.startswith(f"{kind_provider.name}: model_not_found: ")
    assert "no-such-model-xyz" in answer


def provider_form(fake, server, credential, **overrides) -> dict:
    form = {
        "name": "ai",
        "kind": fake.kind,
        "base_url": server.base_url,
        "model": fake.model,
        "credential": str(credential.pk),
        "timeout_seconds": "30",
        "max_concurrency": "4",
        "requests_per_minute": "",
        "parameters": "{}",
        "settings": json.dumps(fake.settings),
        "price_per_1m_input": "500",
        "price_per_1m_output": "1500",
        "currency": "EUR",
    }
    return form | overrides


def test_the_admin_form_adds_and_changes_a_provider_with_its_kind_settings(
    admin_client, fake_kind, credential
):
    fake, server = fake_kind
    added = admin_client.post(
        reverse("admin:connectors_provider_add"), provider_form(fake, server, credential)
    )
    assert added.status_code == 302, added.context["adminform"].form.errors
    provider = Provider.objects.get(name="ai")
    assert (provider.kind, provider.settings) == (fake.kind, fake.settings)

    page = admin_client.get(reverse("admin:connectors_provider_change", args=[provider.pk]))
    assert page.status_code == 200
    assert "settings" in page.context["adminform"].form.fields

    refused = admin_client.post(
        reverse("admin:connectors_provider_change", args=[provider.pk]),
        provider_form(fake, server, credential, settings='{"colour": "red"}'),
    )
    errors = refused.context["adminform"].form.errors
    assert list(errors) == ["settings"]
    assert errors["settings"][0].startswith("unknown settings colour; known: ")
    provider.refresh_from_db()
    assert provider.settings == fake.settings


@pytest.mark.parametrize(
    ("kind", "own", "message"),
    [
        ("anthropic", {"max_tokens": 0}, "max_tokens must be at least 1"),
        ("azure_openai", {"structured_output": "grammar"}, "structured_output must be one of"),
        ("openai", {"structured_output": 1}, "structured_output must be text"),
        (
            "gemini",
            {"max_tokens": 10},
            "unknown settings max_tokens; known: api, location, project",
        ),
    ],
)
def test_the_admin_form_shows_a_bad_kind_setting_next_to_settings(
    admin_client, credential, kind, own, message
):
    fake = FAKE_KINDS.get(kind)
    form = {
        "name": "ai",
        "kind": kind,
        "base_url": "https://ai.example/v1",
        "model": fake.model if fake else "gpt-test",
        "credential": str(credential.pk),
        "timeout_seconds": "30",
        "max_concurrency": "4",
        "parameters": "{}",
        "settings": json.dumps(own),
        "price_per_1m_input": "0",
        "price_per_1m_output": "0",
        "currency": "USD",
    }

    response = admin_client.post(reverse("admin:connectors_provider_add"), form)

    errors = response.context["adminform"].form.errors
    assert list(errors) == ["settings"]
    assert message in errors["settings"][0]
    assert not Provider.objects.exists()


def test_the_admin_form_lists_each_kind_settings_with_defaults(admin_client):
    page = admin_client.get(reverse("admin:connectors_provider_add")).content.decode()

    assert "anthropic: max_tokens (default 1024), anthropic_version (default 2023-06-01)" in page
    assert "azure_openai: api_version (default 2024-10-21), structured_output" in page


CONFIG = """
credentials:
  - {name: ai-key, kind: api_key, value_env: TEST_AI_KEY}
providers:
  - {name: claude, kind: anthropic, model: claude-sonnet-4-5, credential: ai-key,
     settings: {max_tokens: 2048}}
  - {name: gemini, kind: gemini, model: gemini-2.5-flash, credential: ai-key,
     parameters: {generationConfig: {temperature: 0}}}
  - {name: command, kind: cohere, model: command-a-03-2025, credential: ai-key}
  - {name: local, kind: ollama, base_url: "http://ollama.internal:11434", model: llama3.2,
     parameters: {options: {num_ctx: 8192}}}
  - {name: azure, kind: azure_openai, base_url: "https://contoso.openai.azure.com",
     model: gpt4o-invoices, credential: ai-key,
     settings: {api_version: 2024-08-01-preview, structured_output: json_object}}
  - {name: llama, kind: openai, base_url: "http://llama.internal:8000/v1", model: gemma-3,
     settings: {structured_output: prompt}}
"""


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_import_and_export_round_trip_every_kind_with_its_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_AI_KEY", CANARY_SECRET)
    path = tmp_path / "providers.yaml"
    path.write_text(CONFIG)

    assert run("import_config", str(path)).endswith(
        "Imported: 7 created, 0 updated, 0 unchanged.\n"
    )
    exported = run("export_config")
    (tmp_path / "again.yaml").write_text(exported)
    again = run("import_config", str(tmp_path / "again.yaml"))

    assert again.endswith("0 created, 0 updated, 7 unchanged.\n")
    assert CANARY_SECRET not in exported
    providers = {item["name"]: item for item in yaml.safe_load(exported)["providers"]}
    assert providers["claude"]["settings"] == {"max_tokens": 2048}
    assert providers["azure"]["settings"] == {
        "api_version": "2024-08-01-preview",
        "structured_output": "json_object",
    }
    assert providers["llama"]["settings"] == {"structured_output": "prompt"}
    assert providers["command"]["settings"] == {}
    assert Provider.objects.get(name="gemini").parameters == {
        "generationConfig": {"temperature": 0}
    }


@pytest.mark.django_db
def test_import_names_a_bad_kind_setting_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_AI_KEY", "x")
    path = tmp_path / "providers.yaml"
    path.write_text(
        CONFIG.replace("max_tokens: 2048", "max_tokens: 0").replace(
            "structured_output: prompt", "structured_output: grammar"
        )
    )

    with pytest.raises(Exception) as caught:
        run("import_config", str(path))

    message = str(caught.value)
    assert "providers[0].settings: max_tokens must be at least 1" in message
    assert "providers[5].settings: structured_output must be one of" in message
    assert not Provider.objects.exists()
