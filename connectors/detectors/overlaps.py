"""Resolve the candidates of every detector once: validated beats unvalidated, longer beats
shorter, then the type priority. What wins does not depend on which detector ran first."""

import bisect
from typing import NamedTuple

from connectors.detectors.base import Span

# Most specific first. A custom regex rule is the operator's own word: it comes before all.
PRIORITY = (
    "ssn",
    "national_id",
    "credit_card",
    "iban",
    "email",
    "ipv6",
    "ipv4",
    "phone",
    "date_of_birth",
    "address",
    "person",
)
_RANK = {kind: rank for rank, kind in enumerate(PRIORITY)}
# Unvalidated spans of these types that overlap are one value seen twice (the recognizer took
# "Hans Müller", a cue took "Müller-Lüdenscheidt"): their union is redacted.
MERGED_TYPES = frozenset({"person", "address"})


# Tuples: a pass makes one of each per candidate and per span found, and a frozen
# dataclass's __init__ costs three times a tuple's.
class Candidate(NamedTuple):
    span: Span
    detector: str  # which detector proposed it: a detector name, or "regex:<n>"


class Found(NamedTuple):
    span: Span
    detectors: frozenset[str]  # every detector that proposed exactly this span


def rank(candidate: Candidate) -> tuple:
    span = candidate.span
    priority = _RANK.get(span.type, -1)  # not a built-in type: a regex rule's
    return (not span.validated, span.start - span.end, priority, span.start, span.type)


def merge_same_type(candidates: list[Candidate]) -> list[Candidate]:
    merged: list[Candidate] = []
    others: list[Candidate] = []
    for candidate in candidates:
        (merged if candidate.span.type in MERGED_TYPES else others).append(candidate)
    if not merged:
        return candidates
    merged.sort(key=lambda candidate: (candidate.span.type, candidate.span.start))
    result: list[Candidate] = []
    for candidate in merged:
        if result:
            last = result[-1]
            if last.span.type == candidate.span.type and candidate.span.start < last.span.end:
                span = Span(
                    last.span.start,
                    max(last.span.end, candidate.span.end),
                    last.span.type,
                    max(last.span.confidence, candidate.span.confidence),
                )
                detectors = "+".join(sorted({*last.detector.split("+"), candidate.detector}))
                result[-1] = Candidate(span, detectors)
                continue
        result.append(candidate)
    return others + result


def resolve(candidates: list[Candidate]) -> list[Found]:
    """The winning spans, in text order, none overlapping another."""
    if len(candidates) <= 1:
        return [Found(candidate.span, frozenset({candidate.detector})) for candidate in candidates]
    candidates = merge_same_type(candidates)
    proposed_by: dict[tuple[int, int], set[str]] = {}
    for candidate in candidates:
        key = (candidate.span.start, candidate.span.end)
        proposed_by.setdefault(key, set()).update(candidate.detector.split("+"))
    starts: list[int] = []
    taken: list[Span] = []
    for candidate in sorted(candidates, key=rank):
        span = candidate.span
        index = bisect.bisect_left(starts, span.end)
        if index and taken[index - 1].end > span.start:
            if span.type not in MERGED_TYPES:
                continue
            # A name or an address that lost part of itself to a validated value (an ID inside
            # the line) keeps the rest.
            span = _remainder(span, taken)
            if span is None:
                continue
            index = bisect.bisect_left(starts, span.end)
        starts.insert(index, span.start)
        taken.insert(index, span)
        proposed_by.setdefault((span.start, span.end), set()).update(candidate.detector.split("+"))
    return [Found(span, frozenset(proposed_by[span.start, span.end])) for span in taken]


def _remainder(span: Span, taken: list[Span]) -> Span | None:
    """The longest part of `span` that no taken span overlaps, if it holds a word."""
    free = [(span.start, span.end)]
    for other in taken:
        if other.end <= span.start or other.start >= span.end:
            continue
        free = [
            piece
            for start, end in free
            for piece in ((start, min(end, other.start)), (max(start, other.end), end))
            if piece[1] - piece[0] > 0
        ]
    if not free:
        return None
    start, end = max(free, key=lambda piece: piece[1] - piece[0])
    if end - start < 3:
        return None
    return Span(start, end, span.type, span.confidence, span.validated)
