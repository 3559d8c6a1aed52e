"""A form per kind on the connector page: fields from the kind's settings, packed into its
config, errors next to their field, secrets never shown."""

import pytest
from django.urls import reverse

from connectors.models import Connector, Credential, Provider
from tests.conftest import CANARY_SECRET
from tests.test_admin import connector_form

pytestmark = pytest.mark.django_db


def make_credential(name: str, kind: str) -> Credential:
    credential = Credential(name=name, kind=kind)
    credential.set_value(CANARY_SECRET)
    credential.save()
    return credential


def form_post(demo_provider, **overrides):
    """The connector form as the page posts it: the settings forms, not the raw JSON."""
    data = connector_form(demo_provider, source_settings_form="1", sink_settings_form="1")
    data.update(overrides)
    return data


def test_the_page_has_a_field_per_setting_of_each_kind(admin_client):
    page = admin_client.get(reverse("admin:connectors_connector_add")).content.decode()

    for name in (
        "source_webhook__accepts",
        "source_db_poll__table",
        "source_file_drop__path",
        "source_amqp__prefetch",
        "sink_http__signing_credential",
    ):
        assert f'name="{name}"' in page
    assert "Advanced: source settings as raw JSON" in page


def test_the_selected_kinds_fields_become_its_config(admin_client, demo_provider):
    response = admin_client.post(
        reverse("admin:connectors_connector_add"),
        form_post(
            demo_provider,
            source_kind="amqp",
            source_amqp__queue="invoices",
            source_amqp__prefetch="5",
            source_amqp__declare="false",
            source_db_poll__table="ignored: another kind",
            source_config='{"this": "is ignored in form mode"}',
        ),
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    connector = Connector.objects.get()
    assert connector.source_config == {"queue": "invoices", "prefetch": 5, "declare": False}


def test_an_error_stands_next_to_the_setting_it_names(admin_client, demo_provider):
    response = admin_client.post(
        reverse("admin:connectors_connector_add"),
        form_post(demo_provider, source_kind="file_drop", source_file_drop__path="relative/dir"),
    )

    page = response.content.decode()
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["source_file_drop__path"] == ["path must be an absolute folder path"]
    assert "source_config" not in errors
    row = page.split('class="form-row field-source_file_drop__path errors"')[1]
    assert row.index("path must be an absolute folder path") < row.index("</div>")
    assert not Connector.objects.exists()


def test_a_missing_required_setting_is_named_at_its_field(admin_client, demo_provider):
    response = admin_client.post(
        reverse("admin:connectors_connector_add"),
        form_post(demo_provider, sink_kind="http", sink_http__auth="bearer"),
    )

    assert response.context["adminform"].form.errors["sink_http__url"] == ["missing url"]


def test_errors_in_another_kinds_hidden_fields_do_not_count(admin_client, demo_provider):
    response = admin_client.post(
        reverse("admin:connectors_connector_add"),
        form_post(demo_provider, source_amqp__prefetch="not a number"),
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Connector.objects.get().source_config == {}


def test_the_raw_json_is_saved_when_chosen(admin_client, demo_provider):
    response = admin_client.post(
        reverse("admin:connectors_connector_add"),
        form_post(
            demo_provider,
            source_config='{"requests_per_minute": 7}',
            source_config_raw="on",
            source_webhook__requests_per_minute="9",
        ),
    )

    assert response.status_code == 302
    assert Connector.objects.get().source_config == {"requests_per_minute": 7}


def test_the_credential_picker_lists_matching_names_never_values(admin_client, make_connector):
    make_credential("erp-signing", "hmac_secret")
    make_credential("erp-token", "bearer")
    make_credential("legacy-db", "database_url")
    connector = make_connector(
        sink_kind="http",
        sink_config={"url": "https://erp.example/cb", "signing_credential": "erp-signing"},
    )

    response = admin_client.get(reverse("admin:connectors_connector_change", args=[connector.pk]))

    form = response.context["adminform"].form
    signing = form["sink_http__signing_credential"]
    assert [value for value, _ in signing.field.choices] == ["", "erp-signing"]
    assert signing.value() == "erp-signing"
    assert [value for value, _ in form["sink_http__credential"].field.choices] == ["", "erp-token"]
    assert [value for value, _ in form["source_db_poll__credential"].field.choices] == [
        "",
        "legacy-db",
    ]
    assert form["sink_http__url"].value() == "https://erp.example/cb"
    assert CANARY_SECRET not in response.content.decode()


def test_saving_the_form_unchanged_keeps_the_config(admin_client, make_connector, demo_provider):
    make_credential("erp-signing", "hmac_secret")
    saved = {"url": "https://erp.example/cb", "signing_credential": "erp-signing", "timeout": 12}
    connector = make_connector(sink_kind="http", sink_config=saved)
    form = (
        admin_client.get(reverse("admin:connectors_connector_change", args=[connector.pk]))
        .context["adminform"]
        .form
    )
    fields = {
        name: form[name].value() or "" for name in form.fields if name.startswith("sink_http__")
    }

    response = admin_client.post(
        reverse("admin:connectors_connector_change", args=[connector.pk]),
        form_post(
            demo_provider,
            sink_kind="http",
            **{"mappings-TOTAL_FORMS": "0", "redaction_rules-TOTAL_FORMS": "0"},
            **fields,
        ),
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    connector.refresh_from_db()
    assert connector.sink_config == saved  # defaults stay implicit


def provider_post(credential, **overrides) -> dict:
    return {
        "name": "claude",
        "kind": "anthropic",
        "base_url": "https://api.anthropic.com",
        "model": "claude-sonnet-4-5",
        "credential": str(credential.pk),
        "timeout_seconds": "30",
        "max_concurrency": "4",
        "requests_per_minute": "",
        "parameters": "{}",
        "settings": "{}",
        "price_per_1m_input": "0",
        "price_per_1m_output": "0",
        "currency": "USD",
        "provider_settings_form": "1",
        **overrides,
    }


def test_a_providers_own_settings_have_a_form_per_kind(admin_client, credential):
    page = admin_client.get(reverse("admin:connectors_provider_add")).content.decode()
    assert 'name="provider_anthropic__max_tokens"' in page
    assert 'name="provider_azure_openai__auth"' in page

    response = admin_client.post(
        reverse("admin:connectors_provider_add"),
        provider_post(credential, provider_anthropic__max_tokens="2048"),
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Provider.objects.get().settings == {"max_tokens": 2048}


def test_a_providers_setting_error_stands_next_to_it(admin_client, credential):
    response = admin_client.post(
        reverse("admin:connectors_provider_add"),
        provider_post(credential, provider_anthropic__max_tokens="999999"),
    )

    errors = response.context["adminform"].form.errors
    assert list(errors) == ["provider_anthropic__max_tokens"]
    assert errors["provider_anthropic__max_tokens"] == [
        "Ensure this value is less than or equal to 128000."
    ]
    assert not Provider.objects.exists()


def test_a_prompt_typo_stands_next_to_the_prompt(admin_client, demo_provider):
    response = admin_client.post(
        reverse("admin:connectors_connector_add"),
        form_post(demo_provider, prompt_template="Classify {{ txet }}"),
    )

    errors = response.context["adminform"].form.errors
    assert errors["prompt_template"] == [
        "The prompt uses txet, which no input mapping provides (input fields: text)."
    ]
    assert not Connector.objects.exists()


def test_a_deleted_input_mapping_does_not_count_for_the_prompt(admin_client, demo_provider):
    response = admin_client.post(
        reverse("admin:connectors_connector_add"),
        form_post(
            demo_provider,
            prompt_template="Classify {{ text }}",
            **{
                "mappings-TOTAL_FORMS": "2",
                "mappings-1-direction": "input",
                "mappings-1-source_path": "note",
                "mappings-1-target_name": "note",
                "mappings-1-position": "1",
                "mappings-0-DELETE": "on",
            },
        ),
    )

    assert response.context["adminform"].form.errors["prompt_template"] == [
        "The prompt uses text, which no input mapping provides (input fields: note)."
    ]


def test_an_error_naming_no_setting_heads_the_kinds_form(admin_client, demo_provider, tmp_path):
    legacy = f"sqlite:///{tmp_path / 'legacy.sqlite3'}"
    credential = make_credential("legacy-db", "database_url")
    credential.set_value(legacy)
    credential.save()
    response = admin_client.post(
        reverse("admin:connectors_connector_add"),
        form_post(
            demo_provider,
            source_kind="db_poll",
            source_db_poll__credential="legacy-db",
            source_db_poll__table="tasks",
            source_db_poll__key_column="id",
            source_db_poll__status_column="ai_status",
        ),
    )

    page = response.content.decode()
    assert response.context["adminform"].form.errors["source_config"] == [
        "the database has no table 'tasks'"
    ]
    panel = page.split('id="source-settings-errors"')[1]
    assert panel.startswith("><li>the database has no table &#x27;tasks&#x27;</li>")
    assert legacy not in page
