"""Configuration as code: export, import, idempotency, validation, no secrets."""

import io
import json

import pytest
import yaml
from django.core.management import CommandError, call_command

from connectors.models import AuditEvent, Connector, Credential, FieldMapping, Provider
from tests.conftest import CANARY_SECRET

pytestmark = pytest.mark.django_db

CONFIG = """
credentials:
  - {name: openai-key, kind: api_key, value_env: TEST_OPENAI_KEY}
  - {name: erp-callback, kind: bearer, value_env: TEST_ERP_TOKEN}
providers:
  - {name: gpt, kind: openai, base_url: "https://api.openai.com/v1", model: gpt-4o-mini,
     credential: openai-key, max_concurrency: 8}
connectors:
  - slug: invoices
    name: Invoice approval
    source: {kind: webhook}
    provider: gpt
    input_mapping:
      - {from: text_field, to: text, required: true}
      - {from: customer.ssn, to: ssn}
    redaction:
      - {detector: ssn, action: tokenize}
      - {detector: email, action: mask}
    prompt: "Approve or reject this invoice note: {{ text }} (customer {{ ssn }}). Answer JSON."
    output:
      format: json
      schema:
        type: object
        required: [decision]
        properties: {decision: {enum: [approve, reject]}, reason: {type: string}}
    output_mapping:
      - {from: decision, to: ai_decision}
      - {from: reason, to: ai_reason}
    sink: {kind: http, url: "https://erp.internal/ai-callback", credential: erp-callback}
    max_attempts: 5
"""


@pytest.fixture
def secrets_in_env(monkeypatch):
    monkeypatch.setenv("TEST_OPENAI_KEY", CANARY_SECRET)
    monkeypatch.setenv("TEST_ERP_TOKEN", CANARY_SECRET + "-erp")


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "interlock.yaml"
    path.write_text(CONFIG)
    return path


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_import_creates_the_whole_setup(secrets_in_env, config_file):
    output = run("import_config", str(config_file))

    assert output.endswith("Imported: 4 created, 0 updated, 0 unchanged.\n")
    connector = Connector.objects.get(slug="invoices")
    assert connector.provider.name == "gpt"
    assert connector.sink_config == {
        "url": "https://erp.internal/ai-callback",
        "credential": "erp-callback",
    }
    assert list(connector.mappings.values_list("direction", "source_path", "target_name")) == [
        ("input", "text_field", "text"),
        ("input", "customer.ssn", "ssn"),
        ("output", "decision", "ai_decision"),
        ("output", "reason", "ai_reason"),
    ]
    assert list(connector.redaction_rules.values_list("detector", "action")) == [
        ("ssn", "tokenize"),
        ("email", "mask"),
    ]
    assert Credential.objects.get(name="openai-key").reveal() == CANARY_SECRET
    assert AuditEvent.objects.filter(action="config.import").count() == 1


def test_import_is_idempotent(secrets_in_env, config_file):
    run("import_config", str(config_file))
    events = AuditEvent.objects.count()

    output = run("import_config", str(config_file))

    assert output == "Imported: 0 created, 0 updated, 4 unchanged.\n"
    assert AuditEvent.objects.count() == events + 1  # only the config.import event itself
    assert FieldMapping.objects.count() == 4


def test_import_updates_what_changed_with_an_audited_diff(secrets_in_env, config_file):
    run("import_config", str(config_file))
    config_file.write_text(CONFIG.replace("max_attempts: 5", "max_attempts: 7"))

    output = run("import_config", str(config_file))

    assert "updated connector invoices" in output
    event = AuditEvent.objects.get(action="connector.update")
    assert event.changes == {"max_attempts": [5, 7]}


def test_export_then_import_round_trips(secrets_in_env, config_file, tmp_path):
    run("import_config", str(config_file))
    exported = run("export_config", "--format", "json")
    document = json.loads(exported)
    assert document["credentials"][0] == {
        "name": "erp-callback",
        "kind": "bearer",
        "value_env": "ERP_CALLBACK",
    }
    assert CANARY_SECRET not in exported

    again = tmp_path / "again.json"
    again.write_text(exported)
    assert run("import_config", str(again)).endswith("0 created, 0 updated, 4 unchanged.\n")


def test_yaml_export_is_valid_yaml_without_secrets(secrets_in_env, config_file):
    run("import_config", str(config_file))

    exported = run("export_config")

    assert yaml.safe_load(exported)["connectors"][0]["slug"] == "invoices"
    assert CANARY_SECRET not in exported


def test_import_reports_every_problem_and_writes_nothing(config_file, monkeypatch):
    monkeypatch.setenv("TEST_ERP_TOKEN", "x")
    broken = CONFIG.replace("{{ text }}", "{% if %}").replace("detector: email", "detector: dna")
    config_file.write_text(broken.replace("provider: gpt", "provider: nope"))

    with pytest.raises(CommandError) as caught:
        run("import_config", str(config_file))

    message = str(caught.value)
    assert "credentials[0].value_env: environment variable TEST_OPENAI_KEY is not set" in message
    assert "connectors[0].provider: no provider named 'nope'" in message
    assert "connectors[0].prompt_template" in message
    assert "connectors[0].redaction[1].detector" in message
    assert not Connector.objects.exists()
    assert not Provider.objects.exists()
    assert not AuditEvent.objects.filter(action="config.import").exists()


def test_import_refuses_a_secret_written_in_the_file(config_file, secrets_in_env):
    config_file.write_text(CONFIG.replace("value_env: TEST_ERP_TOKEN", "value: hunter2"))

    with pytest.raises(CommandError, match=r"credentials\[1\]\.value: secrets never go"):
        run("import_config", str(config_file))


@pytest.mark.parametrize("variable", ["AUDIT_HMAC_KEY", "SECRET_KEY", "DATABASE_URL"])
def test_import_cannot_copy_interlock_own_secrets_into_a_credential(
    config_file, secrets_in_env, variable
):
    config_file.write_text(CONFIG.replace("value_env: TEST_ERP_TOKEN", f"value_env: {variable}"))

    with pytest.raises(CommandError, match=rf"{variable} is one of Interlock's own settings"):
        run("import_config", str(config_file))
    assert not Credential.objects.exists()


def test_import_refuses_a_file_that_is_not_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("connectors: [unclosed")

    with pytest.raises(CommandError, match="not valid JSON or YAML"):
        run("import_config", str(path))


def test_redaction_options_and_the_answer_guard_round_trip(secrets_in_env, config_file, tmp_path):
    config_file.write_text(
        CONFIG.replace(
            "    max_attempts: 5\n",
            "    max_attempts: 5\n    phone_regions: [DE, AT]\n    id_countries: [DE]\n",
        ).replace("      format: json\n", "      format: json\n      pii_in_answer: fail\n")
    )
    run("import_config", str(config_file))
    exported = yaml.safe_load(run("export_config"))

    [connector] = exported["connectors"]
    assert (connector["phone_regions"], connector["id_countries"]) == (["DE", "AT"], ["DE"])
    assert connector["output"]["pii_in_answer"] == "fail"
    stored = Connector.objects.get(slug="invoices")
    assert (stored.phone_regions, stored.answer_pii) == (["DE", "AT"], "fail")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("    phone_regions: [XX]\n", r"connectors\[0\]\.phone_regions: unknown 'XX'"),
        ("    id_countries: [BR]\n", r"connectors\[0\]\.id_countries: unknown 'BR'"),
        ("    phone_regions: DE\n", r"phone_regions: must be a list of country codes"),
    ],
)
def test_import_refuses_unknown_regions_and_countries(secrets_in_env, config_file, line, message):
    config_file.write_text(CONFIG.replace("    max_attempts: 5\n", f"    max_attempts: 5\n{line}"))

    with pytest.raises(CommandError, match=message):
        run("import_config", str(config_file))
    assert not Connector.objects.exists()
