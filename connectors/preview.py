"""Preview a connector on a sample record without storing anything: the mapped fields, what each
redaction rule changed and the spans it found (by type, as `manage.py redact` shows them), the
exact prompt; and "try it", which also asks the AI once."""

import re
from dataclasses import dataclass, field
from typing import Any

from connectors import mapping, pipeline, redaction, review_policy
from connectors.errors import PipelineError

# What redaction puts in, with the label it wrote (the rule's label: PHONE, SSN, ORDER_ID).
REPLACEMENT = re.compile(
    r"\[REDACTED (?P<masked>[A-Z0-9_]+)\]|<(?P<token>[A-Z][A-Z0-9_]*)_\d+>"
    r"|\[(?P<hashed>[A-Z0-9_]+) [0-9a-f]{12}\]"
)


@dataclass
class Preview:
    mapped: dict = field(default_factory=dict)
    redacted: dict = field(default_factory=dict)
    rules: list[dict] = field(default_factory=list)  # label, action, hits
    # Per field, what was found: {"start", "end", "type", "action"} (see manage.py redact).
    spans: dict = field(default_factory=dict)
    prompt_spans: list = field(default_factory=list)
    prompt: str = ""
    error: str = ""
    answer: str = ""
    output: Any = None
    result: Any = None
    restored: Any = None
    tokens_in: int = 0
    tokens_out: int = 0
    tokens: dict = field(default_factory=dict, repr=False)  # the sample's own values, in memory
    review: str = ""  # whether the connector's review policy would hold this record
    is_held: bool = False


def preview(connector, record: Any) -> Preview:
    plan = pipeline.load_intake_plan(connector)
    shown = Preview()
    try:
        shown.mapped = mapping.map_fields(record, plan.input_fields)
        redacted = pipeline.redact_and_render(plan, shown.mapped)
        shown.redacted = redacted.fields
        shown.rules = [
            {"label": rule.label, "action": rule.action, "hits": redacted.hits.get(rule.label, 0)}
            for rule in plan.rules
        ]
        shown.spans = redacted.spans
        shown.prompt = redacted.prompt
        shown.prompt_spans = redacted.prompt_spans
        shown.tokens = redacted.tokens
    except PipelineError as error:
        shown.error = f"{error.code}: {error.message}"
    return shown


def judge(connector, shown: Preview, answer: Any = None) -> Preview:
    """Say whether the review policy would hold this record, given the answer when there is
    one (Try it, or a sample answer); nothing is stored either way."""
    policy = review_policy.for_connector(connector)
    if policy.kind == review_policy.NEVER or shown.error:
        return shown
    if answer is None and policy.reads_the_answer:
        shown.review = (
            "Whether this record is held for review depends on the AI's answer: paste a sample "
            "answer, or use Try it."
        )
        return shown
    result = shown.result
    if result is None and isinstance(answer, dict):
        try:
            result = mapping.map_fields(answer, pipeline.field_specs(connector, "output"))
        except PipelineError:
            result = {}
    rule = policy.holds(answer if answer is not None else {}, shown.redacted, result)
    shown.is_held = bool(rule)
    shown.review = (
        f"This record would be held for review: {rule}"
        if rule
        else "This record would not be held for review: the condition is false."
    )
    return shown


def try_it(connector, record: Any) -> Preview:
    """Preview, then one real AI call; parsed, validated and mapped, nothing written back."""
    shown = preview(connector, record)
    if shown.error:
        return shown
    runtime = None
    try:
        runtime = pipeline.build_runtime(connector)
        answer = pipeline.ask(runtime, shown.prompt)
        shown.answer = answer.text
        shown.tokens_in, shown.tokens_out = answer.tokens_in, answer.tokens_out
        if answer.error is not None:
            raise answer.error
        shown.output = answer.output
        shown.result = mapping.map_fields(shown.output, runtime.output_fields)
        shown.restored, _ = redaction.restore(shown.result, shown.tokens)
        judge(connector, shown, shown.output)
    except PipelineError as error:
        shown.error = f"{error.code}: {error.message}"
        shown.answer = shown.answer or ""
    finally:
        if runtime is not None:
            runtime.close()
    return shown


def highlight_spans(text: str) -> list[tuple[str, str]]:
    """Split redacted text into (piece, type) so a template can mark what redaction put in and
    say what it was: type is "" for text left as it was, else the replacement's type in lower
    case ("phone", "ssn", a regex rule's name)."""
    pieces, position = [], 0
    for match in REPLACEMENT.finditer(text):
        if match.start() > position:
            pieces.append((text[position : match.start()], ""))
        label = match.group("masked") or match.group("token") or match.group("hashed")
        pieces.append((match.group(0), label.lower()))
        position = match.end()
    if position < len(text):
        pieces.append((text[position:], ""))
    return pieces
