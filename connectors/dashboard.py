"""The figures of the admin dashboard and of /metrics, computed from the job table."""

from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Count, Q, Sum
from django.utils import timezone

from connectors import budgets, costs, jobs
from connectors.models import Job

WINDOWS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}
BUCKETS = 24
LATENCY_SAMPLE = 5000


@dataclass
class ConnectorRow:
    slug: str
    name: str
    counts: dict[str, int]
    success_rate: float | None

    @property
    def in_flight(self) -> int:
        return sum(self.counts.get(status, 0) for status in ("pending", "queued", "running"))


@dataclass
class Dashboard:
    window: str
    rows: list[ConnectorRow] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    success_rate: float | None = None
    per_minute: float = 0.0
    ai_p50: int | None = None
    ai_p95: int | None = None
    total_p50: int | None = None
    total_p95: int | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost: str = "0"
    queue: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)
    bars: list[dict] = field(default_factory=list)
    reviews: list = field(default_factory=list)  # review_schedule.QueueRow per connector
    reviews_waiting: int = 0
    review_oldest_seconds: float | None = None
    reviews_overdue: int = 0
    costs: list = field(default_factory=list)  # costs.CostRow per connector and provider
    cost_totals: dict = field(default_factory=dict)  # by currency
    budgets: list = field(default_factory=list)  # budgets.Use, in the current periods


def percentile(values: list[int], share: float) -> int | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, round(share * (len(values) - 1)))]


def rate(succeeded: int, dead: int) -> float | None:
    return succeeded / (succeeded + dead) if succeeded + dead else None


def build(window: str = "day") -> Dashboard:
    window = window if window in WINDOWS else "day"
    now = timezone.now()
    since = now - WINDOWS[window]
    recent = Job.objects.filter(created_at__gte=since)
    board = Dashboard(window=window)
    by_connector: dict[str, dict] = {}
    for row in recent.values("connector__slug", "connector__name", "status").annotate(
        count=Count("id")
    ):
        entry = by_connector.setdefault(
            row["connector__slug"], {"name": row["connector__name"], "counts": {}}
        )
        entry["counts"][row["status"]] = row["count"]
    for slug, entry in sorted(by_connector.items()):
        counts = entry["counts"]
        board.rows.append(
            ConnectorRow(
                slug, entry["name"], counts, rate(counts.get("succeeded", 0), counts.get("dead", 0))
            )
        )
        for status, count in counts.items():
            board.totals[status] = board.totals.get(status, 0) + count
    board.success_rate = rate(board.totals.get("succeeded", 0), board.totals.get("dead", 0))
    finished = Job.objects.filter(finished_at__gte=since, status=Job.Status.SUCCEEDED)
    board.per_minute = finished.count() / (WINDOWS[window].total_seconds() / 60)
    sample = list(
        finished.order_by("-finished_at").values_list("ai_ms", "created_at", "finished_at")[
            :LATENCY_SAMPLE
        ]
    )
    ai = [ai_ms for ai_ms, _, _ in sample if ai_ms is not None]
    total = [int((end - start).total_seconds() * 1000) for _, start, end in sample]
    board.ai_p50, board.ai_p95 = percentile(ai, 0.5), percentile(ai, 0.95)
    board.total_p50, board.total_p95 = percentile(total, 0.5), percentile(total, 0.95)
    usage = recent.aggregate(
        tokens_in=Sum("tokens_in"), tokens_out=Sum("tokens_out"), cost=Sum("cost")
    )
    board.tokens_in, board.tokens_out = usage["tokens_in"] or 0, usage["tokens_out"] or 0
    board.cost = f"{usage['cost'] or 0:.4f}"
    board.queue = jobs.queue_stats()
    board.failures = list(
        Job.objects.filter(status__in=[Job.Status.DEAD, Job.Status.FAILED], created_at__gte=since)
        .select_related("connector")
        .order_by("-created_at")[:10]
    )
    board.bars = bars(recent, since, now)
    add_review_queue(board, now)
    board.costs = costs.by_connector_and_provider(since)
    board.cost_totals = costs.totals_by_currency(board.costs)
    board.budgets = budgets.current_use(now)
    return board


def add_review_queue(board: Dashboard, now) -> None:
    """The review queue whatever the window: what waits now, and since when."""
    from connectors import review_schedule  # here: it imports operations, which imports us

    board.reviews = review_schedule.queue_rows(now)
    board.reviews_waiting = sum(row.waiting for row in board.reviews)
    board.reviews_overdue = sum(row.overdue for row in board.reviews)
    ages = [row.oldest_age_seconds(now) for row in board.reviews]
    board.review_oldest_seconds = max(ages) if ages else None


def bars(recent, since, now) -> list[dict]:
    """Jobs per time bucket, succeeded and dead stacked, scaled for a 600 x 120 SVG."""
    step = (now - since) / BUCKETS
    counts = [[0, 0, 0] for _ in range(BUCKETS)]  # succeeded, dead, other
    for created_at, status in recent.values_list("created_at", "status").iterator(chunk_size=5000):
        index = min(BUCKETS - 1, int((created_at - since) / step))
        slot = 0 if status == Job.Status.SUCCEEDED else 1 if status == Job.Status.DEAD else 2
        counts[index][slot] += 1
    peak = max((sum(bucket) for bucket in counts), default=0) or 1
    width = 600 / BUCKETS
    result = []
    for index, (succeeded, dead, other) in enumerate(counts):
        ok_height, dead_height = 110 * succeeded / peak, 110 * dead / peak
        other_height = 110 * other / peak
        result.append(
            {
                "x": round(index * width + 1, 1),
                "width": round(width - 2, 1),
                "ok_y": round(120 - ok_height, 1),
                "ok_height": round(ok_height, 1),
                "dead_y": round(120 - ok_height - dead_height, 1),
                "dead_height": round(dead_height, 1),
                "other_y": round(120 - ok_height - dead_height - other_height, 1),
                "other_height": round(other_height, 1),
                "label": f"{succeeded} succeeded, {dead} dead, {other} other",
            }
        )
    return result


def status_counts() -> dict[tuple[str, str], int]:
    """All jobs by (connector, status), for /metrics."""
    return {
        (row["connector__slug"], row["status"]): row["count"]
        for row in Job.objects.values("connector__slug", "status").annotate(count=Count("id"))
    }


def failing_connectors(window: timedelta, threshold: float, minimum: int) -> list[tuple[str, dict]]:
    """Connectors whose error rate over the window passes the threshold (for alerts)."""
    since = timezone.now() - window
    failing = []
    rows = (
        Job.objects.filter(finished_at__gte=since)
        .values("connector__slug")
        .annotate(
            dead=Count("id", filter=Q(status=Job.Status.DEAD)),
            succeeded=Count("id", filter=Q(status=Job.Status.SUCCEEDED)),
        )
    )
    for row in rows:
        ended = row["dead"] + row["succeeded"]
        if row["dead"] and ended >= minimum and row["dead"] / ended >= threshold:
            failing.append((row["connector__slug"], {"dead": row["dead"], "ended": ended}))
    return failing
