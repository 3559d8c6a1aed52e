"""Pure functions: find PII in mapped fields and mask, hash, drop or tokenize it.

One detection pass: every detector the rules name proposes candidate spans over each text, the
overlaps are resolved once (connectors.detectors), and only then are the rules' actions applied.
The order of the rules decides what is done with a span (when two rules' detectors find the
same span, the first rule's action), never what is found.

Fails closed: if any detector cannot run, redact() raises RedactionError and returns nothing, so
an unredacted record is never stored or sent. Error messages, spans and hit counts name types
and counts, never the data they looked at.
"""

import copy
import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.detectors import (
    DETECTORS,
    CustomPattern,
    Detector,
    DetectorUnavailable,
    Found,
    Span,
    detect,
    find_spans,
    options,
)
from connectors.detectors import DetectorFailed as _DetectorFailed
from connectors.errors import PipelineError, RedactionError

__all__ = [
    "ACTIONS",
    "DETECTORS",
    "Detector",
    "RedactionResult",
    "Rule",
    "Span",
    "TokenReport",
    "detector_choices",
    "find_spans",
    "redact",
    "redact_many",
    "restore",
    "validate_rule",
]

ACTIONS = ("mask", "hash", "drop", "tokenize")
# The rules that bring their own detector: what each finds, and an example of what it takes.
SPECIAL_DETECTORS = {
    "regex": ("your regular expression, in pattern", r"e.g. pattern PO-\d{6}"),
    "field": ("a whole field of the record, by its path, in field name", "e.g. customer.notes"),
}
PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*_\d+>")
# What redaction itself writes: the prompt scan leaves it alone.
REPLACEMENT = re.compile(
    r"\[REDACTED [A-Z0-9_]+\]|<[A-Z][A-Z0-9_]*_\d+>|\[[A-Z0-9_]+ [0-9a-f]{12}\]"
)
# Invisible characters split a value so that no detector sees it (219<ZWSP>-09-9999).
INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


def detector_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    """The detectors as grouped choices, each labelled with what it finds and an example."""
    built_in = [
        (key, f"{key}: {detector.description} (e.g. {detector.example})")
        for key, detector in DETECTORS.items()
    ]
    own = [(key, f"{key}: {what} ({hint})") for key, (what, hint) in SPECIAL_DETECTORS.items()]
    return [("Built-in detectors", built_in), ("Your own", own)]


@dataclass(frozen=True)
class Rule:
    detector: str
    action: str
    name: str = ""
    pattern: str = ""
    field: str = ""

    @property
    def label(self) -> str:
        if self.detector == "regex":
            source = self.name or "custom"
        elif self.detector == "field":
            source = self.field
        else:
            source = self.detector
        return re.sub(r"[^A-Z0-9_]+", "_", source.upper()).strip("_") or "CUSTOM"


@dataclass
class RedactionResult:
    fields: dict[str, Any]
    tokens: dict[str, str] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    prompt: str = ""
    # Per field: {"start", "end", "type", "action"}, offsets into the field's input text; a
    # span in a nested value also has "path" (redacted keys and list indexes below the field),
    # one in a dict key has "key": true.
    spans: dict[str, list[dict]] = field(default_factory=dict)
    prompt_spans: list[dict] = field(default_factory=list)  # offsets into the rendered prompt


@dataclass
class TokenReport:
    restored: list[str]
    dropped: list[str]
    invented: list[str]

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "restored": sorted(self.restored),
            "dropped": sorted(self.dropped),
            "invented": sorted(self.invented),
        }


def validate_rule(rule: Rule) -> None:
    if rule.detector not in DETECTORS and rule.detector not in SPECIAL_DETECTORS:
        known = ", ".join([*DETECTORS, *SPECIAL_DETECTORS])
        raise ValueError(f"unknown detector {rule.detector!r}; known: {known}")
    if rule.action not in ACTIONS:
        raise ValueError(f"unknown action {rule.action!r}; known: {', '.join(ACTIONS)}")
    if rule.detector == "regex":
        if not rule.pattern:
            raise ValueError("a regex rule needs a pattern")
        try:
            compiled = re.compile(rule.pattern)
        except re.error as error:
            raise ValueError(f"the pattern is not a valid regular expression: {error}") from None
        if compiled.fullmatch(""):
            raise ValueError("the pattern matches an empty string; it would redact nothing useful")
    if rule.detector == "field" and not rule.field:
        raise ValueError("a field rule needs the name of the mapped field to redact")


def prepare_text(text: str) -> str:
    """Remove invisible characters; defuse placeholders the input itself contains (a record
    holding a literal "<SSN_1>" could otherwise choose where a real value is restored)."""
    return _prepare(text)[0]


def _prepare(text: str) -> tuple[str, list[int] | None]:
    """The prepared text, and where each of its characters was in `text` (None: unchanged
    offsets). Defusing keeps the length; only removing invisible characters moves offsets."""
    offsets = None
    if INVISIBLE.search(text):
        kept = [index for index, char in enumerate(text) if not INVISIBLE.match(char)]
        offsets = [*kept, len(text)]
        text = "".join(text[index] for index in kept)
    text = PLACEHOLDER.sub(lambda match: f"\u2039{match.group(0)[1:-1]}\u203a", text)
    return text, offsets


class _Redactor:
    """Applies rules to one record; keeps its placeholder numbering and hit counts."""

    def __init__(self, hash_key: bytes, rules: Sequence[Rule], settings) -> None:
        self.hash_key = hash_key
        self.settings = settings
        # What the detectors found in each text so far (shared by the records of one batch).
        self.known: dict[str, list[Found]] = {}
        self.tokens: dict[str, str] = {}
        self.placeholders: dict[tuple[str, str], str] = {}
        self.counters: dict[str, int] = {}
        self.hits: dict[str, int] = {}
        self.field_rules = [rule for rule in rules if rule.detector == "field"]
        self.names: list[str] = []
        self.patterns: list[CustomPattern] = []
        self.first_rule: dict[str, tuple[int, Rule]] = {}  # detector key -> its first rule
        for position, rule in enumerate(rules):
            if rule.detector == "field":
                continue
            if rule.detector == "regex":
                key = f"regex:{position}"
                self.patterns.append(
                    CustomPattern(key, rule.label.lower(), re.compile(rule.pattern))
                )
            else:
                key = rule.detector
                if key not in self.first_rule:
                    self.names.append(key)
            self.first_rule.setdefault(key, (position, rule))

    def fresh(self) -> "_Redactor":
        """Another record's redactor: the same rules and detections, its own placeholder
        numbering, tokens and counts."""
        other = copy.copy(self)
        other.tokens, other.placeholders, other.counters, other.hits = {}, {}, {}, {}
        return other

    @property
    def has_detectors(self) -> bool:
        return bool(self.names or self.patterns)

    def detect(self, texts: Sequence[str]) -> dict[str, list[Found]]:
        """What was found in each text (and in others detected before), each text once."""
        missing = [text for text in dict.fromkeys(texts) if text not in self.known]
        if missing:
            found = detect(missing, self.names, patterns=self.patterns, settings=self.settings)
            self.known.update(zip(missing, found, strict=True))
        return self.known

    def detect_ahead(self, texts: Sequence[str]) -> None:
        """Detect many texts in one call for the records that will ask for them. If that
        fails, nothing is kept: each record detects its own texts again and fails alone."""
        if not self.has_detectors:
            return
        try:
            self.detect(texts)
        except Exception:  # found again, per record, where it fails closed
            return

    def rule_for(self, found: Found) -> Rule:
        """The first rule, in rule order, whose detector proposed this span."""
        return min((self.first_rule[key] for key in found.detectors), key=lambda ranked: ranked[0])[
            1
        ]

    def replacement(self, rule: Rule, value: str) -> str:
        label = rule.label
        self.hits[label] = self.hits.get(label, 0) + 1
        if rule.action == "mask":
            return f"[REDACTED {label}]"
        if rule.action == "hash":
            digest = hmac.new(self.hash_key, value.encode(), hashlib.sha256).hexdigest()
            return f"[{label} {digest[:12]}]"
        if rule.action == "drop":
            return ""
        if (label, value) not in self.placeholders:
            self.counters[label] = self.counters.get(label, 0) + 1
            placeholder = f"<{label}_{self.counters[label]}>"
            self.placeholders[label, value] = placeholder
            self.tokens[placeholder] = value
        return self.placeholders[label, value]

    def apply(
        self, text: str, found: list[Found], offsets: list[int] | None = None
    ) -> tuple[str, list[dict]]:
        """The text with each span replaced by its rule's action; the spans as reported."""
        pieces, reports, position = [], [], 0
        for each in found:
            span, rule = each.span, self.rule_for(each)
            pieces.append(text[position : span.start])
            pieces.append(self.replacement(rule, text[span.start : span.end]))
            position = span.end
            start, end = (
                (span.start, span.end)
                if offsets is None
                else (
                    offsets[span.start],
                    offsets[span.end - 1] + 1,
                )
            )
            reports.append({"start": start, "end": end, "type": span.type, "action": rule.action})
        pieces.append(text[position:])
        return "".join(pieces), reports

    def redact_fields(self, fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list]]:
        whole = self.whole_fields(fields)
        rest = {key: value for key, value in fields.items() if key not in whole}
        found = self.detect(list(_strings(rest))) if self.has_detectors else {}
        spans: dict[str, list[dict]] = {}

        def change(text: str, path: tuple, is_key: bool) -> str:
            prepared, offsets = _prepare(text)
            changed, reports = self.apply(prepared, found.get(prepared, []), offsets)
            if reports:
                location = path if not is_key else (*path, changed)
                where = spans.setdefault(str(location[0]), [])
                for report in reports:
                    if len(location) > 1:
                        report["path"] = list(location[1:])
                    if is_key:
                        report["key"] = True
                    where.append(report)
            return changed

        redacted = _rebuild(rest, change, ())
        for name, (value, report) in whole.items():
            spans.setdefault(name, []).append(report)
            if value is not _DROPPED:
                redacted[name] = value
        # Keep the mapped fields' order.
        ordered = {name: redacted[name] for name in _order(fields, redacted)}
        return ordered, spans

    def whole_fields(self, fields: dict[str, Any]) -> dict[str, tuple[Any, dict]]:
        """The fields a `field` rule replaces whole (the first such rule for a field wins)."""
        whole: dict[str, tuple[Any, dict]] = {}
        for rule in self.field_rules:
            if rule.field in whole or fields.get(rule.field) is None:
                continue
            text = str(_rebuild(fields[rule.field], lambda text, *_: _prepare(text)[0], ()))
            report = {"start": 0, "end": len(text), "type": "field", "action": rule.action}
            if rule.action == "drop":
                self.hits[rule.label] = self.hits.get(rule.label, 0) + 1
                whole[rule.field] = (_DROPPED, report)
            else:
                whole[rule.field] = (self.replacement(rule, text), report)
        return whole

    def scan(self, text: str) -> tuple[str, list[dict]]:
        """The detectors once more over a whole text (the rendered prompt): PII the fields held
        only in pieces ("({{ area }}) {{ number }}") is whole there."""
        if not self.has_detectors:
            return text, []
        ours = [match.span() for match in REPLACEMENT.finditer(text)]
        found = [
            each
            for each in self.detect([text])[text]
            if not any(start < each.span.end and each.span.start < end for start, end in ours)
        ]
        return self.apply(text, found)


_DROPPED = object()


def _order(original: dict, redacted: dict) -> list:
    names = [name for name in redacted if name not in original]
    return [*[name for name in original if name in redacted], *names]


def _strings(value: Any):
    """Every string the value holds, in the order _rebuild visits them."""
    if isinstance(value, str):
        yield _prepare(value)[0]
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                yield _prepare(key)[0]
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield str(value)


def _rebuild(value: Any, change: Callable[[str, tuple, bool], str], path: tuple) -> Any:
    """Strings anywhere: values, dict keys, and numbers (an SSN or card stored as a number
    comes back as the redacted text)."""
    if isinstance(value, str):
        return change(value, path, False)
    if isinstance(value, dict):
        walked: dict = {}
        for key, item in value.items():
            new_key = change(key, path, True) if isinstance(key, str) else key
            while new_key in walked:  # two keys redacted alike: keep both values
                new_key = f"{new_key} "
            walked[new_key] = _rebuild(item, change, (*path, new_key))
        return walked
    if isinstance(value, list):
        return [_rebuild(item, change, (*path, index)) for index, item in enumerate(value)]
    if isinstance(value, int | float) and not isinstance(value, bool):
        text = str(value)
        changed = change(text, path, False)
        return value if changed == text else changed
    return value


def redact(
    fields: dict[str, Any],
    rules: list[Rule],
    *,
    hash_key: bytes,
    prompt: Callable[[dict[str, Any]], str] | None = None,
    phone_regions: Sequence[str] | None = None,
    id_countries: Sequence[str] | None = None,
) -> RedactionResult:
    """Redact the mapped fields; with `prompt` (fields -> text), also render the prompt from
    the redacted fields and scan it once more, into `result.prompt`. Regions and countries
    default to REDACTION_PHONE_REGIONS and REDACTION_ID_COUNTRIES."""
    [result] = redact_many(
        [fields],
        rules,
        hash_key=hash_key,
        prompt=prompt,
        phone_regions=phone_regions,
        id_countries=id_countries,
    )
    if isinstance(result, PipelineError):
        raise result
    return result


def redact_many(
    records: Sequence[dict[str, Any]],
    rules: list[Rule],
    *,
    hash_key: bytes,
    prompt: Callable[[dict[str, Any]], str] | None = None,
    phone_regions: Sequence[str] | None = None,
    id_countries: Sequence[str] | None = None,
) -> list[RedactionResult | PipelineError]:
    """`redact` for many records, with the detectors run over all the records' texts in one
    call, then over all the rendered prompts in one call (the recognizer's cost is mostly per
    call). Each record gets what `redact` would give it alone, or its own error: a detector
    that fails on one record's text fails that record, closed (RedactionError), not the
    others; so does the prompt's own error. An invalid rule raises RedactionError for all."""
    with _failing_closed("redaction"):
        for rule in rules:
            validate_rule(rule)
        first = _Redactor(hash_key, rules, options(phone_regions, id_countries))
    redactors = [first.fresh() for _ in records]  # sharing what the detectors found
    first.detect_ahead([text for fields in records for text in _strings(fields)])
    results: list[RedactionResult | PipelineError] = []
    for redactor, fields in zip(redactors, records, strict=True):
        try:
            with _failing_closed("redaction"):
                redacted, spans = redactor.redact_fields(fields)
        except RedactionError as error:
            results.append(error)
            continue
        results.append(
            RedactionResult(
                fields=redacted, tokens=redactor.tokens, hits=redactor.hits, spans=spans
            )
        )
    if prompt is None:
        return results
    rendered: dict[int, str] = {}
    for index, result in enumerate(results):
        if isinstance(result, RedactionResult):
            try:
                rendered[index] = prompt(result.fields)
            except PipelineError as error:  # the template's error, as `redact` raises it
                results[index] = error
    first.detect_ahead(list(rendered.values()))
    for index, text in rendered.items():
        try:
            with _failing_closed("the prompt's redaction scan"):
                results[index].prompt, results[index].prompt_spans = redactors[index].scan(text)
        except RedactionError as error:
            results[index] = error
    return results


class _failing_closed:
    """Turns any failure into a RedactionError that never quotes the data being scanned."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if error is None or isinstance(error, RedactionError):
            return False
        if isinstance(error, DetectorUnavailable | _DetectorFailed):
            reason = str(error)  # names the detector or what to install, never the data
        elif isinstance(error, ValueError) and self.what == "redaction":
            reason = f"a rule is invalid: {error}"
        else:
            reason = f"{self.what} failed ({type(error).__name__})"
        raise RedactionError(f"{reason}; the record was not stored or sent") from None


def restore(value: Any, tokens: dict[str, str]) -> tuple[Any, TokenReport]:
    """Put the original values back where the AI kept our placeholders; report the rest."""
    seen: set[str] = set()
    invented: set[str] = set()

    def replace(match: re.Match) -> str:
        placeholder = match.group(0)
        if placeholder in tokens:
            seen.add(placeholder)
            return tokens[placeholder]
        invented.add(placeholder)
        return placeholder

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return PLACEHOLDER.sub(replace, item)
        if isinstance(item, dict):
            return {key: walk(inner) for key, inner in item.items()}
        if isinstance(item, list):
            return [walk(inner) for inner in item]
        return item

    restored = walk(value)
    report = TokenReport(
        restored=sorted(seen), dropped=sorted(set(tokens) - seen), invented=sorted(invented)
    )
    return restored, report
