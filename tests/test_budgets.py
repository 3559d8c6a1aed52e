"""Budgets: worst case reserved before a call, settled after, shared by every worker (Redis);
a call the budget cannot cover is not sent; alerts at 80 % and 100 %; cost figures."""

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from connectors import budget_alerts, budgets, jobs
from connectors.models import AuditEvent, Budget, Job, JobAttempt, Provider
from connectors.providers.base import Completion, ProviderConfig
from connectors.providers.openai import OpenAIProvider
from tests.test_faults import send, stop, wait_for
from tests.worker import drain, run_worker, start_worker_process

NOON = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


def spec(budget_id=1, *, max_tokens=None, max_micros=None, provider=None, dead=False, period="day"):
    return budgets.Spec(budget_id, period, provider, max_tokens, max_micros, dead, f"b{budget_id}")


def client_with_limit(limit: int | None = 20) -> OpenAIProvider:
    parameters = {"max_tokens": limit} if limit else {}
    return OpenAIProvider(ProviderConfig("openai", "http://ai", "m", 5, parameters), None)


def row(name="gpt", price_in="0", price_out="0") -> Provider:
    return Provider(
        name=name, price_per_1m_input=Decimal(price_in), price_per_1m_output=Decimal(price_out)
    )


def counter(redis_client, budget_id=1, period="day", now=NOON) -> dict:
    raw = redis_client.hgetall(budgets.counter_key(budget_id, period, now))
    return {key.decode(): int(value) for key, value in raw.items()}


# --- Reservations ------------------------------------------------------------------------


def test_a_call_reserves_its_worst_case_and_settles_to_what_it_spent(redis_client):
    prompt = "x" * 64  # 64 bytes: at most 64 tokens, plus 16 of overhead and 20 of answer
    specs = [spec(max_tokens=1000)]

    with budgets.held(specs, row(), client_with_limit(20), prompt, None, NOON) as hold:
        assert counter(redis_client) == {"tokens": 100, "micros": 0}
        hold.spend(row(), Completion("ok", 12, 3, "m"))

    assert counter(redis_client) == {"tokens": 15, "micros": 0}


def test_a_failed_call_gives_its_whole_reservation_back(redis_client):
    with (
        pytest.raises(RuntimeError),
        budgets.held([spec(max_tokens=1000)], row(), client_with_limit(), "hi", None, NOON),
    ):
        raise RuntimeError("the call failed")

    assert counter(redis_client)["tokens"] == 0


def test_a_call_the_budget_cannot_cover_is_refused_and_nothing_is_charged(redis_client):
    specs = [spec(1, max_tokens=10_000), spec(2, max_tokens=60, period="month")]
    client = client_with_limit(20)

    with (
        budgets.held(specs, row(), client, "x" * 20, None, NOON),  # 56 tokens: fits both
        pytest.raises(budgets.BudgetExhausted) as refused,
        budgets.held(specs, row(), client, "x" * 20, None, NOON),
    ):
        pytest.fail("a call beyond the budget was let through")

    error = refused.value
    assert (error.code, error.permanent, error.counts_as_attempt) == (
        "budget_exhausted",
        False,
        False,
    )
    assert "b2 cannot cover this call's worst case (56 tokens)" in error.message
    assert "rolls over at 2026-04-01 00:00 UTC" in error.message
    month_end = datetime(2026, 4, 1, tzinfo=UTC)
    assert (
        (month_end - NOON).total_seconds()
        < error.retry_after
        <= (month_end - NOON).total_seconds() + 60
    )
    assert counter(redis_client, 1) == {"tokens": 0, "micros": 0}  # neither was charged twice
    assert counter(redis_client, 2, "month") == {"tokens": 0, "micros": 0}


def test_a_money_budget_prices_the_worst_case_at_the_providers_prices(redis_client):
    prices = row(price_in="1000000", price_out="2000000")  # 1 and 2 per token: easy figures
    specs = [spec(max_micros=80 * 1_000_000)]

    with budgets.held(specs, prices, client_with_limit(20), "x" * 4, None, NOON) as hold:
        assert counter(redis_client)["micros"] == (4 + 16) * 1_000_000 + 20 * 2_000_000
        hold.spend(prices, Completion("ok", 5, 2, "m"))
    with (
        pytest.raises(budgets.BudgetExhausted, match=r"60 tokens, 80\.000000"),
        budgets.held(specs, prices, client_with_limit(20), "x" * 24, None, NOON),
    ):
        pass

    assert counter(redis_client)["micros"] == 9 * 1_000_000


def test_a_budget_set_to_end_jobs_dead_is_permanent():
    with (
        pytest.raises(budgets.BudgetExhausted) as refused,
        budgets.held([spec(max_tokens=1, dead=True)], row(), client_with_limit(), "hi", None, NOON),
    ):
        pass

    assert refused.value.permanent


def test_a_provider_budget_counts_only_calls_to_that_provider(redis_client):
    specs = [spec(max_tokens=1, provider="backup")]

    with budgets.held(specs, row("gpt"), client_with_limit(), "hello", None, NOON) as hold:
        assert hold.keys == []

    assert counter(redis_client) == {}


def test_periods_are_utc_days_and_months():
    assert budgets.period_bounds("day", NOON) == (
        datetime(2026, 3, 14, tzinfo=UTC),
        datetime(2026, 3, 15, tzinfo=UTC),
    )
    assert budgets.period_bounds("month", datetime(2024, 2, 29, 23, tzinfo=UTC)) == (
        datetime(2024, 2, 1, tzinfo=UTC),
        datetime(2024, 3, 1, tzinfo=UTC),
    )
    assert budgets.counter_key(7, "month", NOON) == "interlock:budget:7:202603"


def test_without_an_answer_limit_the_default_is_reserved():
    assert budgets.worst_case_tokens(client_with_limit(None), "abc", None) == 3 + 16 + 4096
    schema = {"type": "object"}
    assert budgets.worst_case_tokens(client_with_limit(10), "abc", schema) == 3 + 16 + 18 + 10


def test_redis_down_fails_closed(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there

    with (
        pytest.raises(budgets.ProviderError, match="the budget cannot be checked"),
        budgets.held([spec(max_tokens=10**6)], row(), client_with_limit(), "hi", None, NOON),
    ):
        pytest.fail("a call was let through unchecked")


# --- In the pipeline -----------------------------------------------------------------------


@pytest.fixture
def connector(make_connector, openai_provider, callback_server):
    openai_provider.parameters = {"max_tokens": 20}
    openai_provider.save()
    return make_connector(
        "invoices",
        provider=openai_provider,
        inputs=[("note", "text", True)],
        prompt="Decide on: {{ text }}",
        sink_kind="http",
        sink_config={"url": callback_server.url},
        max_attempts=1,
    )


@pytest.mark.django_db(transaction=True)
def test_a_job_beyond_its_budget_is_not_sent_and_waits_for_the_next_period(
    client, api_key, connector, openai_server, callback_server
):
    # "Decide on: note-1" is 17 bytes: 17 + 16 + 20 = 53 tokens reserved; 3 + 4 really spent.
    Budget.objects.create(connector=connector, period="day", max_tokens=60)
    key = api_key(connector)[1]
    first = send(client, key, "note-1")
    drain()  # 53 fit; 7 spent
    second = send(client, key, "note-2")
    drain()  # 7 + 53 = 60 fit; 14 spent
    third = send(client, key, "note-3")
    jobs.reconcile()
    run_worker()  # 14 + 53 = 67 do not fit

    for job in (first, second, third):
        job.refresh_from_db()
    assert (first.status, second.status) == (Job.Status.SUCCEEDED, Job.Status.SUCCEEDED)
    assert (third.status, third.error_code) == (Job.Status.FAILED, "budget_exhausted")
    assert (third.attempts, third.attempts_before_retry) == (1, 1)  # the attempt is given back
    tomorrow = (timezone.now().astimezone(UTC) + timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    assert tomorrow < third.next_attempt_at <= tomorrow + timedelta(seconds=61)
    assert len(openai_server.requests) == 2
    assert len(callback_server.received) == 2


@pytest.mark.django_db(transaction=True)
def test_a_budget_that_ends_jobs_dead_reports_them(
    client, api_key, connector, openai_server, callback_server
):
    Budget.objects.create(connector=connector, period="month", max_tokens=10, when_exhausted="dead")
    connector.sink_config = {"url": callback_server.url, "report_dead": True}
    connector.save()

    job = send(client, api_key(connector)[1], "note-1")
    drain()

    job.refresh_from_db()
    assert (job.status, job.error_code) == (Job.Status.DEAD, "budget_exhausted")
    assert openai_server.requests == []
    [(headers, _, notice)] = callback_server.received
    assert headers["webhook-id"] == f"{job.id}.dead"
    assert notice["job_id"] == str(job.id)
    assert notice["status"] == "dead"
    assert notice["error"].startswith("budget_exhausted: budget invoices per month cannot cover")


@pytest.mark.django_db(transaction=True)
def test_a_job_waiting_for_its_budget_is_not_reported_dead(
    client, api_key, connector, callback_server
):
    Budget.objects.create(connector=connector, period="day", max_tokens=10)
    connector.sink_config = {"url": callback_server.url, "report_dead": True}
    connector.save()  # max_attempts is 1: the wait must not pass for the last failure

    job = send(client, api_key(connector)[1], "note-1")
    jobs.reconcile()
    run_worker()

    job.refresh_from_db()
    assert (job.status, job.error_code) == (Job.Status.FAILED, "budget_exhausted")
    assert callback_server.received == []


@pytest.mark.django_db(transaction=True)
def test_a_provider_budget_exhausted_passes_the_call_to_a_fallback(
    client, api_key, connector, openai_provider, openai_server
):
    backup = Provider.objects.create(
        name="backup", kind="openai", base_url=openai_server.base_url, model="gpt-test"
    )
    connector.fallback_providers = ["backup"]
    connector.save()
    Budget.objects.create(connector=connector, provider=openai_provider, max_tokens=10)

    job = send(client, api_key(connector)[1], "note-1")
    drain()

    job.refresh_from_db()
    assert (job.status, job.provider_name) == (Job.Status.SUCCEEDED, backup.name)


@pytest.mark.django_db(transaction=True)
def test_a_flushed_redis_reseeds_the_counter_from_recorded_usage(
    client, api_key, connector, redis_client
):
    budget = Budget.objects.create(connector=connector, period="day", max_tokens=10_000)
    send(client, api_key(connector)[1], "note-1")
    drain()
    spent = sum(a.tokens_in + a.tokens_out for a in JobAttempt.objects.all())
    assert spent == 5
    redis_client.flushdb()

    budgets.for_connector(connector)

    now = timezone.now()
    assert counter(redis_client, budget.id, "day", now) == {"tokens": 5, "micros": 4500}


@pytest.mark.django_db(transaction=True)
def test_workers_racing_on_one_budget_never_spend_more_than_it(
    client, api_key, connector, openai_server, settings, redis_url, redis_client
):
    """Three worker processes, four calls in flight each at most: the budget lets no more calls
    be in flight than its worst cases fit, and what was spent stays within it."""
    connector.batch_size = 4
    connector.save()
    connector.provider.max_concurrency = 4
    connector.provider.save()
    budget = Budget.objects.create(connector=connector, period="day", max_tokens=200)
    in_flight, peak, lock = [0], [0], threading.Lock()

    def slow_answer(body):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.15)
        with lock:
            in_flight[0] -= 1
        return '{"decision": "approve"}'

    openai_server.responder = slow_answer
    key = api_key(connector)[1]
    sent = [send(client, key, f"note-{index:02d}") for index in range(36)]
    workers = [start_worker_process(settings, redis_url) for _ in range(3)]
    try:
        wait_for(
            lambda: (
                not Job.objects.filter(status__in=["pending", "queued", "running"]).exists()
                and Job.objects.filter(status="failed").count()
                + Job.objects.filter(status="succeeded").count()
                == len(sent)
            ),
            "every job to succeed or wait for its budget",
            timeout=60,
        )
    finally:
        for worker in workers:
            stop(worker)

    # "Decide on: note-NN" is 18 bytes: each call reserves 18 + 16 + 20 = 54 tokens.
    assert peak[0] <= 200 // 54
    succeeded = Job.objects.filter(status="succeeded")
    spent = sum(job.tokens_in + job.tokens_out for job in succeeded)
    assert spent <= 200
    assert len(openai_server.requests) == succeeded.count()
    assert set(Job.objects.filter(status="failed").values_list("error_code", flat=True)) == {
        "budget_exhausted"
    }
    assert Job.objects.filter(status="failed").exists()
    assert counter(redis_client, budget.id, "day", timezone.now())["tokens"] == spent


# --- Alerts, dashboard, metrics, API -----------------------------------------------------------


@pytest.mark.django_db
def test_alerts_fire_once_at_80_and_once_at_100_percent(connector, redis_client, caplog):
    budget = Budget.objects.create(connector=connector, period="day", max_tokens=100)
    key = budgets.counter_key(budget.id, "day", timezone.now())

    redis_client.hset(key, mapping={"tokens": 79, "micros": 0})
    assert budget_alerts.send_alerts() == []
    redis_client.hset(key, "tokens", 85)
    assert budget_alerts.send_alerts() == [f"{budget.id}:80"]
    assert budget_alerts.send_alerts() == []
    redis_client.hset(key, "tokens", 100)
    assert budget_alerts.send_alerts() == [f"{budget.id}:100"]

    events = AuditEvent.objects.filter(action__startswith="budget.alert").order_by("sequence")
    assert [event.action for event in events] == ["budget.alert_80", "budget.alert_100"]
    assert events[0].changes["tokens"] == 85
    assert "at 85%" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_dashboard_metrics_and_api_show_cost_and_budget_use(
    client, admin_client, api_key, connector, openai_provider, settings
):
    openai_provider.currency = "EUR"
    openai_provider.save()
    Budget.objects.create(connector=connector, period="month", max_tokens=1000, max_cost="1.5")
    key = api_key(connector)[1]
    job = send(client, key, "note-1")
    drain()
    job.refresh_from_db()
    # 3 prompt words at 500 per million and 2 answer words at 1500 per million.
    assert job.cost == Decimal("0.004500")
    settings.METRICS_TOKEN = "metrics-token"

    page = admin_client.get(reverse("admin:index")).content.decode()
    metrics = client.get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-token").content.decode()
    answer = client.get(f"/api/v1/jobs/{job.id}/", HTTP_AUTHORIZATION=f"Bearer {key}").json()

    assert "<td>invoices</td><td>gpt</td><td>1</td>" in page
    assert "0.0045 EUR" in page
    assert "5 of 1000" in page
    assert (
        'interlock_ai_cost_last_day{connector="invoices",currency="EUR",provider="gpt"} 0.0045'
        in metrics
    )
    assert (
        'interlock_budget_tokens{connector="invoices",currency="EUR",period="month",'
        'provider=""} 5.0' in metrics
    )
    assert answer["cost"] == {"amount": "0.004500", "currency": "EUR"}


def test_cached_input_tokens_are_priced_apart():
    provider = Provider(
        price_per_1m_input=Decimal("3"),
        price_per_1m_cached_input=Decimal("0.3"),
        price_per_1m_output=Decimal("15"),
    )

    assert provider.cost(1_000_000, 0, 0) == Decimal("3")
    assert provider.cost(1_000_000, 1_000_000, 500_000) == Decimal("16.65")
    provider.price_per_1m_cached_input = None
    assert provider.cost(1_000_000, 0, 500_000) == Decimal("3")


@pytest.mark.django_db
def test_the_budget_admin_shows_use_and_refuses_a_budget_without_a_limit(
    admin_client, connector, redis_client
):
    budget = Budget.objects.create(connector=connector, period="day", max_tokens=200)
    redis_client.hset(
        budgets.counter_key(budget.id, "day", timezone.now()), mapping={"tokens": 50, "micros": 0}
    )
    add = reverse("admin:connectors_budget_add")

    listing = admin_client.get(reverse("admin:connectors_budget_changelist")).content.decode()
    refused = admin_client.post(
        add, {"connector": connector.pk, "period": "day", "when_exhausted": "wait"}
    )
    added = admin_client.post(
        add,
        {
            "connector": connector.pk,
            "period": "month",
            "max_cost": "12.5",
            "when_exhausted": "dead",
        },
    )

    assert "25% (50 tokens, 0.0000 USD)" in listing
    assert refused.context["adminform"].form.errors == {
        "max_tokens": ["set max_tokens, max_cost or both"]
    }
    assert added.status_code == 302
    assert Budget.objects.get(period="month").max_cost == Decimal("12.5")
    assert AuditEvent.objects.filter(action="budget.create", object_type="budget").count() == 1


BUDGET_CONFIG = """
providers:
  - {name: gpt, kind: openai, base_url: "https://ai.example/v1", model: gpt-4o-mini,
     price_per_1k_input: 0.00015, price_per_1k_output: 0.0006, price_per_1m_cached_input: 0.075}
connectors:
  - slug: invoices
    provider: gpt
    prompt: "{{ text }}"
    budgets:
      - {period: month, max_cost: "500", when_exhausted: dead}
      - {period: day, max_tokens: 2000000, provider: gpt}
"""


def run_command(*args) -> str:
    import io

    from django.core.management import call_command

    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_budgets_and_prices_round_trip_through_the_configuration_file(tmp_path):
    import yaml

    path = tmp_path / "setup.yaml"
    path.write_text(BUDGET_CONFIG)

    assert run_command("import_config", str(path)).endswith("2 created, 0 updated, 0 unchanged.\n")
    exported = run_command("export_config")
    (tmp_path / "again.yaml").write_text(exported)
    again = run_command("import_config", str(tmp_path / "again.yaml"))

    assert again.endswith("0 created, 0 updated, 2 unchanged.\n")
    document = yaml.safe_load(exported)
    assert document["connectors"][0]["budgets"] == [
        {"period": "month", "max_cost": "500", "when_exhausted": "dead"},
        {"period": "day", "provider": "gpt", "max_tokens": 2000000, "when_exhausted": "wait"},
    ]
    provider = document["providers"][0]
    assert (provider["price_per_1m_input"], provider["price_per_1m_output"]) == ("0.15", "0.6")
    assert (provider["price_per_1m_cached_input"], provider["currency"]) == ("0.075", "USD")
    assert "price_per_1k_input" not in provider
    assert Budget.objects.get(period="day").provider.name == "gpt"


@pytest.mark.django_db
def test_a_bad_budget_or_price_in_the_file_is_named_and_nothing_is_written(tmp_path):
    path = tmp_path / "setup.yaml"
    path.write_text(
        BUDGET_CONFIG.replace('max_cost: "500"', "max_cost: lots")
        .replace("provider: gpt}", "provider: nobody}")
        .replace("price_per_1k_output: 0.0006", "price_per_1k_output: -1, currency: euro")
    )

    with pytest.raises(Exception) as caught:
        run_command("import_config", str(path))

    message = str(caught.value)
    assert "connectors[0].budgets[0].max_cost: must be an amount of at least 0" in message
    assert "connectors[0].budgets[1].provider: no provider named 'nobody'" in message
    assert "providers[0].price_per_1k_output: price_per_1k_output must be a number" in message
    assert "providers[0].currency: currency must be an ISO 4217 code" in message
    assert not Provider.objects.exists()
    assert not Budget.objects.exists()
