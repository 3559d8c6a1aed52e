"""Token and money budgets, shared by every worker on every host through Redis.

Before a call is sent it reserves its worst case (an upper bound of the prompt's tokens plus the
provider's answer limit, priced at the provider's prices) against every budget that covers it,
in one Lua script: all fit and are counted, or none is and the call is not sent. After the call
the reservation is settled to the real usage. A per-process counter would let N workers spend
N budgets (LiteLLM's budgets race so); a database row would put writes in the threads that run
the calls, which touch only the network.

The counters are a cache of what the database records: a period's counter that Redis does not
have (a new period, a restarted or flushed Redis) is seeded from the attempt rows of that period
before a batch runs, so a flush cannot reset a budget. Money is counted in millionths of the
currency (the job table's precision). Periods are UTC days and months.
"""

import calendar
import contextlib
import json
import logging
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db.models import F, Sum
from django.utils import timezone
from redis.exceptions import RedisError

from connectors import broker
from connectors.errors import ProviderError
from connectors.models import Budget, Connector, JobAttempt
from connectors.models import Provider as ProviderModel
from connectors.providers.base import Completion, Provider

logger = logging.getLogger(__name__)

CODE = "budget_exhausted"
DEFAULT_ANSWER_TOKENS = 4096  # reserved for a provider that sets no answer limit
PROMPT_OVERHEAD_TOKENS = 16  # role markers and the like a provider adds around a prompt
MICROS = Decimal(1_000_000)
ALERT_THRESHOLDS = (Decimal("0.8"), Decimal("1"))

# KEYS: one hash per budget period. ARGV: ttl, then per key: token limit, micros limit, tokens,
# micros (a limit of -1: none). Returns 0 and the index (1-based) of the first budget that
# cannot cover the call, or 1 when every one was charged.
RESERVE = """
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local base = 1 + (i - 1) * 4
  local token_limit, micros_limit = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
  local tokens, micros = tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4])
  local used_tokens = tonumber(redis.call('HGET', key, 'tokens') or '0')
  local used_micros = tonumber(redis.call('HGET', key, 'micros') or '0')
  if (token_limit >= 0 and used_tokens + tokens > token_limit)
      or (micros_limit >= 0 and used_micros + micros > micros_limit) then
    return {0, i}
  end
end
for i, key in ipairs(KEYS) do
  local base = 1 + (i - 1) * 4
  redis.call('HINCRBY', key, 'tokens', ARGV[base + 3])
  redis.call('HINCRBY', key, 'micros', ARGV[base + 4])
  redis.call('EXPIRE', key, ttl)
end
return {1, 0}
"""


class BudgetExhausted(ProviderError):
    """The call was not sent: a budget cannot cover its worst case. It waits for the period to
    roll over (retryable, without using up an attempt) or ends the job, as the budget says."""

    code = CODE
    counts_as_attempt = False


@dataclass(frozen=True)
class Spec:
    """A budget as a worker applies it (loaded once per batch)."""

    id: int
    period: str
    provider: str | None  # the provider's name, or None for every call of the connector
    max_tokens: int | None
    max_micros: int | None
    ends_dead: bool
    label: str

    def covers(self, provider_name: str) -> bool:
        return self.provider is None or self.provider == provider_name


@dataclass
class Hold:
    """What a call reserved, and against which counters; settled once."""

    keys: list[str] = field(default_factory=list)
    tokens: int = 0
    micros: int = 0
    spent_tokens: int = 0
    spent_micros: int = 0

    def spend(self, row: ProviderModel, completion: Completion) -> None:
        self.spent_tokens = completion.tokens_in + completion.tokens_out
        cost = row.cost(completion.tokens_in, completion.tokens_out, completion.tokens_cached)
        self.spent_micros = int(cost * MICROS)


# --- Periods -----------------------------------------------------------------------------


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    now = now.astimezone(UTC)
    if period == Budget.Period.DAY:
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    days = calendar.monthrange(start.year, start.month)[1]
    return start, start + timedelta(days=days)


def counter_key(budget_id: int, period: str, now: datetime) -> str:
    start, _ = period_bounds(period, now)
    stamp = start.strftime("%Y%m%d" if period == Budget.Period.DAY else "%Y%m")
    return f"interlock:budget:{budget_id}:{stamp}"


# --- Loading and seeding (in the worker's main thread, with the database) -----------------------


def for_connector(connector: Connector, now: datetime | None = None) -> list[Spec]:
    """The connector's budgets, with each period's counter seeded from the database if Redis
    does not have it."""
    now = now or timezone.now()
    specs = [
        Spec(
            id=budget.id,
            period=budget.period,
            provider=budget.provider.name if budget.provider_id else None,
            max_tokens=budget.max_tokens,
            max_micros=None if budget.max_cost is None else int(budget.max_cost * MICROS),
            ends_dead=budget.when_exhausted == Budget.WhenExhausted.DEAD,
            label=str(budget),
        )
        for budget in connector.budgets.select_related("provider")
    ]
    for spec in specs:
        with contextlib.suppress(RedisError):  # reserve() fails closed if Redis stays down
            seed(spec, connector.id, now)
    return specs


def recorded_usage(spec: Spec, connector_id: int, now: datetime) -> tuple[int, int]:
    """Tokens and micros the attempt rows of the current period spent."""
    start, end = period_bounds(spec.period, now)
    attempts = JobAttempt.objects.filter(
        job__connector_id=connector_id, started_at__gte=start, started_at__lt=end
    )
    if spec.provider is not None:
        attempts = attempts.filter(provider_name=spec.provider)
    usage = attempts.aggregate(tokens=Sum(F("tokens_in") + F("tokens_out")), cost=Sum("cost"))
    return int(usage["tokens"] or 0), int((usage["cost"] or Decimal(0)) * MICROS)


def seed(spec: Spec, connector_id: int, now: datetime) -> None:
    key = counter_key(spec.id, spec.period, now)
    redis = broker.get_redis()
    if redis.exists(key):
        return
    tokens, micros = recorded_usage(spec, connector_id, now)
    _, end = period_bounds(spec.period, now)
    pipe = redis.pipeline()
    pipe.hsetnx(key, "tokens", tokens).hsetnx(key, "micros", micros)
    pipe.expire(key, ttl_seconds(end, now))
    pipe.execute()


def ttl_seconds(end: datetime, now: datetime) -> int:
    return int((end - now).total_seconds()) + 86400  # kept a day past the period, for the board


# --- Reserving and settling (in the threads that run the calls) ------------------------------


def worst_case_tokens(client: Provider, prompt: str, schema: dict | None) -> int:
    """An upper bound of the call's tokens: byte-level tokenizers never make more tokens than
    the prompt has UTF-8 bytes, plus the schema (sent in the prompt or as a tool) and the
    provider's answer limit."""
    prompt_tokens = len(prompt.encode()) + PROMPT_OVERHEAD_TOKENS
    if schema:
        prompt_tokens += len(json.dumps(schema).encode())
    return prompt_tokens + (client.answer_token_limit() or DEFAULT_ANSWER_TOKENS)


def worst_case_micros(row: ProviderModel, tokens: int, answer_tokens: int) -> int:
    cost = row.cost(tokens - answer_tokens, answer_tokens)
    return math.ceil(cost * MICROS)


@contextlib.contextmanager
def held(
    specs: list[Spec],
    row: ProviderModel,
    client: Provider,
    prompt: str,
    schema: dict | None,
    now: datetime | None = None,
) -> Iterator[Hold]:
    """Reserve the call's worst case against the budgets covering `row`, or raise
    BudgetExhausted; on exit, settle to what the Hold says was spent (nothing if the call
    failed)."""
    covering = [spec for spec in specs if spec.covers(row.name)]
    if not covering:
        yield Hold()
        return
    now = now or timezone.now()
    tokens = worst_case_tokens(client, prompt, schema)
    answer_tokens = client.answer_token_limit() or DEFAULT_ANSWER_TOKENS
    hold = Hold(
        keys=[counter_key(spec.id, spec.period, now) for spec in covering],
        tokens=tokens,
        micros=worst_case_micros(row, tokens, answer_tokens),
    )
    reserve(covering, hold, now)
    try:
        yield hold
    finally:
        settle(hold)


def reserve(specs: list[Spec], hold: Hold, now: datetime) -> None:
    arguments = [max(ttl_seconds(period_bounds(s.period, now)[1], now) for s in specs)]
    for spec in specs:
        arguments += [
            -1 if spec.max_tokens is None else spec.max_tokens,
            -1 if spec.max_micros is None else spec.max_micros,
            hold.tokens,
            hold.micros,
        ]
    try:
        charged, index = broker.get_redis().eval(RESERVE, len(hold.keys), *hold.keys, *arguments)
    except RedisError:
        raise ProviderError("the budget cannot be checked: Redis is unreachable") from None
    if not charged:
        raise exhausted(specs[int(index) - 1], hold, now)


def exhausted(spec: Spec, hold: Hold, now: datetime) -> BudgetExhausted:
    _, end = period_bounds(spec.period, now)
    worst = f"{hold.tokens} tokens"
    if spec.max_micros is not None:
        worst += f", {Decimal(hold.micros) / MICROS:.6f}"
    if spec.ends_dead:
        return BudgetExhausted(
            f"budget {spec.label} cannot cover this call's worst case ({worst})", permanent=True
        )
    # Spread the waiting jobs over the new period's first minute.
    wait = (end - now).total_seconds() + random.uniform(1, 60)
    return BudgetExhausted(
        f"budget {spec.label} cannot cover this call's worst case ({worst}); it is retried "
        f"when the period rolls over at {end:%Y-%m-%d %H:%M} UTC",
        permanent=False,
        retry_after=wait,
    )


def settle(hold: Hold) -> None:
    """Give back what was reserved and not spent. Best effort: a failure leaves the budget
    over-counted (safe), and the next period starts afresh."""
    tokens, micros = hold.spent_tokens - hold.tokens, hold.spent_micros - hold.micros
    try:
        pipe = broker.get_redis().pipeline()
        for key in hold.keys:
            pipe.hincrby(key, "tokens", tokens).hincrby(key, "micros", micros)
        pipe.execute()
    except RedisError:
        logger.warning("could not settle a budget reservation (Redis unreachable)")


# --- Use against budgets (dashboard, metrics, alerts) ----------------------------------------


@dataclass(frozen=True)
class Use:
    budget: Budget
    period_start: datetime
    tokens: int
    cost: Decimal

    @property
    def share(self) -> Decimal:
        """The largest share of a limit used (reservations in flight included)."""
        shares = []
        if self.budget.max_tokens:
            shares.append(Decimal(self.tokens) / Decimal(self.budget.max_tokens))
        if self.budget.max_cost:
            shares.append(self.cost / self.budget.max_cost)
        return max(shares, default=Decimal(0))

    @property
    def percent(self) -> int:
        return int(self.share * 100)

    @property
    def currency(self) -> str:
        provider = self.budget.provider or self.budget.connector.provider
        return provider.currency


def current_use(now: datetime | None = None) -> list[Use]:
    """Every budget's use in its current period: Redis's counter, else the recorded usage."""
    now = now or timezone.now()
    budgets = list(Budget.objects.select_related("connector__provider", "provider"))
    counters: list = [None] * len(budgets)
    try:
        pipe = broker.get_redis().pipeline()
        for budget in budgets:
            pipe.hmget(counter_key(budget.id, budget.period, now), "tokens", "micros")
        counters = pipe.execute()
    except RedisError:
        pass
    uses = []
    for budget, counter in zip(budgets, counters, strict=True):
        spec_provider = budget.provider.name if budget.provider_id else None
        if counter and counter[0] is not None:
            tokens, micros = int(counter[0]), int(counter[1] or 0)
        else:
            spec = Spec(budget.id, budget.period, spec_provider, None, None, False, "")
            tokens, micros = recorded_usage(spec, budget.connector_id, now)
        start, _ = period_bounds(budget.period, now)
        uses.append(Use(budget, start, max(tokens, 0), Decimal(max(micros, 0)) / MICROS))
    return uses
