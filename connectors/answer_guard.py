"""The output guard: PII the AI wrote that was not in the prompt it was sent.

Redaction keeps PII from leaving; this keeps the AI from putting PII into the legacy system that
nobody gave it (an invented SSN, a card number, someone's e-mail address). The answer is scanned
with the always-on structured detectors and the connector's own before it is mapped and written
back. A value the prompt held (a placeholder the AI kept, a value the connector chose not to
redact) is the input's, not the AI's, and is left alone. What was found is reported by type
and count, never by value.
"""

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from connectors import redaction
from connectors.errors import PipelineError

ALNUM = re.compile(r"[^0-9a-z]+")
SPECIAL_DETECTORS = ("field", "regex")  # they name no kind of PII to look for in an answer
# Looked for in every answer, whatever the connector redacts: values with a checksum or a shape
# that leaves no doubt. Phones, addresses and names only where the connector's rules ask.
ALWAYS = ("ssn", "national_id", "credit_card", "iban", "email")


@dataclass(frozen=True)
class Guard:
    detectors: tuple[str, ...]
    action: str  # Connector.AnswerPII: "redact" or "fail"
    phone_regions: tuple[str, ...] | None = None
    id_countries: tuple[str, ...] | None = None

    @classmethod
    def for_rules(cls, rules, action: str, *, phone_regions=None, id_countries=None) -> "Guard":
        named = [r.detector for r in rules if r.detector not in SPECIAL_DETECTORS]
        return cls(
            tuple(dict.fromkeys([*ALWAYS, *named])),
            action,
            tuple(phone_regions) if phone_regions else None,
            tuple(id_countries) if id_countries else None,
        )


def check(guard: Guard, output: Any, prompt: str) -> tuple[Any, dict[str, int]]:
    """The output with the PII the prompt did not hold masked, and what was found by type."""
    if not guard.detectors:
        return output, {}
    sent = _letters_and_digits(prompt)
    found: Counter = Counter()

    def mask(text: str) -> str:
        spans = redaction.find_spans(
            text,
            guard.detectors,
            phone_regions=guard.phone_regions,
            id_countries=guard.id_countries,
        )
        invented = [s for s in spans if _letters_and_digits(text[s.start : s.end]) not in sent]
        for span in reversed(invented):
            found[span.type] += 1
            text = f"{text[: span.start]}[REDACTED {span.type.upper()}]{text[span.end :]}"
        return text

    guarded = _walk(output, mask)
    return guarded, dict(sorted(found.items()))


def refusal(found: dict[str, int]) -> PipelineError:
    """The "fail" action: a person looks at the job; the message names types, never values."""
    summary = ", ".join(f"{kind}: {count}" for kind, count in found.items())
    return PipelineError(
        f"the AI's answer holds PII its prompt did not: {summary}",
        code="pii_in_answer",
        permanent=True,
    )


def _letters_and_digits(text: str) -> str:
    return ALNUM.sub("", text.lower())


def _walk(value: Any, change) -> Any:
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {key: _walk(item, change) for key, item in value.items()}
    if isinstance(value, list):
        return [_walk(item, change) for item in value]
    return value
