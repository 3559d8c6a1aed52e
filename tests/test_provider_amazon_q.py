"""The amazon_q kind against a local Amazon Q Business that checks SigV4 signatures (ChatSync)."""

import io

import pytest
import yaml
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse

from connectors.errors import ProviderError
from connectors.models import Connector, Job, Provider
from connectors.plugins import SettingError
from connectors.providers.amazon_q import AmazonQProvider
from connectors.providers.base import ProviderConfig
from tests.conftest import CANARY_SECRET, CANARY_SSN, post_records
from tests.fixtures_aws import ACCESS_KEY_ID, AmazonQServer
from tests.worker import drain

APPLICATION = AmazonQServer.APPLICATION
SCHEMA = {"type": "object", "required": ["decision"], "properties": {"decision": {}}}


def amazon_q(server, *, model=APPLICATION, settings=None, secret=None):
    secret = f"{ACCESS_KEY_ID}:{CANARY_SECRET}" if secret is None else secret
    config = ProviderConfig("amazon_q", server.base_url, model, 5, {}, settings or {})
    return AmazonQProvider(config, secret)


@pytest.fixture
def q_provider(db, amazon_q_server, aws_credential):
    return Provider.objects.create(
        name="q-hr",
        kind="amazon_q",
        base_url=amazon_q_server.base_url,
        model=APPLICATION,
        credential=aws_credential,
        timeout_seconds=5,
    )


def test_chat_sync_is_signed_for_qbusiness_and_sends_the_chat_mode(amazon_q_server):
    amazon_q_server.reply("Employees get 25 days of leave.")

    completion = amazon_q(amazon_q_server, settings={"chat_mode": "CREATOR_MODE"}).complete(
        "How many days of leave?"
    )

    [request] = amazon_q_server.requests
    assert (request.method, request.raw_path) == (
        "POST",
        f"/applications/{APPLICATION}/conversations?sync",
    )
    assert "/us-east-1/qbusiness/aws4_request" in request.headers["authorization"]
    assert request.body == {"userMessage": "How many days of leave?", "chatMode": "CREATOR_MODE"}
    assert completion.text == "Employees get 25 days of leave."
    assert (completion.tokens_in, completion.tokens_out) == (0, 0)  # Q reports no usage


def test_a_user_id_travels_in_the_signed_query(amazon_q_server):
    amazon_q(amazon_q_server, settings={"user_id": "erp@example.com"}).complete("hi")

    assert amazon_q_server.requests[0].raw_path.endswith("?sync&userId=erp%40example.com")


def test_a_json_schema_is_refused_without_a_call(amazon_q_server):
    with pytest.raises(ProviderError) as caught:
        amazon_q(amazon_q_server).complete("Decide", json_schema=SCHEMA)

    assert (caught.value.code, caught.value.permanent) == ("structured_output_unsupported", True)
    assert amazon_q_server.requests == []


@pytest.mark.parametrize(
    ("step", "code", "permanent", "message"),
    [
        (("status", 429), "provider_error", False, "ThrottlingException"),
        (("status", 500), "provider_error", False, "InternalServerException"),
        (("status", 424), "provider_error", False, "ExternalResourceException"),
        (("status", 400), "provider_error", True, "ValidationException"),
        (("status", 409), "provider_error", True, "ConflictException"),
        (("status", 403), "provider_error", True, "AccessDeniedException"),
        (
            ("error", 400, "LicenseNotFoundException", "No license"),
            "provider_error",
            True,
            "needs a Q subscription",
        ),
    ],
)
def test_errors_are_classified_by_their_aws_type(amazon_q_server, step, code, permanent, message):
    amazon_q_server.script([step])

    with pytest.raises(ProviderError) as caught:
        amazon_q(amazon_q_server).complete("hello")

    assert (caught.value.code, caught.value.permanent) == (code, permanent)
    assert message in caught.value.message


def test_a_wrong_secret_is_a_named_signature_failure(amazon_q_server):
    with pytest.raises(ProviderError, match="InvalidSignatureException") as caught:
        amazon_q(amazon_q_server, secret=f"{ACCESS_KEY_ID}:not-the-secret").complete("hello")

    assert caught.value.permanent


def test_test_connection_gets_the_application(amazon_q_server):
    answer = amazon_q(amazon_q_server).test_connection()

    assert answer == "OK: the key was accepted and application HR answers is ACTIVE in us-east-1"
    assert amazon_q_server.requests[0].method == "GET"
    other = "b1b2c3d4-5678-90ab-cdef-EXAMPLE22222"
    with pytest.raises(ProviderError) as unknown:
        amazon_q(amazon_q_server, model=other).test_connection()
    assert unknown.value.code == "model_not_found"
    assert other in unknown.value.message


@pytest.mark.parametrize(
    ("model", "own", "setting", "message"),
    [
        ("not-an-id", {}, "model", "the Q Business application's id"),
        (APPLICATION, {"chat_mode": "PLUGIN_MODE"}, "chat_mode", "chat_mode must be one of"),
        (APPLICATION, {"region": "mars"}, "region", "region must be an AWS region"),
    ],
)
def test_settings_are_validated(model, own, setting, message):
    with pytest.raises(SettingError, match=message) as refused:
        AmazonQProvider.validate_provider("", model, {}, own)

    assert refused.value.setting == setting


def test_a_json_schema_connector_on_amazon_q_is_refused_on_save(make_connector, q_provider):
    connector = make_connector("hr", provider=q_provider)
    connector.output_format, connector.output_schema = "json", SCHEMA

    with pytest.raises(ValidationError) as refused:
        connector.full_clean()

    assert refused.value.message_dict == {
        "output_format": [
            "a amazon_q provider cannot answer JSON against a schema: use output format text, "
            "or another provider"
        ]
    }


def test_a_json_schema_connector_with_amazon_q_as_fallback_is_refused_too(
    make_connector, q_provider, openai_provider
):
    connector = make_connector("hr", provider=openai_provider, fallback_providers=["q-hr"])
    connector.output_format, connector.output_schema = "json", SCHEMA

    with pytest.raises(ValidationError, match="amazon_q provider cannot answer JSON"):
        connector.full_clean()


@pytest.mark.django_db(transaction=True)
def test_a_text_connector_runs_through_amazon_q_with_a_worker(
    client, api_key, make_connector, q_provider, amazon_q_server, callback_server
):
    amazon_q_server.reply("Leave request approved per policy HR-7.")
    connector = make_connector(
        "hr",
        provider=q_provider,
        inputs=[("note", "text", True), ("ssn", "ssn", False)],
        outputs=[("text", "ai_answer")],
        redaction=[("ssn", "tokenize")],
        prompt="Decide on {{ text }} for {{ ssn }}",
        sink_kind="http",
        sink_config={"url": callback_server.url},
    )
    response = post_records(
        client, "hr", {"note": "leave", "ssn": CANARY_SSN}, key=api_key(connector)[1]
    )
    assert response.status_code == 202

    drain()

    job = Job.objects.get()
    assert (job.status, job.provider_name, job.tokens_in) == (Job.Status.SUCCEEDED, "q-hr", 0)
    assert amazon_q_server.prompts() == ["Decide on leave for <SSN_1>"]
    [(_, _, payload)] = callback_server.received
    assert payload["result"] == {"ai_answer": "Leave request approved per policy HR-7."}


def test_the_connector_form_shows_the_refusal_next_to_output_format(
    admin_client, q_provider, demo_provider
):
    connector = Connector.objects.create(
        name="HR", slug="hr", provider=demo_provider, prompt_template="{{ text }}"
    )
    page = admin_client.get(reverse("admin:connectors_connector_change", args=[connector.pk]))
    form = page.context["adminform"].form
    data = {name: form.initial.get(name, field.initial) for name, field in form.fields.items()}
    data = {key: "" if value is None else value for key, value in data.items()}
    data |= {
        "provider": str(q_provider.pk),
        "output_format": "json",
        "output_schema": '{"type": "object"}',
        "source_config": "{}",
        "sink_config": "{}",
        "phone_regions": "[]",
        "id_countries": "[]",
        "fallback_providers": "[]",
        "is_enabled": "on",
    }
    for formset in page.context["inline_admin_formsets"]:
        prefix = formset.formset.prefix
        data |= {f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"}

    response = admin_client.post(
        reverse("admin:connectors_connector_change", args=[connector.pk]), data
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "amazon_q provider cannot answer JSON" in errors["output_format"][0]
    connector.refresh_from_db()
    assert connector.output_format == "text"


def test_import_export_round_trip_and_refuses_a_json_connector(tmp_path, monkeypatch, db):
    monkeypatch.setenv("TEST_AWS_KEY", f"{ACCESS_KEY_ID}:{CANARY_SECRET}")
    config = f"""
credentials:
  - {{name: aws, kind: aws_access_key, value_env: TEST_AWS_KEY}}
providers:
  - {{name: q, kind: amazon_q, model: {APPLICATION}, credential: aws,
     settings: {{region: eu-west-1, chat_mode: CREATOR_MODE}}}}
  - {{name: claude, kind: bedrock, model: "anthropic.claude-3-5-haiku-20241022-v1:0",
     credential: aws, settings: {{region: eu-central-1, max_tokens: 2048}}}}
"""
    path = tmp_path / "aws.yaml"
    path.write_text(config)
    out = io.StringIO()
    call_command("import_config", str(path), stdout=out)
    exported = io.StringIO()
    call_command("export_config", stdout=exported)
    (tmp_path / "again.yaml").write_text(exported.getvalue())
    again = io.StringIO()
    call_command("import_config", str(tmp_path / "again.yaml"), stdout=again)

    assert out.getvalue().endswith("3 created, 0 updated, 0 unchanged.\n")
    assert again.getvalue().endswith("0 created, 0 updated, 3 unchanged.\n")
    assert CANARY_SECRET not in exported.getvalue()
    providers = {p["name"]: p for p in yaml.safe_load(exported.getvalue())["providers"]}
    assert providers["q"]["settings"] == {"region": "eu-west-1", "chat_mode": "CREATOR_MODE"}
    assert providers["claude"]["settings"] == {"region": "eu-central-1", "max_tokens": 2048}

    path.write_text(
        config
        + """connectors:
  - slug: hr
    provider: q
    prompt: "{{ text }}"
    output: {format: json, schema: {type: object}}
"""
    )
    with pytest.raises(Exception, match="amazon_q provider cannot answer JSON"):
        call_command("import_config", str(path), stdout=io.StringIO())
    assert not Connector.objects.exists()


def test_a_provider_json_connectors_use_cannot_become_amazon_q(
    admin_client, make_connector, openai_provider, aws_credential
):
    make_connector("invoices", provider=openai_provider, output_format="json", output_schema=SCHEMA)
    form = {
        "name": "gpt",
        "kind": "amazon_q",
        "base_url": "",
        "model": APPLICATION,
        "credential": str(aws_credential.pk),
        "timeout_seconds": "30",
        "max_concurrency": "4",
        "parameters": "{}",
        "settings": "{}",
        "price_per_1m_input": "0",
        "price_per_1m_output": "0",
        "currency": "USD",
    }

    response = admin_client.post(
        reverse("admin:connectors_provider_change", args=[openai_provider.pk]), form
    )

    errors = response.context["adminform"].form.errors
    assert errors["kind"] == [
        "a amazon_q provider cannot answer JSON against a schema, which connectors invoices ask "
        "of this one"
    ]
    openai_provider.refresh_from_db()
    assert openai_provider.kind == "openai"
