"""Prometheus metrics at /metrics, computed from the database on each scrape (every process
answers the same), protected by METRICS_TOKEN or a staff session that may view jobs."""

import hmac

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from connectors import budgets, costs, dashboard, jobs


class JobCollector:
    def collect(self):
        by_status = GaugeMetricFamily(
            "interlock_jobs", "Jobs by connector and status.", labels=["connector", "status"]
        )
        for (connector, status), count in sorted(dashboard.status_counts().items()):
            by_status.add_metric([connector, status], count)
        yield by_status
        queue = jobs.queue_stats()
        yield GaugeMetricFamily(
            "interlock_queue_depth", "RQ jobs waiting.", value=queue["queue_depth"] or 0
        )
        yield GaugeMetricFamily(
            "interlock_workers", "Live RQ workers.", value=queue["workers"] or 0
        )
        yield GaugeMetricFamily(
            "interlock_redis_up", "1 if Redis answers.", value=1 if queue["redis"] == "ok" else 0
        )
        board = dashboard.build("hour")
        yield from review_families(board)
        for name, help_text, p50, p95 in (
            (
                "interlock_ai_latency_seconds",
                "AI call latency, last hour.",
                board.ai_p50,
                board.ai_p95,
            ),
            (
                "interlock_job_latency_seconds",
                "Record accepted to job finished, last hour.",
                board.total_p50,
                board.total_p95,
            ),
        ):
            family = GaugeMetricFamily(name, help_text, labels=["quantile"])
            for quantile, value in (("0.5", p50), ("0.95", p95)):
                if value is not None:
                    family.add_metric([quantile], value / 1000)
            yield family
        yield from cost_and_budget_metrics()


def cost_and_budget_metrics():
    """Spend over the last day by connector, provider and currency; budgets against limits."""
    from datetime import timedelta

    from django.utils import timezone

    spend = GaugeMetricFamily(
        "interlock_ai_cost_last_day",
        "AI spend over the last 24 hours, in the provider's currency.",
        labels=["connector", "provider", "currency"],
    )
    for row in costs.by_connector_and_provider(timezone.now() - timedelta(days=1)):
        spend.add_metric([row.connector, row.provider, row.currency], float(row.cost))
    yield spend
    labels = ["connector", "provider", "period", "currency"]
    used = GaugeMetricFamily(
        "interlock_budget_used_ratio", "Largest share of a budget's limits used.", labels=labels
    )
    tokens = GaugeMetricFamily("interlock_budget_tokens", "Tokens used this period.", labels=labels)
    money = GaugeMetricFamily("interlock_budget_cost", "Money used this period.", labels=labels)
    for use in budgets.current_use():
        budget = use.budget
        key = [
            budget.connector.slug,
            budget.provider.name if budget.provider_id else "",
            budget.period,
            use.currency,
        ]
        used.add_metric(key, float(use.share))
        tokens.add_metric(key, use.tokens)
        money.add_metric(key, float(use.cost))
    yield from (used, tokens, money)


def review_families(board: dashboard.Dashboard):
    """The review queue per connector: depth, oldest age, how many are past their deadline."""
    now = timezone.now()
    families = {
        "waiting": GaugeMetricFamily(
            "interlock_reviews_waiting", "Held answers waiting for review.", labels=["connector"]
        ),
        "oldest": GaugeMetricFamily(
            "interlock_review_oldest_age_seconds",
            "Age of the oldest held answer.",
            labels=["connector"],
        ),
        "overdue": GaugeMetricFamily(
            "interlock_reviews_overdue",
            "Held answers past their review deadline.",
            labels=["connector"],
        ),
    }
    for row in board.reviews:
        families["waiting"].add_metric([row.slug], row.waiting)
        families["oldest"].add_metric([row.slug], row.oldest_age_seconds(now))
        families["overdue"].add_metric([row.slug], row.overdue)
    yield from families.values()


def is_allowed(request) -> bool:
    token = settings.METRICS_TOKEN
    presented = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if token and presented and hmac.compare_digest(presented, token):
        return True
    return request.user.is_authenticated and request.user.has_perm("connectors.view_job")


def metrics_view(request):
    if not is_allowed(request):
        return JsonResponse(
            {
                "code": "not_authenticated",
                "detail": "Metrics need Authorization: Bearer <METRICS_TOKEN> or a staff login.",
            },
            status=401,
        )
    registry = CollectorRegistry()
    registry.register(JobCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
