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
# Invisible characters split a value so that no detector sees it (219<ZWSP>-09-9999).
INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


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
    compact = re.sub(r"\s", "", text).upper()
    if not 15 <= len(compact) <= 34 or not compact.isascii() or not compact.isalnum():
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
    # A match that fails is_match may hold a valid value plus its neighbours (a card and its
    # CVV, an IBAN and the word after it): look for the valid part.
    may_shrink: bool = False


OCTET = r"(?:0{0,2}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d))"
DASH = "\u2010-\u2015"  # hyphens and dashes word processors put in place of "-"
DETECTORS: dict[str, Detector] = {
    # 219-09-9999, 219 09 9999, 219.09.9999; also glued to a word (SSN219-09-9999).
    "ssn": Detector(
        re.compile(
            rf"(?<!\d)(?!000|666|9\d\d)\d{{3}}([-. {DASH}])(?!00)\d{{2}}\1(?!0000)\d{{4}}(?!\d)"
        )
    ),
    "credit_card": Detector(
        re.compile(rf"(?<!\d)\d(?:[\s.\-{DASH}]{{0,2}}\d){{12,18}}(?!\d)"),
        is_card_number,
        may_shrink=True,
    ),
    "email": Detector(re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}")),
    "phone": Detector(
        re.compile(
            r"(?<![\w+.-])\+\d{8,15}(?!\d)"  # E.164: +14155552671
            r"|(?<![\w+.-])1?[2-9]\d{2}[2-9]\d{6}(?!\d)"  # North American, no separators
            r"|(?<![\w+.-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?"
            r"\d{1,4}(?:[ ./-]\d{2,8}){1,4}(?![\w-]|\.\d)"
        ),
        is_phone_number,
    ),
    "iban": Detector(
        re.compile(r"\b[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]{4}){2,7}(?: ?[A-Za-z0-9]{1,3})?\b"),
        is_iban,
        may_shrink=True,
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
    prompt: str = ""


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
            if detector.is_match is None or detector.is_match(found):
                return self.replacement(rule, found)
            span = valid_part(found, detector.is_match) if detector.may_shrink else None
            if span is None:
                return found
            start, end = span
            return found[:start] + self.replacement(rule, found[start:end]) + found[end:]

        return detector.pattern.sub(replace, text)

    def walk(self, value: Any, change: Callable[[str], str]) -> Any:
        """Strings anywhere: values, dict keys, and numbers (an SSN or card stored as a number
        comes back as the redacted text)."""
        if isinstance(value, str):
            return change(value)
        if isinstance(value, dict):
            walked: dict = {}
            for key, item in value.items():
                new_key = change(key) if isinstance(key, str) else key
                while new_key in walked:  # two keys redacted alike: keep both values
                    new_key = f"{new_key} "
                walked[new_key] = self.walk(item, change)
            return walked
        if isinstance(value, list):
            return [self.walk(item, change) for item in value]
        if isinstance(value, int | float) and not isinstance(value, bool):
            text = str(value)
            changed = change(text)
            return value if changed == text else changed
        return value

    def scan(self, rules: list[Rule], text: str) -> str:
        """The detector rules once more over a whole text (the rendered prompt): PII the fields
        held only in pieces ("({{ area }}) {{ number }}") is whole there."""
        for rule in rules:
            if rule.detector != "field":
                text = self.apply(rule, {"text": text})["text"]
        return text


def valid_part(found: str, is_match: Callable[[str], bool]) -> tuple[int, int] | None:
    """The longest run of whole groups of `found` that validates: a card number that the
    pattern took together with its CVV or expiry ("4111 1111 1111 1111 123"), an IBAN with the
    word after it ("BE68 5390 0754 7034 BIC")."""
    groups = [match.span() for match in re.finditer(r"[0-9A-Za-z]+", found)]
    best = None
    for first in range(len(groups)):
        for last in range(len(groups) - 1, first - 1, -1):
            start, end = groups[first][0], groups[last][1]
            if best is not None and end - start <= best[1] - best[0]:
                break
            if is_match(found[start:end]):
                best = (start, end)
                break
    return best


def prepare_text(text: str) -> str:
    """Remove invisible characters; defuse placeholders the input itself contains (a record
    holding a literal "<SSN_1>" could otherwise choose where a real value is restored)."""
    text = INVISIBLE.sub("", text)
    return PLACEHOLDER.sub(lambda match: f"\u2039{match.group(0)[1:-1]}\u203a", text)


def redact(
    fields: dict[str, Any], rules: list[Rule], *, hash_key: bytes, prompt=None
) -> RedactionResult:
    """Redact the mapped fields; with `prompt` (fields -> text), also render the prompt from
    the redacted fields and scan it once more, into `result.prompt`."""
    redactor = _Redactor(hash_key)
    fields = redactor.walk(fields, prepare_text)
    for rule in rules:
        fields = _fail_closed(rule, redactor.apply, rule, fields)
    result = RedactionResult(fields=fields, tokens=redactor.tokens, hits=redactor.hits)
    if prompt is not None:
        rendered = prompt(fields)
        result.prompt = _fail_closed(None, redactor.scan, rules, rendered)
    return result


def _fail_closed(rule: Rule | None, step, *args):
    try:
        return step(*args)
    except Exception as error:
        # Fail closed, and never quote the data that was being scanned.
        which = f"redaction rule {rule.label}" if rule else "the prompt's redaction scan"
        raise RedactionError(
            f"{which} failed ({type(error).__name__}); the record was not stored or sent"
        ) from None


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
