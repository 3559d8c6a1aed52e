"""The figures of the admin dashboard and of /metrics, computed from the job table.

The window is whole buckets (minutes for the hour, hours for the day, six hours for the week),
so the figures and the chart count the same jobs; one grouped query gives the counts per
connector and status, the chart, the sparklines and the tokens.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Max, Q, Sum
from django.db.models.functions import TruncHour, TruncMinute
from django.utils import timezone

from connectors import budgets, costs, jobs, labels
from connectors.models import Connector, Job

# window: (bucket length, buckets, the database truncation a bucket is made of)
WINDOWS = {
    "hour": (timedelta(minutes=1), 60, TruncMinute),
    "day": (timedelta(hours=1), 24, TruncHour),
    "week": (timedelta(hours=6), 28, TruncHour),
}
LATENCY_SAMPLE = 5000
CHART = {"left": 44, "top": 8, "width": 580, "height": 120}  # the plot area inside the SVG
SPARK = {"width": 120, "height": 22}


@dataclass
class ConnectorRow:
    slug: str
    name: str
    counts: dict[str, int]
    success_rate: float | None
    sparkline: str = ""  # SVG polyline points, jobs per bucket

    @property
    def in_flight(self) -> int:
        return sum(self.counts.get(status, 0) for status in ("pending", "queued", "running"))


@dataclass
class FailureGroup:
    error_code: str
    status: str
    count: int
    latest: datetime
    connectors: int


@dataclass
class Dashboard:
    window: str
    since: datetime | None = None
    rows: list[ConnectorRow] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    success_rate: float | None = None
    per_minute: float = 0.0  # succeeded per minute over the whole window
    peak_per_minute: int = 0
    peak_minute: datetime | None = None
    busy_per_minute: float = 0.0  # over the minutes in which at least one job finished
    busy_minutes: int = 0
    ai_p50: int | None = None
    ai_p95: int | None = None
    total_p50: int | None = None
    total_p95: int | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    queue: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)
    failure_groups: list[FailureGroup] = field(default_factory=list)
    bars: list[dict] = field(default_factory=list)
    axis: dict = field(default_factory=dict)  # the chart's ticks and time labels
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


def window_start(window: str, now: datetime) -> datetime:
    """The start of the first bucket: the window's buckets end with the one holding now."""
    step, count, _ = WINDOWS[window]
    local = timezone.localtime(now)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    current = midnight + step * ((local - midnight) // step)
    return current - step * (count - 1)


def build(window: str = "day") -> Dashboard:
    window = window if window in WINDOWS else "day"
    now = timezone.now()
    since = window_start(window, now)
    recent = Job.objects.filter(created_at__gte=since)
    board = Dashboard(window=window, since=since)
    add_counts_and_chart(board, recent)
    add_throughput(board, since)
    finished = Job.objects.filter(finished_at__gte=since, status=Job.Status.SUCCEEDED)
    sample = list(
        finished.order_by("-finished_at").values_list("ai_ms", "created_at", "finished_at")[
            :LATENCY_SAMPLE
        ]
    )
    ai = [ai_ms for ai_ms, _, _ in sample if ai_ms is not None]
    total = [int((end - start).total_seconds() * 1000) for _, start, end in sample]
    board.ai_p50, board.ai_p95 = percentile(ai, 0.5), percentile(ai, 0.95)
    board.total_p50, board.total_p95 = percentile(total, 0.5), percentile(total, 0.95)
    board.queue = jobs.queue_stats()
    failed = recent.filter(status__in=[Job.Status.DEAD, Job.Status.FAILED])
    board.failures = list(failed.select_related("connector").order_by("-created_at")[:10])
    board.failure_groups = [
        FailureGroup(
            row["error_code"] or "(none)",
            row["status"],
            row["count"],
            row["latest"],
            row["connectors"],
        )
        for row in failed.values("error_code", "status")
        .annotate(
            count=Count("id"),
            latest=Max("created_at"),
            connectors=Count("connector", distinct=True),
        )
        .order_by("-count", "error_code")
    ]
    add_review_queue(board, now)
    board.costs = costs.by_connector_and_provider(since)
    board.cost_totals = costs.totals_by_currency(board.costs)
    board.budgets = budgets.current_use(now)
    return board


def add_counts_and_chart(board: Dashboard, recent) -> None:
    """Counts per connector and status, tokens, the stacked chart and the sparklines, from one
    query grouped by connector, status and the window's truncation (not one row per job)."""
    step, count, trunc = WINDOWS[board.window]
    names = labels.connector_labels()
    slugs = dict(Connector.objects.values_list("pk", "slug"))
    per_connector: dict[int, dict] = {}
    chart = [[0, 0, 0] for _ in range(count)]  # succeeded, dead, other
    tokens_in = tokens_out = 0
    rows = (
        recent.annotate(slot=trunc("created_at"))
        .values("connector_id", "status", "slot")
        .annotate(jobs=Count("id"), tokens_in=Sum("tokens_in"), tokens_out=Sum("tokens_out"))
        .order_by()
    )
    for row in rows:
        entry = per_connector.setdefault(
            row["connector_id"], {"counts": {}, "buckets": [0] * count}
        )
        entry["counts"][row["status"]] = entry["counts"].get(row["status"], 0) + row["jobs"]
        index = min(count - 1, max(0, int((row["slot"] - board.since) / step)))
        entry["buckets"][index] += row["jobs"]
        slot = 0 if row["status"] == Job.Status.SUCCEEDED else 1 if row["status"] == "dead" else 2
        chart[index][slot] += row["jobs"]
        tokens_in += row["tokens_in"] or 0
        tokens_out += row["tokens_out"] or 0
    board.tokens_in, board.tokens_out = tokens_in, tokens_out
    for pk, entry in sorted(per_connector.items(), key=lambda item: names.get(item[0], "")):
        counts = entry["counts"]
        board.rows.append(
            ConnectorRow(
                slugs.get(pk, str(pk)),
                names.get(pk, str(pk)),
                counts,
                rate(counts.get("succeeded", 0), counts.get("dead", 0)),
                sparkline(entry["buckets"]),
            )
        )
        for status, number in counts.items():
            board.totals[status] = board.totals.get(status, 0) + number
    board.success_rate = rate(board.totals.get("succeeded", 0), board.totals.get("dead", 0))
    board.bars, board.axis = bars(chart, board.since, step)


def add_throughput(board: Dashboard, since: datetime) -> None:
    """Succeeded jobs per minute three ways: over the window (what a day of quiet hours
    averages to), over the minutes that had work, and the busiest minute. The minutes are
    grouped and counted in the database: a week has up to 10,080 of them."""
    finished = Job.objects.filter(finished_at__gte=since, status=Job.Status.SUCCEEDED)
    minutes = (
        finished.annotate(minute=TruncMinute("finished_at"))
        .values("minute")
        .annotate(jobs=Count("*"))
        .order_by()
    )
    total = finished.count()
    step, count, _ = WINDOWS[board.window]
    board.per_minute = total / (step * count / timedelta(minutes=1))
    if not total:
        return
    board.busy_minutes = minutes.count()
    board.busy_per_minute = total / board.busy_minutes
    peak = minutes.order_by("-jobs", "minute").first()
    board.peak_minute, board.peak_per_minute = peak["minute"], peak["jobs"]


def nice_ceiling(value: int) -> int:
    """The axis top: 1, 2 or 5 times a power of ten, at least the value."""
    power = 1
    while True:
        for factor in (1, 2, 5):
            if power * factor >= value:
                return power * factor
        power *= 10


def bars(chart: list[list[int]], since: datetime, step: timedelta) -> tuple[list[dict], dict]:
    """Stacked bars per bucket (succeeded, dead, other) and the axes: y ticks at 0, half and
    the top, x labels at six or so bucket starts, in the console's time zone."""
    left, top, width, height = CHART["left"], CHART["top"], CHART["width"], CHART["height"]
    peak = nice_ceiling(max((sum(bucket) for bucket in chart), default=0) or 1)
    slot = width / len(chart)
    base = top + height
    result = []
    for index, (succeeded, dead, other) in enumerate(chart):
        ok_height, dead_height = height * succeeded / peak, height * dead / peak
        other_height = height * other / peak
        start = timezone.localtime(since + step * index)
        result.append(
            {
                "x": round(left + index * slot + 1, 1),
                "width": round(max(slot - 2, 1), 1),
                "ok_y": round(base - ok_height, 1),
                "ok_height": round(ok_height, 1),
                "dead_y": round(base - ok_height - dead_height, 1),
                "dead_height": round(dead_height, 1),
                "other_y": round(base - ok_height - dead_height - other_height, 1),
                "other_height": round(other_height, 1),
                "label": f"{start:%Y-%m-%d %H:%M}: {succeeded} succeeded, {dead} dead, "
                f"{other} other",
            }
        )
    every = max(1, len(chart) // 6)
    label = "%a %H:%M" if step >= timedelta(hours=6) else "%H:%M"
    ticks = [
        {
            "x": round(left + index * slot, 1),
            "text": timezone.localtime(since + step * index).strftime(label),
        }
        for index in range(0, len(chart), every)
    ]
    y_ticks = [
        {"y": round(base - height * share, 1), "text": f"{round(peak * share):,}"}
        for share in (0, 0.5, 1)
    ]
    axis = {
        "x_ticks": ticks,
        "y_ticks": y_ticks,
        "left": left,
        "right": left + width,
        "base": base,
        "top": top,
        "zone": timezone.get_current_timezone_name(),
        "step": step,
    }
    return result, axis


def sparkline(buckets: list[int]) -> str:
    """Polyline points for a connector's jobs per bucket, scaled to its own peak."""
    peak, last = max(buckets) or 1, max(len(buckets) - 1, 1)
    width, height = SPARK["width"], SPARK["height"]
    return " ".join(
        f"{width * index / last:.1f},{height - 1 - (height - 2) * n / peak:.1f}"
        for index, n in enumerate(buckets)
    )


def add_review_queue(board: Dashboard, now) -> None:
    """The review queue whatever the window: what waits now, and since when."""
    from connectors import review_schedule  # here: it imports operations, which imports us

    board.reviews = review_schedule.queue_rows(now)
    board.reviews_waiting = sum(row.waiting for row in board.reviews)
    board.reviews_overdue = sum(row.overdue for row in board.reviews)
    ages = [row.oldest_age_seconds(now) for row in board.reviews]
    board.review_oldest_seconds = max(ages) if ages else None


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
