"""Configure without knowing JSON, in a real headless Chromium: a connector of every source
kind built through the kind forms alone, Connect listing a legacy database's tables and columns,
the file drop's folder, an error next to its field, a private callback said on save and a test
delivery sent. Screenshots for the README."""

import pytest

from connectors.models import AuditEvent, Connector, Credential, Provider
from tests.legacy_databases import create_tasks_table
from tests.test_browser import PASSWORD, SCREENSHOTS, browser, log_in, page  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)
SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def ada(page, live_server, django_user_model):  # noqa: F811
    django_user_model.objects.create_superuser("ada", "ada@example.com", PASSWORD)
    log_in(page, live_server, "ada")
    return page


def shot_of(tab, name: str, selector: str) -> None:
    """A screenshot of one part of the page (for the README)."""
    tab.locator(selector).first.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def add_credential(name: str, kind: str, value: str) -> None:
    credential = Credential(name=name, kind=kind)
    credential.set_value(value)
    credential.save()


def start_connector(tab, live_server, name: str, provider: Provider, source_kind: str) -> None:
    """The add page with the parts every connector needs; the source kind's form shown."""
    tab.goto(f"{live_server.url}/admin/connectors/connector/add/")
    tab.fill("#id_name", name)
    tab.dispatch_event("#id_name", "change")
    tab.select_option("#id_provider", label=str(provider))
    tab.fill("#id_prompt_template", "Summarise: {{ text }}")
    tab.click("#mappings-group .add-row a")
    tab.select_option("#id_mappings-0-direction", "input")
    tab.fill("#id_mappings-0-source_path", "text")
    tab.fill("#id_mappings-0-target_name", "text")
    tab.select_option("#id_source_kind", source_kind)
    assert tab.is_visible(f'#source-settings .kind-panel[data-kind="{source_kind}"]')
    hidden = tab.locator("#source-settings .kind-panel[hidden]")
    assert hidden.count() == 3  # the other source kinds' forms


def save(tab) -> Connector:
    tab.click("input[name=_continue]")
    tab.wait_for_selector("#preview-link")
    return Connector.objects.get(slug=tab.input_value("#id_slug"))


def test_a_connector_of_every_source_kind_through_the_forms_alone(
    ada, live_server, demo_provider, tmp_path
):
    tab = ada
    start_connector(tab, live_server, "Web intake", demo_provider, "webhook")
    tab.fill("#id_source_webhook__accepts", "json\nxml")
    tab.fill("#id_source_webhook__requests_per_minute", "120")
    tab.select_option("#id_source_webhook__header", "false")
    assert save(tab).source_config == {
        "requests_per_minute": 120,
        "accepts": ["json", "xml"],
        "header": False,
    }
    assert tab.input_value("#id_source_webhook__accepts") == "json\nxml"  # shown back

    # The raw JSON stays reachable: typing in it ticks "Save the raw JSON"; its error shows.
    tab.click("text=Advanced: source settings as raw JSON")
    tab.fill("#id_source_config", '{"accepts": ["soap"], "colour": "red"}')
    assert tab.is_checked("#id_source_config_raw")
    tab.click("input[name=_continue]")
    assert "unknown keys colour" in tab.inner_text(".field-source_config .errorlist")
    assert tab.is_visible(".field-source_config .errorlist")  # its fieldset opened
    tab.fill("#id_source_config", '{"accepts": ["soap"]}')
    assert save(tab).source_config == {"accepts": ["soap"]}

    start_connector(tab, live_server, "Queue intake", demo_provider, "amqp")
    tab.fill("#id_source_amqp__queue", "invoices")
    tab.fill("#id_source_amqp__prefetch", "20")
    assert save(tab).source_config == {"queue": "invoices", "prefetch": 20}  # defaults implicit

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "march.csv").write_text("text\nthree chairs\n")
    (inbox / "readme.txt").write_text("not a record")
    start_connector(tab, live_server, "File intake", demo_provider, "file_drop")
    tab.fill("#id_source_file_drop__path", str(inbox))
    tab.fill("#id_source_file_drop__pattern", "*.csv")
    tab.click("#folder-look")
    tab.wait_for_selector("#folder-files tbody tr")
    rows = tab.locator("#folder-files tbody tr")
    assert rows.count() == 2
    listed = {rows.nth(n).locator("td").nth(0).inner_text(): rows.nth(n) for n in range(2)}
    assert listed["march.csv"].locator("td").nth(4).inner_text() == "yes"
    assert listed["readme.txt"].locator("td").nth(4).inner_text() == "no"
    assert "2 entries in" in tab.inner_text("#folder-status")
    shot_of(tab, "form-file-drop", "#source-settings")
    assert save(tab).source_config == {"path": str(inbox), "pattern": "*.csv"}

    legacy = f"sqlite:///{tmp_path / 'legacy.sqlite3'}"
    table = create_tasks_table(legacy, 2)
    tab.goto(f"{live_server.url}/admin/connectors/credential/add/")  # the URL, typed once
    tab.fill("#id_name", "legacy-db")
    tab.select_option("#id_kind", "database_url")
    tab.fill("#id_value", legacy)
    tab.click("input[name=_save]")
    tab.wait_for_selector(".messagelist .success")
    start_connector(tab, live_server, "Table intake", demo_provider, "db_poll")
    tab.select_option("#id_source_db_poll__credential", "legacy-db")
    tab.click("#db-connect")
    tab.wait_for_selector("select#id_source_db_poll__table")
    tab.select_option("#id_source_db_poll__table", table.name)
    tab.wait_for_selector("select#id_source_db_poll__status_column")
    assert "has 7 columns" in tab.inner_text("#db-connect-status")
    tab.select_option("#id_source_db_poll__key_column", "id")
    tab.select_option("#id_source_db_poll__status_column", "ai_status")
    tab.select_option("#id_source_db_poll__error_column", "ai_error")
    tab.fill("#id_source_db_poll__columns", "title\nbody")
    shot_of(tab, "form-db-poll", "#source-settings")
    assert save(tab).source_config == {
        "credential": "legacy-db",
        "table": table.name,
        "key_column": "id",
        "status_column": "ai_status",
        "columns": ["title", "body"],
        "error_column": "ai_error",
    }
    assert legacy not in tab.content()  # the credential is named, never shown
    assert set(Connector.objects.values_list("source_kind", flat=True)) == {
        "webhook",
        "amqp",
        "file_drop",
        "db_poll",
    }


def test_an_error_stands_next_to_its_field(ada, live_server, demo_provider):
    tab = ada
    start_connector(tab, live_server, "File intake", demo_provider, "file_drop")
    tab.fill("#id_source_file_drop__path", "relative/inbox")
    tab.click("input[name=_continue]")
    row = tab.locator(".form-row.field-source_file_drop__path.errors")
    assert row.locator(".errorlist").inner_text() == "path must be an absolute folder path"
    assert tab.is_visible(".field-source_file_drop__path .errorlist")
    assert not Connector.objects.exists()


def test_a_private_callback_is_said_on_save_and_a_test_delivery_is_sent(
    ada, live_server, demo_provider, callback_server, settings
):
    tab = ada
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    add_credential("erp-signing", "hmac_secret", SIGNING_SECRET)
    start_connector(tab, live_server, "Callback", demo_provider, "webhook")
    tab.select_option("#id_sink_kind", "http")
    tab.fill("#id_sink_http__url", callback_server.url)
    tab.select_option("#id_sink_http__signing_credential", "erp-signing")
    connector = save(tab)

    warning = tab.inner_text(".messagelist .warning")
    assert warning.startswith("Private address: url 127.0.0.1 resolves to 127.0.0.1")
    assert "Allow it with OUTBOUND_ALLOWED_NETWORKS (e.g. 127.0.0.1/32)" in warning
    shot_of(tab, "form-sink-warning", ".messagelist")
    assert connector.sink_config == {
        "url": callback_server.url,
        "signing_credential": "erp-signing",
    }

    tab.click("#send-test-delivery")
    assert "OUTBOUND_ALLOWED_NETWORKS" in tab.inner_text(".messagelist .error")
    assert callback_server.received == []

    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    tab.click("#send-test-delivery")
    success = tab.inner_text(".messagelist .success")
    assert success == f"Test delivery: delivered to {callback_server.url}: status 200"
    [(_, _, body)] = callback_server.received
    assert body["result"]["interlock_test"] is True
    assert callback_server.verify(SIGNING_SECRET, 0)
    assert AuditEvent.objects.filter(action="connector.test_delivery").count() == 2
    assert SIGNING_SECRET not in tab.content()
    shot_of(tab, "form-sink", "#sink-settings")

    tab.goto(f"{live_server.url}/admin/connectors/connector/")
    assert "HTTP callback, signed" in tab.inner_text("#result_list")


def test_a_providers_kind_form_follows_the_kind(ada, live_server, credential):
    tab = ada
    tab.goto(f"{live_server.url}/admin/connectors/provider/add/")
    tab.fill("#id_name", "claude")
    tab.select_option("#id_kind", "anthropic")
    assert tab.is_visible("#id_provider_anthropic__max_tokens")
    assert not tab.is_visible("#id_provider_azure_openai__auth")
    tab.fill("#id_model", "claude-sonnet-4-5")
    tab.select_option("#id_credential", label=str(credential))
    tab.fill("#id_provider_anthropic__max_tokens", "2048")
    tab.click("input[name=_save]")
    tab.wait_for_selector(".messagelist .success")
    assert Provider.objects.get(name="claude").settings == {"max_tokens": 2048}
