"""The big lists: estimated counts on PostgreSQL, filter choices from index walks, connector
labels with slugs where names collide, and a page's query count independent of its rows."""

import pytest
from django.db import connection
from django.urls import reverse

from connectors import audit
from connectors.admin import listing
from connectors.models import AuditEvent, Job

pytestmark = pytest.mark.django_db
JOBS = reverse("admin:connectors_job_changelist")


def seed(connector, count: int, **fields) -> None:
    Job.objects.bulk_create(
        Job(connector=connector, idempotency_key=f"{fields.get('error_code', '')}{n}", **fields)
        for n in range(count)
    )


def test_distinct_values_lists_each_non_empty_value_once(make_connector):
    connector = make_connector()
    seed(connector, 3, error_code="timeout")
    seed(connector, 2, error_code="sink_error")
    seed(connector, 4, error_code="")

    assert listing.distinct_values(Job, "error_code") == ["sink_error", "timeout"]


def test_the_error_code_filter_offers_and_applies_the_codes(admin_client, make_connector):
    connector = make_connector()
    seed(connector, 3, error_code="timeout", status="dead")
    seed(connector, 2, status="succeeded")

    page = admin_client.get(JOBS)
    filtered = admin_client.get(JOBS, {"error_code": "timeout"})

    assert "?error_code=timeout" in page.content.decode()
    assert filtered.context["cl"].result_count == 3


def test_a_large_count_is_the_estimate_on_postgresql(admin_client, make_connector, monkeypatch):
    connector = make_connector()
    seed(connector, 40, status="succeeded")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE connectors_job")
    monkeypatch.setattr(listing, "ESTIMATE_ABOVE", 10)

    response = admin_client.get(JOBS)

    paginator = response.context["cl"].paginator
    if connection.vendor == "postgresql":
        assert paginator.is_estimate
        assert 'class="estimated-count"' in response.content.decode()
    else:  # nothing to ask for an estimate: the exact count
        assert not paginator.is_estimate
        assert response.context["cl"].result_count == 40


def test_a_small_count_is_exact(admin_client, make_connector):
    seed(make_connector(), 7, status="dead")

    response = admin_client.get(JOBS, {"status__exact": "dead"})

    assert response.context["cl"].result_count == 7
    assert not response.context["cl"].paginator.is_estimate
    assert 'class="estimated-count"' not in response.content.decode()


def test_the_job_list_costs_the_same_queries_for_5_rows_or_60(
    admin_client, make_connector, django_assert_max_num_queries
):
    connector = make_connector()
    seed(connector, 5, status="succeeded")
    admin_client.get(JOBS)  # sessions and permissions warmed
    with django_assert_max_num_queries(12) as few:
        admin_client.get(JOBS)
    seed(connector, 55, status="dead", error_code="timeout")
    with django_assert_max_num_queries(len(few.captured_queries)):
        admin_client.get(JOBS)


def test_names_that_collide_show_the_slug_in_the_list(admin_client, make_connector):
    first = make_connector("invoices")
    copy = make_connector("invoices-copy")
    copy.name = first.name
    copy.save()
    make_connector("claims")
    seed(copy, 1, status="succeeded")

    page = admin_client.get(JOBS).content.decode()

    assert '<td class="field-connector_label">Invoices (invoices-copy)</td>' in page
    assert ">Claims</a>" in page  # a unique name stays as it is (in the connector filter)


def test_the_audit_log_has_filters_from_indexes_and_no_date_hierarchy(admin_client, job_event):
    page = admin_client.get(reverse("admin:connectors_auditevent_changelist")).content.decode()

    assert "?action=job.created" in page
    assert "?object_type=job" in page
    assert 'class="xfull"' not in page and "created_at__year" not in page


@pytest.fixture
def job_event(make_connector):
    connector = make_connector("invoices")
    job = Job.objects.create(connector=connector, idempotency_key="k")
    audit.record("job.created", audit.Actor.system("test"), job, connector="invoices")
    assert AuditEvent.objects.count() >= 1
    return job
