"""The main journeys in a real headless Chromium (Debian's package, driven by Playwright).

Screenshots of the key pages are saved to tests/screenshots/ for the README. Without Chromium
the tests skip with the reason; under CI=true a skip is a failure (.ci/run installs Chromium).
"""

import json
import os
import re
import shutil
from pathlib import Path

import httpx
import pytest

from connectors.models import Job
from tests.worker import drain

pytestmark = pytest.mark.django_db(transaction=True)
SCREENSHOTS = Path(__file__).parent / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PASSWORD = "correct-horse-battery-1"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        reason = "Chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser tests, but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the tests' ORM calls stay sync.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            yield browser
            browser.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")


def shot(page, name: str) -> None:
    """The whole page in a window as tall as the page (a full-page capture of a taller page
    draws the admin's sticky sidebar in the middle)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    viewport = page.viewport_size
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": viewport["width"], "height": height})
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    page.set_viewport_size(viewport)


def test_an_integration_admin_builds_a_connector_and_follows_a_record(
    page, live_server, django_user_model, demo_provider, tmp_path
):
    django_user_model.objects.create_superuser("ada", "ada@example.com", PASSWORD)
    log_in(page, live_server, "ada")

    # Create a connector with an input mapping, an output mapping and a redaction rule.
    page.goto(f"{live_server.url}/admin/connectors/connector/add/")
    page.fill("#id_name", "Invoice triage")
    page.dispatch_event("#id_name", "change")
    assert page.input_value("#id_slug") == "invoice-triage"  # prepopulated from the name
    page.select_option("#id_provider", label=str(demo_provider))
    page.fill("#id_prompt_template", "Triage: {{ note }} from {{ email }}")
    for _ in range(3):
        page.click("#mappings-group .add-row a")
    rows = [("input", "note", "note", True), ("input", "customer.email", "email", False)]
    rows.append(("output", "text", "triage", False))
    for index, (direction, source, target, required) in enumerate(rows):
        page.select_option(f"#id_mappings-{index}-direction", direction)
        page.fill(f"#id_mappings-{index}-source_path", source)
        page.fill(f"#id_mappings-{index}-target_name", target)
        if required:
            page.check(f"#id_mappings-{index}-is_required")
    page.click("#redaction_rules-group .add-row a")
    page.select_option("#id_redaction_rules-0-detector", "email")
    page.select_option("#id_redaction_rules-0-action", "mask")
    page.click("input[name=_continue]")
    page.wait_for_selector("#preview-link")
    assert "Rate limit: no limit" in page.inner_text("#intake")
    shot(page, "connector-page")

    # Preview a record: the e-mail is masked before the prompt is built.
    page.click("#preview-link")
    page.fill("#sample", json.dumps({"note": "3 chairs", "customer": {"email": "jo@example.com"}}))
    page.click("input[name=preview]")
    prompt = page.inner_text("#preview-prompt")
    assert prompt == "Triage: 3 chairs from [REDACTED EMAIL]"
    shot(page, "preview")

    # Create an API key: shown once.
    page.goto(f"{live_server.url}/admin/connectors/apikey/add/")
    page.select_option("#id_connector", label="Invoice triage")
    page.fill("#id_name", "erp")
    page.click("input[name=_save]")
    key = page.inner_text("code.issued-key")
    assert key.startswith("ilk_")

    # Send a record through the API and watch the job succeed.
    answer = httpx.post(
        f"{live_server.url}/api/v1/connectors/invoice-triage/records/",
        headers={"Authorization": f"Bearer {key}"},
        json={"note": "12 desks", "customer": {"email": "buyer@example.com"}},
    )
    assert answer.status_code == 202, answer.text
    drain()
    job = Job.objects.get()
    page.goto(f"{live_server.url}/admin/connectors/job/{job.id}/change/")
    assert "Succeeded" in page.inner_text("#content")
    assert "[REDACTED EMAIL]" in page.inner_text("#content")
    assert "buyer@example.com" not in page.content()

    # Find it in the audit log and export the log.
    page.goto(f"{live_server.url}/admin/connectors/auditevent/?q={job.id}")
    assert page.locator("#result_list tbody tr").count() == 3  # created, started, succeeded
    assert "Hash chain verified" in page.inner_text(".chain-status")
    shot(page, "audit-log")
    with page.expect_download() as download_info:
        page.click("text=Export CSV")
    exported = tmp_path / "audit.csv"
    download_info.value.save_as(exported)
    assert str(job.id) in exported.read_text()

    page.goto(f"{live_server.url}/admin/")
    assert re.search(r"100\.0%", page.inner_text("#success-rate"))  # test_browser_jobs: the shot


def test_a_compliance_officer_can_look_but_not_change(
    page, live_server, django_user_model, make_connector
):
    from django.contrib.auth.models import Group

    from connectors import audit

    connector = make_connector("invoices")
    audit.record("connector.create", audit.Actor.system("seed"), connector, connector="invoices")
    officer = django_user_model.objects.create_user("olga", password=PASSWORD, is_staff=True)
    officer.groups.add(Group.objects.get(name="Compliance officer"))
    log_in(page, live_server, "olga")

    page.goto(f"{live_server.url}/admin/connectors/connector/{connector.pk}/change/")
    assert page.locator("input[name=_save]").count() == 0
    assert page.locator("#id_name").count() == 0  # read-only: no inputs
    page.goto(f"{live_server.url}/admin/connectors/credential/")
    assert "403" in page.title() or "Forbidden" in page.content()
    page.goto(f"{live_server.url}/admin/connectors/auditevent/")
    assert page.locator("text=Export CSV").count() == 1
    assert page.locator("select[name=action]").count() == 0  # no actions to run
