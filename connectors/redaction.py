"""Pure functions: find PII in mapped fields and mask, hash, drop or tokenize it.

Fails closed: if any rule cannot run, redact() raises RedactionError and returns nothing, so an
unredacted record is never stored or sent. Error messages never quote the data they looked at.
"""

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from connectors.errors import RedactionError

ACTIONS = ("mask", "hash", "drop", "tokenize")
PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*_\d+>")


def luhn_is_valid(digits: str) -> bool:
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = int(digit) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def is_card_number(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    return 13 <= len(digits) <= 19 and luhn_is_valid(digits)


def is_iban(text: str) -> bool:
    compact = text.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def is_phone_number(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    looks_like_other = re.fullmatch(r"\d{3}-\d{2}-\d{4}|\d{1,3}(\.\d{1,3}){3}", text.strip())
    return 9 <= len(digits) <= 15 and not looks_like_other


@dataclass(frozen=True)
class Detector:
    pattern: re.Pattern
    is_match: Callable[[str], bool] | None = None


OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
DETECTORS: dict[str, Detector] = {
    "ssn": Detector(re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b")),
    "credit_card": Detector(re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), is_card_number),
    "email": Detector(
        re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
    ),
    "phone": Detector(
        re.compile(
            r"(?<![\w+.-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?"
            r"\d{2,4}(?:[ .-]\d{2,5}){1,4}(?![\w-]|\.\d)"
        ),
        is_phone_number,
    ),
    "iban": Detector(
        re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"), is_iban
    ),
    "ipv4": Detector(re.compile(rf"(?<![\d.]){OCTET}(?:\.{OCTET}){{3}}(?!\d|\.\d)")),
}
SPECIAL_DETECTORS = ("regex", "field")


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


class _Redactor:
    """Applies rules to one record; keeps its placeholder numbering and hit counts."""

    def __init__(self, hash_key: bytes) -> None:
        self.hash_key = hash_key
        self.tokens: dict[str, str] = {}
        self.placeholders: dict[tuple[str, str], str] = {}
        self.counters: dict[str, int] = {}
        self.hits: dict[str, int] = {}

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

    def apply(self, rule: Rule, fields: dict[str, Any]) -> dict[str, Any]:
        if rule.detector == "field":
            if rule.field not in fields or fields[rule.field] is None:
                return fields
            fields = dict(fields)
            if rule.action == "drop":
                self.hits[rule.label] = self.hits.get(rule.label, 0) + 1
                del fields[rule.field]
            else:
                fields[rule.field] = self.replacement(rule, str(fields[rule.field]))
            return fields
        detector = (
            Detector(re.compile(rule.pattern))
            if rule.detector == "regex"
            else DETECTORS[rule.detector]
        )
        return self.walk(fields, lambda text: self.substitute(rule, detector, text))

    def substitute(self, rule: Rule, detector: Detector, text: str) -> str:
        def replace(match: re.Match) -> str:
            found = match.group(0)
            if detector.is_match is not None and not detector.is_match(found):
                return found
            return self.replacement(rule, found)

        return detector.pattern.sub(replace, text)

    def walk(self, value: Any, change: Callable[[str], str]) -> Any:
        if isinstance(value, str):
            return change(value)
        if isinstance(value, dict):
            return {key: self.walk(item, change) for key, item in value.items()}
        if isinstance(value, list):
            return [self.walk(item, change) for item in value]
        return value


def redact(fields: dict[str, Any], rules: list[Rule], *, hash_key: bytes) -> RedactionResult:
    redactor = _Redactor(hash_key)
    for rule in rules:
        try:
            fields = redactor.apply(rule, fields)
        except Exception as error:
            # Fail closed, and never quote the data that was being scanned.
            raise RedactionError(
                f"redaction rule {rule.label} failed ({type(error).__name__}); "
                "the record was not stored or sent"
            ) from None
    return RedactionResult(fields=fields, tokens=redactor.tokens, hits=redactor.hits)


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
