"""An integration admin's journeys in a real headless Chromium: signing in through the identity
provider (single sign-on), choosing a redaction detector from the list, and pasting the command
shown once after an API key is created."""

import os
import subprocess

import pytest
from django.contrib.auth.models import User

from connectors.models import AuditEvent, Job, RedactionRule
from tests.fixtures_oidc import CLIENT_SECRET
from tests.test_browser import PASSWORD, browser, log_in, shot  # noqa: F401 (a fixture)
from tests.worker import start_worker_process

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def tab(browser):  # noqa: F811 (the fixture)
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    yield tab
    context.close()


def sign_in_with_the_provider(tab, live_server, provider) -> None:
    tab.goto(f"{live_server.url}/admin/")
    tab.click("#single-sign-on a")
    tab.wait_for_selector("#approve")  # the provider's own page
    assert tab.url.startswith(f"{provider.issuer}/authorize?")
    tab.click("#approve")
    tab.wait_for_selector("#site-name, .errornote, .messagelist")


def test_an_admin_signs_in_through_the_identity_provider_with_the_role_of_their_group(
    tab, live_server, oidc_provider
):
    oidc_provider.user = {"sub": "u-7", "preferred_username": "olga", "groups": ["approvers"]}
    tab.goto(f"{live_server.url}/admin/login/")
    assert tab.inner_text("#single-sign-on a") == "Sign in with Test IdP"
    assert tab.locator("#id_username").count() == 1  # local accounts still sign in
    shot(tab, "sso-login")

    sign_in_with_the_provider(tab, live_server, oidc_provider)
    assert tab.url == f"{live_server.url}/admin/"
    assert tab.text_content("#user-tools strong") == "olga"
    assert list(User.objects.get(username="olga").groups.values_list("name", flat=True)) == [
        "Reviewer"
    ]
    tab.goto(f"{live_server.url}/admin/connectors/connector/add/")
    assert "403" in tab.title() or "Forbidden" in tab.content()

    # The group changes at the provider: the next sign-in gives the new role, takes the old one.
    tab.context.clear_cookies()  # a new browser session
    oidc_provider.user["groups"] = ["interlock-admins"]
    sign_in_with_the_provider(tab, live_server, oidc_provider)
    tab.goto(f"{live_server.url}/admin/connectors/connector/add/")
    assert tab.locator("#id_name").count() == 1
    assert list(User.objects.get(username="olga").groups.values_list("name", flat=True)) == [
        "Integration admin"
    ]

    # No mapped group at all: refused with the reason, on the login page.
    tab.context.clear_cookies()
    oidc_provider.user["groups"] = ["cafeteria"]
    sign_in_with_the_provider(tab, live_server, oidc_provider)
    assert tab.url == f"{live_server.url}/admin/login/"
    assert "is in none of the groups that grant a role here" in tab.inner_text(".messagelist")
    assert CLIENT_SECRET not in tab.content()
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"auth.login", "auth.sso_roles", "auth.sso_refused"} <= actions


def test_an_admin_picks_a_detector_from_the_list_with_its_example(
    tab, live_server, django_user_model, make_connector
):
    connector = make_connector("invoices")
    django_user_model.objects.create_superuser("ada", "ada@example.com", PASSWORD)
    log_in(tab, live_server, "ada")
    tab.goto(f"{live_server.url}/admin/connectors/connector/{connector.pk}/change/")
    tab.click("#redaction_rules-group .add-row a")
    select = "#id_redaction_rules-0-detector"
    labels = tab.locator(f"{select} option").all_inner_texts()
    assert "iban: IBANs (country format, mod 97) (e.g. DE89 3704 0044 0532 0130 00)" in labels
    assert tab.locator(f"{select} optgroup").evaluate_all("els => els.map(e => e.label)") == [
        "Built-in detectors",
        "Your own",
    ]
    tab.select_option(select, "iban")
    tab.select_option("#id_redaction_rules-0-action", "mask")
    tab.click("input[name=_continue]")
    tab.wait_for_selector("#preview-link")
    assert RedactionRule.objects.get().detector == "iban"


def test_an_admin_creates_a_key_and_pastes_the_command_shown(
    tab, live_server, django_user_model, make_connector, settings, redis_url
):
    connector = make_connector("invoices", inputs=(("note", "note", True),), prompt="{{ note }}")
    django_user_model.objects.create_superuser("ada", "ada@example.com", PASSWORD)
    log_in(tab, live_server, "ada")
    tab.goto(f"{live_server.url}/admin/connectors/apikey/add/?connector={connector.pk}")
    tab.select_option("#id_connector", label=str(connector))
    tab.fill("#id_name", "erp")
    tab.check("#id_with_signing_secret")
    tab.click("input[name=_save]")
    command = tab.inner_text("pre.ready-command")
    assert tab.inner_text("code.issued-key") in command
    assert tab.inner_text("code.issued-secret") in command
    shot(tab, "api-key-created")

    worker = start_worker_process(settings, redis_url)
    try:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
        answer = subprocess.run(
            ["sh", "-c", command], env=environment, capture_output=True, timeout=60, check=True
        )
    finally:
        worker.terminate()
        worker.wait(10)
    assert b'"status": "succeeded"' in answer.stdout or b'"status":"succeeded"' in answer.stdout
    assert Job.objects.get().input_data == {"note": "example note"}
