"""The dashboard's figures people act on: rates that do not round a dead job away, throughput
that sees a busy minute, charts with axes, failures by error code, cost in its currency."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from connectors.models import Job, JobAttempt

pytestmark = pytest.mark.django_db


def jobs(connector, count: int, *, status="succeeded", at=None, prefix="j", **fields) -> None:
    at = at or timezone.now() - timedelta(minutes=30)
    Job.objects.bulk_create(
        Job(
            connector=connector,
            idempotency_key=f"{prefix}{n}",
            status=status,
            created_at=at,
            finished_at=at + timedelta(seconds=n % 50) if status in ("succeeded", "dead") else None,
            **fields,
        )
        for n in range(count)
    )


def dashboard(client, window="day") -> str:
    return client.get(reverse("admin:index") + f"?window={window}").content.decode()


def test_one_dead_job_in_two_thousand_is_not_a_hundred_percent(admin_client, make_connector):
    connector = make_connector("invoices")
    jobs(connector, 1999)
    jobs(connector, 1, status="dead", prefix="dead", error_code="provider_error")

    page = dashboard(admin_client)

    assert '<td id="success-rate">99.9%</td>' in page
    assert "100.0%" not in page


def test_throughput_shows_the_busy_minute_not_only_the_days_average(admin_client, make_connector):
    connector = make_connector("invoices")
    # 2,000 jobs finishing within one minute, in a day window.
    start = timezone.now().replace(second=0, microsecond=0) - timedelta(hours=2)
    jobs(connector, 2000, at=start)

    throughput = re.search(r'<span id="throughput">(.*?)</span>', dashboard(admin_client)).group(1)

    assert throughput.startswith(f"peak 2000 jobs/min at {timezone.localtime(start):%H:%M}; ")
    assert "2000.0 jobs/min over the 1 busy minute;" in throughput
    assert throughput.endswith("1.4 jobs/min over the day")


def test_the_chart_has_axes_with_counts_and_time_labels(admin_client, make_connector):
    connector = make_connector("invoices")
    jobs(connector, 7)

    page = dashboard(admin_client)

    y_ticks = re.findall(r'<text class="y-tick"[^>]*>([^<]*)</text>', page)
    x_ticks = re.findall(r'<text class="x-tick"[^>]*>([^<]*)</text>', page)
    assert y_ticks == ["0", "5", "10"]  # the top is a round number above the peak of 7
    assert len(x_ticks) == 6 and all(re.fullmatch(r"\d\d:\d\d", tick) for tick in x_ticks)
    assert "jobs created per hour (UTC)" in page
    assert page.count('fill="#3a9b5c"') == 24


def test_each_connector_has_a_sparkline_and_colliding_names_show_the_slug(
    admin_client, make_connector
):
    first = make_connector("invoices")
    copy = make_connector("invoices-imported")
    copy.name = first.name  # an imported copy keeps its source's name
    copy.save()
    jobs(first, 3)
    jobs(copy, 2, prefix="c")

    page = dashboard(admin_client)

    assert page.count('<svg class="sparkline"') == 2
    assert ">Invoices (invoices)</a>" in page
    assert ">Invoices (invoices-imported)</a>" in page


def test_failures_are_grouped_by_error_code_with_a_link_to_them(admin_client, make_connector):
    connector = make_connector("invoices")
    jobs(connector, 3, status="dead", prefix="t", error_code="timeout")
    jobs(connector, 1, status="dead", prefix="p", error_code="provider_error")
    jobs(connector, 2, status="succeeded", prefix="s")

    page = dashboard(admin_client)

    table = page[page.index('id="failures-by-code"') :]
    table = table[: table.index("</table>")]
    codes = re.findall(r'<a href="([^"]*)">([a-z_]+)</a></td>\s*<td>dead</td><td>(\d+)</td>', table)
    found = [(code, count) for _, code, count in codes]
    assert found == [("timeout", "3"), ("provider_error", "1")]
    listed = admin_client.get(codes[0][0].replace("&amp;", "&"))
    assert listed.status_code == 200
    assert listed.context["cl"].result_count == 3


def test_cost_is_shown_with_its_currency(admin_client, make_connector, demo_provider):
    demo_provider.currency = "EUR"
    demo_provider.save()
    connector = make_connector("invoices")
    jobs(connector, 1, tokens_in=100, tokens_out=20)
    JobAttempt.objects.create(
        job=Job.objects.get(),
        number=1,
        outcome="succeeded",
        started_at=timezone.now() - timedelta(minutes=20),
        provider_name=demo_provider.name,
        tokens_in=100,
        tokens_out=20,
        cost=Decimal("0.0125"),
    )

    page = dashboard(admin_client)

    assert '<td id="tokens-cost">100 in, 20 out, 0.0125 EUR</td>' in page
