"""The journey of a record, top to bottom.

    record -> input mapping -> redaction -> prompt            (prepare: at intake, before storing)
           -> AI provider -> output parsing/validation -> output mapping
           -> token restore -> write-back (sink)               (execute: in the worker)

`prepare` runs where a record enters (webhook, file, poller): only redacted data is stored.
`run_batch` runs in the worker: it claims a batch of jobs, executes them concurrently (bounded by
the provider's concurrency; threads do network I/O only) and records each outcome as it ends.
"""

import json
import logging
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError

from connectors import (
    crypto,
    legacy_json,
    lifecycle,
    mapping,
    models,
    prompts,
    ratelimit,
    redaction,
)
from connectors.database import reconnecting
from connectors.errors import ConfigError, OutputError, PipelineError, UnstorableValue
from connectors.models import Connector, Credential, FieldMapping, Job, RedactionRule
from connectors.providers import PROVIDERS
from connectors.providers.base import Provider, ProviderSettings
from connectors.sinks import SINKS
from connectors.sinks.base import Delivery, Sink, WriteOutcome

logger = logging.getLogger(__name__)


# --- At intake -----------------------------------------------------------------------------


@dataclass(frozen=True)
class IntakePlan:
    """What a connector does to a record before it is stored (loaded once per request/batch)."""

    connector: Connector
    input_fields: list[mapping.FieldSpec]
    rules: list[redaction.Rule]
    prompt_template: str


@dataclass(frozen=True)
class PreparedRecord:
    input_data: dict[str, Any]
    redaction_hits: dict[str, int]
    tokens: dict[str, str]
    prompt: str


def load_intake_plan(connector: Connector) -> IntakePlan:
    rules = RedactionRule.objects.filter(is_enabled=True).filter(
        connector__isnull=True
    ) | RedactionRule.objects.filter(is_enabled=True, connector=connector)
    return IntakePlan(
        connector=connector,
        input_fields=field_specs(connector, FieldMapping.Direction.INPUT),
        rules=[to_rule(rule) for rule in rules.order_by("connector_id", "position", "id")],
        prompt_template=connector.prompt_template,
    )


def prepare(plan: IntakePlan, record: Any) -> PreparedRecord:
    """Map, redact, render; raises MappingError or UnstorableValue (bad record) or
    RedactionError (fail closed)."""
    fields = mapping.map_fields(record, plan.input_fields)
    redacted = redact_and_render(plan, fields)
    prompt = redacted.prompt
    if problem := legacy_json.unstorable(redacted.fields) or legacy_json.unstorable(prompt):
        raise UnstorableValue(f"{problem}, which cannot be stored")
    return PreparedRecord(redacted.fields, redacted.hits, redacted.tokens, prompt)


def redact_and_render(plan: IntakePlan, fields: dict) -> redaction.RedactionResult:
    """Redact the fields, render the prompt from them, and scan the prompt once more."""
    return redaction.redact(
        fields,
        plan.rules,
        hash_key=crypto.redaction_hash_key(),
        prompt=lambda safe_fields: prompts.render_prompt(plan.prompt_template, safe_fields),
    )


def field_specs(connector: Connector, direction: str) -> list[mapping.FieldSpec]:
    return [
        mapping.FieldSpec(m.source_path, m.target_name, m.transform, m.is_required)
        for m in connector.mappings.filter(direction=direction)
    ]


def to_rule(rule: RedactionRule) -> redaction.Rule:
    return redaction.Rule(
        detector=rule.detector,
        action=rule.action,
        name=rule.name,
        pattern=rule.pattern,
        field=rule.field_name,
    )


# --- In the worker -------------------------------------------------------------------------


@dataclass
class Runtime:
    """A connector made ready to run: provider and sink built with their decrypted secrets."""

    connector: Connector
    provider: Provider
    sink: Sink
    output_fields: list[mapping.FieldSpec]
    output_schema: dict | None

    @property
    def concurrency(self) -> int:
        return self.connector.provider.max_concurrency


@dataclass(frozen=True)
class WorkItem:
    job_id: str
    attempt: int
    source_reference: str
    prompt: str
    tokens: dict[str, str]
    previous_result: dict | None  # the AI already answered on an earlier attempt
    source_metadata: dict = field(default_factory=dict)
    is_last_attempt: bool = False


@dataclass
class Outcome:
    """What happened to one job in one attempt; recorded by lifecycle.finish."""

    job_id: str
    ai_output: str = ""
    repair_prompt: str = ""
    model: str = ""
    output: dict | None = None
    result: dict | None = None
    token_report: dict = field(default_factory=dict)
    write: WriteOutcome | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    ai_ms: int | None = None
    write_ms: int | None = None
    error: PipelineError | None = None
    traceback: str = ""
    item: WorkItem | None = None
    pending: Delivery | None = None  # the write-back, when the sink writes in batches


def build_provider(provider: models.Provider) -> Provider:
    """The provider's client, with its secret decrypted now, at the moment of use."""
    return PROVIDERS.get(provider.kind)(
        ProviderSettings(
            kind=provider.kind,
            base_url=provider.base_url,
            model=provider.model,
            timeout=provider.timeout_seconds,
            parameters=provider.parameters,
        ),
        reveal(provider.credential),
    )


def build_sink(connector: Connector) -> Sink:
    """The connector's sink, with the secrets of the credentials it names decrypted now."""
    sink_class = SINKS.get(connector.sink_kind)
    sink_config = sink_class.effective_config(connector.sink_config, connector.source_config)
    sink_secrets = {}
    for key in sink_class.credential_fields:
        if sink_config.get(key):
            credential = Credential.objects.filter(name=sink_config[key]).first()
            if credential is None:
                raise ConfigError(f"sink {key}: no credential named {sink_config[key]!r}")
            sink_secrets[key] = reveal(credential)
    return sink_class(sink_config, sink_secrets)


def build_runtime(connector: Connector) -> Runtime:
    return Runtime(
        connector=connector,
        provider=build_provider(connector.provider),
        sink=build_sink(connector),
        output_fields=field_specs(connector, FieldMapping.Direction.OUTPUT),
        output_schema=connector.output_schema
        if connector.output_format == Connector.OutputFormat.JSON
        else None,
    )


def reveal(credential: Credential | None) -> str | None:
    if credential is None:
        return None
    credential.mark_used()
    return credential.reveal()


def execute(runtime: Runtime, job: Job) -> Outcome:
    """The network part of the journey; touches no database, so it can run in a thread.

    Sinks that write in batches (a database) get the result later, from write_batch."""
    outcome = Outcome(job_id=str(job.id))
    guarded(outcome, lambda: setattr(outcome, "item", work_item(job)))  # decrypts the tokens
    if outcome.error is None:
        guarded(outcome, lambda: answer(runtime, outcome.item, outcome))
    if outcome.error is None and not runtime.sink.writes_in_batches:
        guarded(outcome, lambda: write_one(runtime, outcome))
    if outcome.error is not None and outcome.item is not None:
        report_if_final(runtime, outcome)
    return outcome


def answer(runtime: Runtime, item: WorkItem, outcome: Outcome) -> None:
    """Ask the AI (unless an earlier attempt already has the answer), map, restore tokens."""
    result = item.previous_result
    if result is None:
        outcome.output = ask_ai(runtime, item.prompt, outcome)
        if problem := legacy_json.unstorable([outcome.ai_output, outcome.output]):
            # Checked before the write-back: an answer the job row cannot hold would otherwise
            # be written to the legacy system and then fail to be recorded.
            outcome.ai_output, outcome.output = repr(outcome.ai_output)[:2000], None
            raise OutputError(f"the answer cannot be stored: {problem}", permanent=False)
        result = outcome.result = mapping.map_fields(outcome.output, runtime.output_fields)
    if runtime.sink.can_restore_tokens and item.tokens:
        result, report = redaction.restore(result, item.tokens)
        outcome.token_report = report.as_dict()
    outcome.pending = delivery(runtime.connector.slug, item, result)


def write_one(runtime: Runtime, outcome: Outcome) -> None:
    started = time.monotonic()
    try:
        outcome.write = runtime.sink.write(outcome.pending)
    finally:
        outcome.write_ms = elapsed_ms(started)


def write_batch(runtime: Runtime, outcomes: list[Outcome]) -> None:
    """One write for the results that completed together (one legacy transaction)."""
    ready = [outcome for outcome in outcomes if outcome.error is None]
    if not ready:
        return
    started = time.monotonic()
    try:
        written = runtime.sink.write_many([outcome.pending for outcome in ready])
    except PipelineError as error:
        written = dict.fromkeys((outcome.job_id for outcome in ready), error)
    except Exception as error:  # a bug must fail the jobs, never the worker
        logger.exception("unexpected error writing a batch")
        failure = PipelineError(f"unexpected {type(error).__name__} writing the batch")
        written = dict.fromkeys((outcome.job_id for outcome in ready), failure)
    write_ms = elapsed_ms(started)
    for outcome in ready:
        outcome.write_ms = write_ms
        result = written[outcome.job_id]
        if isinstance(result, PipelineError):
            outcome.error = result
            report_if_final(runtime, outcome)
        else:
            outcome.write = result


def guarded(outcome: Outcome, step) -> None:
    """Run a step; any failure becomes the outcome's error, never the worker's."""
    try:
        step()
    except PipelineError as error:
        outcome.error = error
    except Exception as error:
        logger.exception("unexpected error in job %s", outcome.job_id)
        outcome.error = PipelineError(f"unexpected {type(error).__name__} (see traceback)")
        outcome.traceback = traceback.format_exc(limit=20)


def report_if_final(runtime: Runtime, outcome: Outcome) -> None:
    item = outcome.item
    if outcome.error.permanent or item.is_last_attempt:
        report_failure(runtime.sink, runtime.connector.slug, item, outcome.error)


def delivery(connector_slug: str, item: WorkItem, result: dict) -> Delivery:
    return Delivery(
        job_id=item.job_id,
        connector=connector_slug,
        source_reference=item.source_reference,
        result=result,
        attempt=item.attempt,
        source_metadata=item.source_metadata,
    )


def report_failure(sink: Sink, connector_slug: str, item: WorkItem, error: PipelineError) -> None:
    """The job is about to end dead: let the legacy side know, best effort."""
    try:
        sink.report_failure(delivery(connector_slug, item, {}), f"{error.code}: {error.message}")
    except Exception:
        logger.exception("could not report the failure of job %s to its sink", item.job_id)


def ask_ai(runtime: Runtime, prompt: str, outcome: Outcome) -> dict:
    """Call the provider; when the answer is invalid, ask once more with the error (repair)."""
    output_format = runtime.connector.output_format
    provider = runtime.connector.provider
    started = time.monotonic()
    try:
        ratelimit.wait_for_slot(f"provider:{provider.name}", provider.requests_per_minute)
        completion = runtime.provider.complete(prompt, json_schema=runtime.output_schema)
        outcome.model, outcome.ai_output = completion.model, completion.text
        outcome.tokens_in, outcome.tokens_out = completion.tokens_in, completion.tokens_out
        try:
            return prompts.parse_output(completion.text, output_format, runtime.output_schema)
        except OutputError as error:
            outcome.repair_prompt = prompts.repair_prompt(prompt, completion.text, error.message)
        ratelimit.wait_for_slot(f"provider:{provider.name}", provider.requests_per_minute)
        completion = runtime.provider.complete(
            outcome.repair_prompt, json_schema=runtime.output_schema
        )
        outcome.ai_output = completion.text
        outcome.tokens_in += completion.tokens_in
        outcome.tokens_out += completion.tokens_out
        return prompts.parse_output(completion.text, output_format, runtime.output_schema)
    finally:
        outcome.ai_ms = elapsed_ms(started)


def run_batch(job_ids: list[str], *, worker: str = "") -> None:
    """Claim the jobs, run them concurrently, record each outcome as it completes."""
    jobs = reconnecting(lifecycle.claim, job_ids, worker, what="claiming jobs")
    if not jobs:
        return
    connector = jobs[0].connector
    try:
        runtime = build_runtime(connector)
    except PipelineError as error:
        lifecycle.finish_many([(job, Outcome(job_id=str(job.id), error=error)) for job in jobs])
        return
    except Exception as error:  # e.g. a secret that no key decrypts
        failure = PipelineError(f"cannot prepare connector: {error}", permanent=False)
        lifecycle.finish_many([(job, Outcome(job_id=str(job.id), error=failure)) for job in jobs])
        return
    try:
        run_concurrently(runtime, jobs)
    finally:
        runtime.sink.close()
        runtime.provider.close()


def run_concurrently(runtime: Runtime, jobs: list[Job]) -> None:
    by_id = {str(job.id): job for job in jobs}
    heartbeat = settings.JOB_HEARTBEAT_SECONDS
    pool = ThreadPoolExecutor(max_workers=min(runtime.concurrency, len(jobs)))
    running: set[Future] = {pool.submit(execute, runtime, job) for job in jobs}
    try:
        while running:
            done, running = wait(running, timeout=heartbeat, return_when=FIRST_COMPLETED)
            record(runtime, by_id, [future.result() for future in done])
            if running:
                reconnecting(lifecycle.extend_leases, list(by_id), what="renewing leases")
    except BaseException:
        # RQ's job timeout or a shutdown: calls not started never will be (their leases run
        # out and they run again, once); calls in flight finish and are recorded, so nothing
        # that was written back is run a second time.
        pool.shutdown(wait=True, cancel_futures=True)
        record(runtime, by_id, [f.result() for f in running if f.done() and not f.cancelled()])
        raise
    finally:
        pool.shutdown(wait=False)


def record(runtime: Runtime, by_id: dict[str, Job], outcomes: list[Outcome]) -> None:
    """Write the batch-writing sink's results, then record the outcomes in one transaction; if
    the database refuses one of them, the others are recorded one by one all the same."""
    if not outcomes:
        return
    if runtime.sink.writes_in_batches:
        write_batch(runtime, outcomes)
    finished = [(by_id.pop(o.job_id), o) for o in outcomes]
    try:
        reconnecting(lifecycle.finish_many, finished, what="recording outcomes")
    except (OperationalError, InterfaceError):
        raise  # the database is gone: the leases recover these jobs
    except Exception:
        logger.exception("recording %d outcomes failed; recording them one by one", len(finished))
        for job, outcome in finished:
            try:
                lifecycle.finish_many([(job, outcome)])
            except Exception:
                logger.exception("the outcome of job %s cannot be stored", job.id)
                failure = PipelineError(
                    "the outcome could not be stored (see the worker log)", permanent=True
                )
                lifecycle.finish_many([(job, Outcome(job_id=outcome.job_id, error=failure))])


def report_dead(job_ids: list[str]) -> None:
    """Jobs that died with their worker: tell the legacy side, as execute() does for the rest."""
    jobs = Job.objects.select_related("connector__provider").filter(id__in=job_ids)
    by_connector: dict[int, list[Job]] = {}
    for job in jobs:
        by_connector.setdefault(job.connector_id, []).append(job)
    for connector_jobs in by_connector.values():
        try:
            sink = build_sink(connector_jobs[0].connector)
        except Exception:
            logger.exception("cannot build the sink to report lost jobs")
            continue
        try:
            for job in connector_jobs:
                error = PipelineError(job.error_message, code="worker_lost")
                try:
                    item = work_item(job)
                except Exception:  # e.g. a token map no key decrypts: report the others
                    logger.exception("cannot report lost job %s", job.id)
                    continue
                report_failure(sink, job.connector.slug, item, error)
        finally:
            sink.close()


def work_item(job: Job) -> WorkItem:
    tokens = json.loads(crypto.decrypt(job.encrypted_tokens)) if job.encrypted_tokens else {}
    return WorkItem(
        job_id=str(job.id),
        attempt=job.attempts,
        source_reference=job.source_reference,
        prompt=job.prompt,
        tokens=tokens,
        previous_result=job.result,
        source_metadata=job.source_metadata,
        is_last_attempt=job.attempts - job.attempts_before_retry >= job.connector.max_attempts,
    )


def elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
