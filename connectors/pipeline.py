"""The journey of a record, top to bottom.

    record -> input mapping -> redaction -> prompt            (prepare: at intake, before storing)
           -> AI provider -> output parsing/validation (one repair) -> output mapping
           -> token restore -> write-back (sink)               (execute: in the worker)

`prepare` runs where a record enters (webhook, file, poller): only redacted data is stored.
`execute` runs one claimed job in the worker. Each step takes values and returns a value; they
meet in a `work.Outcome`. Claiming batches, running them concurrently and recording outcomes
is the worker's part (connectors.batches).
"""

import json
import logging
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Any

from connectors import (
    answer_guard,
    budgets,
    credentials,
    crypto,
    legacy_json,
    mapping,
    prompts,
    ratelimit,
    redaction,
    review_policy,
)
from connectors.errors import OutputError, PipelineError, ProviderError, UnstorableValue
from connectors.models import Connector, FieldMapping, Job, RedactionRule
from connectors.models import Provider as ProviderModel
from connectors.providers import PROVIDERS
from connectors.providers.base import Completion, Provider, ProviderConfig
from connectors.sinks import SINKS
from connectors.sinks.base import Sink
from connectors.work import Answer, Delivery, Outcome, WorkItem, WriteBack

logger = logging.getLogger(__name__)


# --- At intake -----------------------------------------------------------------------------


@dataclass(frozen=True)
class IntakePlan:
    """What a connector does to a record before it is stored, and how its answer maps back
    (loaded once per update stamp: intake_plans)."""

    connector: Connector
    input_fields: list[mapping.FieldSpec]
    rules: list[redaction.Rule]
    prompt_template: str
    output_fields: list[mapping.FieldSpec]


@dataclass(frozen=True)
class PreparedRecord:
    input_data: dict[str, Any]
    redaction_hits: dict[str, int]
    tokens: dict[str, str]
    prompt: str
    source_reference: str = ""  # from the connector's source reference field, redacted


def load_intake_plan(connector: Connector) -> IntakePlan:
    return IntakePlan(
        connector=connector,
        input_fields=field_specs(connector, FieldMapping.Direction.INPUT),
        rules=connector_rules(connector),
        prompt_template=connector.prompt_template,
        output_fields=field_specs(connector, FieldMapping.Direction.OUTPUT),
    )


def connector_rules(connector: Connector) -> list[redaction.Rule]:
    """The global rules first, then the connector's own, each in their order."""
    rules = RedactionRule.objects.filter(is_enabled=True).filter(
        connector__isnull=True
    ) | RedactionRule.objects.filter(is_enabled=True, connector=connector)
    return [to_rule(rule) for rule in rules.order_by("connector_id", "position", "id")]


def prepare(plan: IntakePlan, record: Any) -> PreparedRecord:
    """Map, redact, render; raises MappingError or UnstorableValue (bad record) or
    RedactionError (fail closed)."""
    [prepared] = prepare_many(plan, [record])
    if isinstance(prepared, PipelineError):
        raise prepared
    return prepared


def prepare_many(plan: IntakePlan, records: list[Any]) -> list[PreparedRecord | PipelineError]:
    """`prepare` for each record, their redaction in one batch (redaction.redact_many): each
    record's PreparedRecord, or the error that refuses that record alone."""
    prepared: list[PreparedRecord | PipelineError | None] = [None] * len(records)
    mapped: dict[int, dict] = {}
    for index, record in enumerate(records):
        try:
            mapped[index] = mapping.map_fields(record, plan.input_fields)
        except PipelineError as error:
            prepared[index] = error
    redacted_many = redaction.redact_many(
        list(mapped.values()),
        plan.rules,
        hash_key=crypto.redaction_hash_key(),
        prompt=lambda safe_fields: prompts.render_prompt(plan.prompt_template, safe_fields),
        **detector_options(plan.connector),
    )
    for index, redacted in zip(mapped, redacted_many, strict=True):
        try:
            prepared[index] = finish_record(plan, records[index], redacted)
        except PipelineError as error:
            prepared[index] = error
    return prepared


def finish_record(
    plan: IntakePlan, record: Any, redacted: redaction.RedactionResult | PipelineError
) -> PreparedRecord:
    """The record as stored, once its redaction is known; raises what refuses it."""
    if isinstance(redacted, PipelineError):
        raise redacted
    prompt = redacted.prompt
    if problem := legacy_json.unstorable(redacted.fields) or legacy_json.unstorable(prompt):
        raise UnstorableValue(f"{problem}, which cannot be stored")
    reference = source_reference(plan, record)
    return PreparedRecord(redacted.fields, redacted.hits, redacted.tokens, prompt, reference)


def source_reference(plan: IntakePlan, record: Any) -> str:
    """The record's own reference at the connector's path, through the connector's redaction
    (it is stored and shown); "" when the connector names no path or the record lacks it."""
    path = plan.connector.source_reference_field
    if not path:
        return ""
    try:
        value = mapping.resolve_path(record, path)
    except mapping.PathNotFound:
        return ""
    if value is None or isinstance(value, dict | list):
        return ""
    redacted = redaction.redact(
        {"reference": str(value)},
        plan.rules,
        hash_key=crypto.redaction_hash_key(),
        **detector_options(plan.connector),
    )
    return str(redacted.fields["reference"])[:500]


def redact_and_render(plan: IntakePlan, fields: dict) -> redaction.RedactionResult:
    """Redact the fields, render the prompt from them, and scan the prompt once more."""
    return redaction.redact(
        fields,
        plan.rules,
        hash_key=crypto.redaction_hash_key(),
        prompt=lambda safe_fields: prompts.render_prompt(plan.prompt_template, safe_fields),
        **detector_options(plan.connector),
    )


def detector_options(connector: Connector) -> dict:
    """The connector's phone regions and ID countries; empty: the global settings'."""
    return {
        "phone_regions": connector.phone_regions or None,
        "id_countries": connector.id_countries or None,
    }


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
class Candidate:
    """One provider a connector may ask: its row (name, limits, prices) and its built client.
    `slots` bounds the calls in flight to a fallback at its own max_concurrency (the batch's
    threads are already bounded by the connector's provider's)."""

    row: ProviderModel
    client: Provider
    slots: threading.BoundedSemaphore


@dataclass
class Runtime:
    """A connector made ready to run: providers and sink built with their decrypted secrets.
    `providers` is the connector's provider first, then its fallbacks in their order."""

    connector: Connector
    providers: list[Candidate]
    sink: Sink
    output_fields: list[mapping.FieldSpec]
    output_schema: dict | None
    guard: answer_guard.Guard
    budgets: list[budgets.Spec]
    review: review_policy.Policy = field(default_factory=review_policy.Policy)

    @property
    def concurrency(self) -> int:
        return self.connector.provider.max_concurrency

    def close(self) -> None:
        self.sink.close()
        for candidate in self.providers:
            candidate.client.close()


def build_runtime(connector: Connector, plan: IntakePlan | None = None) -> Runtime:
    """The connector's runtime; its mappings and rules from `plan` when given (a worker passes
    the one its process keeps per update stamp), else read now."""
    is_json = connector.output_format == Connector.OutputFormat.JSON
    plan = plan or load_intake_plan(connector)
    return Runtime(
        connector=connector,
        providers=[candidate(row) for row in connector_providers(connector)],
        sink=build_sink(connector),
        output_fields=plan.output_fields,
        output_schema=connector.output_schema if is_json else None,
        guard=answer_guard.Guard.for_rules(
            plan.rules, connector.answer_pii, **detector_options(connector)
        ),
        budgets=budgets.for_connector(connector),
        review=review_policy.for_connector(connector),
    )


def connector_providers(connector: Connector) -> list[ProviderModel]:
    """The connector's provider, then its fallbacks in their order (a deleted one is skipped)."""
    names = connector.fallback_providers or []
    found = ProviderModel.objects.select_related("credential").in_bulk(names, field_name="name")
    return [connector.provider] + [found[name] for name in names if name in found]


def candidate(row: ProviderModel) -> Candidate:
    return Candidate(row, build_provider(row), threading.BoundedSemaphore(row.max_concurrency))


def build_provider(provider) -> Provider:
    """The provider's client, with its secret decrypted now, at the moment of use."""
    return PROVIDERS.get(provider.kind)(
        ProviderConfig(
            kind=provider.kind,
            base_url=provider.base_url,
            model=provider.model,
            timeout=provider.timeout_seconds,
            parameters=provider.parameters,
            settings=provider.settings,
        ),
        credentials.reveal(provider.credential),
    )


def build_sink(connector: Connector) -> Sink:
    """The connector's sink, with the secrets of the credentials it names decrypted now."""
    kind = SINKS.get(connector.sink_kind)
    config = kind.validate_config(
        kind.effective_config(connector.sink_config, connector.source_config)
    )
    return kind(config, credentials.secrets_for(kind, config))


def execute(runtime: Runtime, job: Job) -> Outcome:
    """One claimed job, from its prompt to the legacy system. Touches no database, so it can run
    in a thread; a failure at any step becomes the outcome's error, never the worker's.
    Sinks that write in batches get the delivery later, from write_batch."""
    outcome = Outcome(job_id=str(job.id))
    try:
        item = work_item(job)  # decrypts the token map
        outcome = replace(outcome, item=item)
        result = item.previous_result  # an earlier attempt already has the answer
        if result is None:
            answer = ask(runtime, item.prompt)
            outcome = replace(outcome, answer=answer)
            if answer.error is not None:
                raise answer.error
            output, found = answer_guard.check(runtime.guard, answer.output, item.prompt)
            outcome = replace(outcome, answer_pii=found)
            if found and runtime.guard.action == Connector.AnswerPII.FAIL:
                raise answer_guard.refusal(found)
            result = mapping.map_fields(output, runtime.output_fields)
            outcome = replace(outcome, result=result)
            if held := runtime.review.holds(output, item.record, result):
                return replace(outcome, held=held)  # a person decides before anything is written
        restored, token_report = restore(runtime, item, result)
        delivery = delivery_for(runtime.connector.slug, item, restored)
        outcome = replace(outcome, token_report=token_report, delivery=delivery)
        if not runtime.sink.writes_in_batches:
            write_back = deliver(runtime.sink, delivery)
            outcome = replace(outcome, write_back=write_back)
            if write_back.error is not None:
                raise write_back.error
    except PipelineError as error:
        outcome = replace(outcome, error=error)
    except Exception as error:
        logger.exception("unexpected error in job %s", outcome.job_id)
        outcome = replace(
            outcome,
            error=PipelineError(f"unexpected {type(error).__name__} (see traceback)"),
            traceback=traceback.format_exc(limit=20),
        )
    report_if_final(runtime, outcome)
    return outcome


def ask(runtime: Runtime, prompt: str) -> Answer:
    """Ask the AI; when the answer is invalid, ask once more with the error (repair), of the
    provider that answered. The answer keeps what was spent even when no valid output came."""
    output_format, schema = runtime.connector.output_format, runtime.output_schema
    started = time.monotonic()
    answer = Answer()
    try:
        completion, answered = complete(runtime, prompt)
        answer = spent(replace(answer, provider=answered.name), completion)
        try:
            output = prompts.parse_output(completion.text, output_format, schema)
        except OutputError as error:
            repair = prompts.repair_prompt(prompt, completion.text, error.message)
            answer = replace(answer, repair_prompt=repair)
            completion, _ = complete(runtime, repair, only=answered)
            answer = spent(answer, completion)
            output = prompts.parse_output(completion.text, output_format, schema)
        answer = replace(answer, output=output)
    except PipelineError as error:
        answer = replace(answer, error=error)
    answer = replace(answer, ms=elapsed_ms(started))
    if answer.error is None and (problem := legacy_json.unstorable([answer.text, answer.output])):
        # Checked before the write-back: an answer the job row cannot hold would otherwise be
        # written to the legacy system and then fail to be recorded.
        error = OutputError(f"the answer cannot be stored: {problem}", permanent=False)
        answer = replace(answer, text=repr(answer.text)[:2000], output=None, error=error)
    return answer


def complete(
    runtime: Runtime, prompt: str, *, only: ProviderModel | None = None
) -> tuple[Completion, ProviderModel]:
    """One provider call, within that provider's requests- and tokens-per-minute limits, and the
    provider that answered: the connector's own, else the next fallback while the errors are
    retryable (down, 429, 5xx, timeout). A permanent error stops at once; when all fail, the
    last error is the job's. `only`: that provider, no fallback (the repair goes to who
    answered)."""
    chain = [c for c in runtime.providers if only is None or c.row.pk == only.pk]
    for candidate in chain:
        row = candidate.row
        ratelimit.wait_for_slot(f"provider:{row.name}", row.requests_per_minute)
        if row.tokens_per_minute:
            worst = budgets.worst_case_tokens(candidate.client, prompt, runtime.output_schema)
            ratelimit.wait_for_tokens(f"provider:{row.name}", row.tokens_per_minute, worst)
        try:
            with (
                candidate.slots,
                budgets.held(
                    runtime.budgets, row, candidate.client, prompt, runtime.output_schema
                ) as hold,
            ):
                completion = candidate.client.complete(prompt, json_schema=runtime.output_schema)
                hold.spend(row, completion)
                return completion, row
        except ProviderError as error:
            if error.permanent or candidate is chain[-1]:
                raise
            logger.warning("provider %s failed (%s), trying the next one", row.name, error.code)
    raise AssertionError("a runtime always has a provider")


def spent(answer: Answer, completion: Completion) -> Answer:
    """The answer after one more completion: its text and model, the tokens added up."""
    return replace(
        answer,
        text=completion.text,
        model=completion.model,
        stop_reason=completion.stop_reason,
        tokens_in=answer.tokens_in + completion.tokens_in,
        tokens_out=answer.tokens_out + completion.tokens_out,
        tokens_cached=answer.tokens_cached + completion.tokens_cached,
    )


def restore(runtime: Runtime, item: WorkItem, result: dict) -> tuple[dict, dict]:
    """Put the tokenized values back, for sinks that write inside our walls."""
    if not (runtime.sink.can_restore_tokens and item.tokens):
        return result, {}
    restored, report = redaction.restore(result, item.tokens)
    return restored, report.as_dict()


def deliver(sink: Sink, delivery: Delivery) -> WriteBack:
    started = time.monotonic()
    try:
        written = sink.write(delivery)
    except PipelineError as error:
        return WriteBack(error=error, ms=elapsed_ms(started))
    return WriteBack(written=written, ms=elapsed_ms(started))


def write_batch(runtime: Runtime, outcomes: list[Outcome]) -> list[Outcome]:
    """One write for the results that completed together (one legacy transaction)."""
    ready = [outcome for outcome in outcomes if outcome.is_ready_to_write]
    if not ready:
        return outcomes
    started = time.monotonic()
    try:
        written = runtime.sink.write_many([outcome.delivery for outcome in ready])
    except PipelineError as error:
        written = dict.fromkeys((outcome.job_id for outcome in ready), error)
    except Exception as error:  # a bug must fail the jobs, never the worker
        logger.exception("unexpected error writing a batch")
        failure = PipelineError(f"unexpected {type(error).__name__} writing the batch")
        written = dict.fromkeys((outcome.job_id for outcome in ready), failure)
    ms = elapsed_ms(started)
    finished = []
    for outcome in outcomes:
        if outcome.is_ready_to_write:
            result = written[outcome.job_id]
            if isinstance(result, PipelineError):
                outcome = replace(outcome, write_back=WriteBack(error=result, ms=ms), error=result)
                report_if_final(runtime, outcome)
            else:
                outcome = replace(outcome, write_back=WriteBack(written=result, ms=ms))
        finished.append(outcome)
    return finished


def report_if_final(runtime: Runtime, outcome: Outcome) -> None:
    """A job about to end dead lets the legacy side know (a status column, a reply)."""
    error, item = outcome.error, outcome.item
    final = error is not None and (
        error.permanent or (item is not None and item.is_last_attempt and error.counts_as_attempt)
    )
    if final and item is not None:
        report_failure(runtime.sink, runtime.connector.slug, item, error)


def report_failure(sink: Sink, connector_slug: str, item: WorkItem, error: PipelineError) -> None:
    """Best effort: a failing report must not change what happened to the job."""
    try:
        message = f"{error.code}: {error.message}"
        sink.report_failure(delivery_for(connector_slug, item, {}), message)
    except Exception:
        logger.exception("could not report the failure of job %s to its sink", item.job_id)


def delivery_for(connector_slug: str, item: WorkItem, result: dict) -> Delivery:
    return Delivery(
        job_id=item.job_id,
        connector=connector_slug,
        source_reference=item.source_reference,
        result=result,
        attempt=item.attempt,
        source_metadata=item.source_metadata,
    )


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
        is_last_attempt=job.is_last_attempt,
        record=job.input_data,
    )


def elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
