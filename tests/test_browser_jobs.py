"""The on-call pages in a real headless Chromium: a job's timeline (collapsible data, Retry on
the page), the job list at 1,400 px and narrower with every column on screen, and the dashboard
with its axes and sparklines. Screenshots for the README."""

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from connectors.models import AuditEvent, Job, JobAttempt
from tests.conftest import CANARY_SSN, post_records
from tests.test_browser import PASSWORD, browser, log_in, page, shot  # noqa: F401
from tests.worker import drain

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def history(make_connector, api_key, client, django_user_model, demo_provider):
    """Three connectors (two named alike), a day of jobs and one real run with tokenized PII."""
    demo_provider.currency = "EUR"
    demo_provider.save()
    django_user_model.objects.create_superuser("ada", "ada@example.com", PASSWORD)
    claims = make_connector(
        "claims",
        inputs=(("text", "text", True), ("ssn", "ssn", False)),
        outputs=(("text", "summary"),),
        redaction=(("ssn", "tokenize"),),
        prompt="Summarise the claim: {{ text }} (customer {{ ssn }})",
    )
    invoices = make_connector("invoices")
    copy = make_connector("invoices-imported")
    copy.name = invoices.name
    copy.save()
    response = post_records(
        client,
        "claims",
        {"text": "water damage in the kitchen", "ssn": CANARY_SSN},
        key=api_key(claims)[1],
    )
    assert response.status_code == 202
    drain()
    real = Job.objects.get()
    random.seed(7)
    now = timezone.now()
    rows, attempts = [], []
    for n in range(600):
        connector = (claims, invoices, copy)[n % 3]
        status = random.choice(["succeeded"] * 18 + ["dead", "failed"])
        created = now - timedelta(minutes=random.uniform(1, 23 * 60) if n % 4 else 95)
        job = Job(
            connector=connector,
            idempotency_key=f"seed-{n}",
            source_reference=f"{connector.slug}-{1000 + n}",
            status=status,
            attempts=1,
            created_at=created,
            finished_at=created + timedelta(milliseconds=400) if status != "failed" else None,
            ai_ms=random.randint(150, 700),
            tokens_in=80,
            tokens_out=20,
            error_code="" if status == "succeeded" else random.choice(["timeout", "sink_error"]),
            cost=Decimal("0.00012"),
        )
        rows.append(job)
        attempts.append(
            JobAttempt(
                job=job,
                number=1,
                outcome="succeeded" if status == "succeeded" else "failed",
                started_at=created,
                provider_name=demo_provider.name,
                tokens_in=80,
                tokens_out=20,
                cost=Decimal("0.00012"),
            )
        )
    Job.objects.bulk_create(rows)
    JobAttempt.objects.bulk_create(attempts)
    return real


def test_a_job_reads_as_its_journey_and_is_retried_from_its_page(page, live_server, history):  # noqa: F811
    log_in(page, live_server, "ada")
    page.goto(f"{live_server.url}/admin/connectors/job/{history.id}/change/")

    steps = page.locator("#job-timeline li.step")
    assert steps.count() == 8
    assert page.inner_text("#step-redaction .step-summary") == "SSN: 1"
    prompt = page.locator("#step-prompt pre")
    assert prompt.is_visible()  # the prompt is open
    assert (
        prompt.inner_text() == "Summarise the claim: water damage in the kitchen (customer <SSN_1>)"
    )
    redacted = page.locator("#step-redaction pre")
    assert not redacted.is_visible()  # collapsed until asked for
    page.click("#step-redaction summary")
    assert '"ssn": "<SSN_1>"' in redacted.inner_text()  # pretty-printed JSON
    assert "<th>provider</th>" in page.inner_html("#attempt-1")
    assert CANARY_SSN not in page.content()
    shot(page, "job-timeline")

    dead = Job.objects.filter(status="dead").first()
    page.goto(f"{live_server.url}/admin/connectors/job/{dead.id}/change/")
    page.click("#retry-button")
    assert "Job queued again." in page.inner_text(".messagelist")
    assert AuditEvent.objects.filter(action="job.retried", object_id=str(dead.id)).exists()


@pytest.mark.parametrize("width", [1400, 1100])
def test_the_job_list_keeps_its_columns_on_screen(page, live_server, history, width):  # noqa: F811
    page.set_viewport_size({"width": width, "height": 900})
    log_in(page, live_server, "ada")
    page.goto(f"{live_server.url}/admin/connectors/job/")

    # Every column shown ends left of the filters and inside the window: nothing cut off.
    edges = page.evaluate(
        """() => {
        const shown = [...document.querySelectorAll('#result_list thead th')]
            .filter(th => th.offsetParent !== null);
        return {columns: shown.map(th => [...th.classList].find(c => c.startsWith('column-'))),
                right: Math.max(...shown.map(th => th.getBoundingClientRect().right)),
                bottom: document.querySelector('#result_list').getBoundingClientRect().bottom,
                filter: document.querySelector('#changelist-filter').getBoundingClientRect()};
    }"""
    )
    beside = edges["filter"]["top"] < edges["bottom"]  # else the filters are below the list
    assert edges["right"] <= (edges["filter"]["left"] if beside else width), edges
    assert "column-error_code" in edges["columns"]
    assert ("column-duration" in edges["columns"]) == (width > 1200)
    assert page.locator("#result_list tbody tr").count() == 100
    assert page.locator("#changelist-filter >> text=Invoices (invoices-imported)").count() == 1
    assert page.locator("#result_list >> text=Invoices (invoices-imported)").count() >= 1
    assert page.locator("#auto-refresh-toggle").count() == 1
    if width == 1400:
        shot(page, "job-list")
        # The row checkboxes work with the admin's actions: retry one dead job from the list.
        page.goto(f"{live_server.url}/admin/connectors/job/?status__exact=dead")
        page.check("#result_list tbody tr:first-child input.action-select")
        assert "1 of" in page.inner_text(".action-counter")
        page.select_option("select[name=action]", "retry")
        page.click("button[name=index]")
        assert "1 job(s) queued again." in page.inner_text(".messagelist")


def test_a_record_is_found_by_its_source_reference_across_connectors(page, live_server, history):  # noqa: F811
    log_in(page, live_server, "ada")
    page.goto(f"{live_server.url}/admin/connectors/job/")
    page.fill("#searchbar", "invoices-imported-1002")
    with page.expect_navigation():
        page.press("#searchbar", "Enter")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert "Invoices (invoices-imported)" in rows.first.inner_text()
    rows.first.locator("a").first.click()
    assert "invoices-imported-1002" in page.inner_text("#content")

    page.goto(f"{live_server.url}/admin/connectors/job/?q=invoices-1002")  # not a substring match
    assert page.locator("#result_list tbody tr").count() == 0


def test_the_dashboard_has_axes_sparklines_and_failures_by_code(page, live_server, history):  # noqa: F811
    log_in(page, live_server, "ada")
    page.goto(f"{live_server.url}/admin/")

    assert page.locator("#jobs-chart text.x-tick").count() == 6
    assert page.locator("#jobs-chart text.y-tick").count() == 3
    assert page.locator("#jobs-by-connector svg.sparkline").count() == 3
    assert "100.0%" not in page.inner_text("#success-rate")  # there are dead jobs
    assert "EUR" in page.inner_text("#tokens-cost")
    assert "peak" in page.inner_text("#throughput")
    page.click("#failures-by-code a >> nth=0")
    page.wait_for_url("**/admin/connectors/job/?error_code=*")
    assert page.locator("#result_list tbody tr").count() >= 1
    assert "status__exact=dead" in page.url or "status__exact=failed" in page.url
    page.goto(f"{live_server.url}/admin/")
    shot(page, "dashboard")
