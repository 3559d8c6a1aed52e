"""The detectors and the one detection pass.

Every detector proposes candidate spans (type, start, end, confidence, validated by a
checksum) over the whole text; context words have already moved their confidence; candidates
below MIN_CONFIDENCE are dropped and the overlaps between the rest are resolved once
(overlaps.resolve). Only then does redaction apply actions, so the order of the rules decides
what is done with a span, never what is found.

    find_spans(text, ["phone", "iban"], phone_regions=["DE", "FR"]) -> [Span(...), ...]

A detector is a function Scan -> Iterable[Span], named here by its dotted path and imported on
first use, so that a connector that does not use the person or address detectors never imports
spaCy.
"""

import importlib
import operator
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cache

from django.core.signals import setting_changed
from django.dispatch import receiver

from connectors.detectors.base import (
    DEFAULT_ID_COUNTRIES,
    DEFAULT_PHONE_REGIONS,
    MIN_CONFIDENCE,
    DetectorUnavailable,
    Options,
    Scan,
    Span,
    setting,
)
from connectors.detectors.overlaps import Candidate, Found, resolve

__all__ = [
    "DETECTORS",
    "MIN_CONFIDENCE",
    "CustomPattern",
    "Detector",
    "DetectorUnavailable",
    "Found",
    "Span",
    "detect",
    "find_spans",
    "options",
]


@dataclass(frozen=True)
class Detector:
    finder: str | Callable[[Scan], Iterable[Span]]  # "module:function", or the function
    description: str = ""
    uses_ner: bool = False
    example: str = ""  # a text the detector finds something in, shown in the admin's choice list

    @property
    def find(self) -> Callable[[Scan], Iterable[Span]]:
        return _import(self.finder) if isinstance(self.finder, str) else self.finder


DETECTORS: dict[str, Detector] = {
    "ssn": Detector(
        "connectors.detectors.national_ids:find_ssns",
        "US Social Security numbers (AAA-GG-SSSS; a bare 9-digit number only after its label)",
        example="SSN 401-68-7488",
    ),
    "national_id": Detector(
        "connectors.detectors.national_ids:find_national_ids",
        "national IDs with check digits: US SSN/ITIN, GB NINO, DE IdNr, FR NIR, ES DNI/NIE, "
        "IT codice fiscale, NL BSN (REDACTION_ID_COUNTRIES)",
        example="NINO AB123456C",
    ),
    "credit_card": Detector(
        "connectors.detectors.patterns:find_cards",
        "payment card numbers (Luhn)",
        example="4111 1111 1111 1111",
    ),
    "email": Detector(
        "connectors.detectors.patterns:find_emails",
        "e-mail addresses",
        example="ana.lopez@example.com",
    ),
    "phone": Detector(
        "connectors.detectors.phones:find_phones",
        "phone numbers, validated by libphonenumber (REDACTION_PHONE_REGIONS)",
        example="+44 20 7946 0958",
    ),
    "iban": Detector(
        "connectors.detectors.patterns:find_ibans",
        "IBANs (country format, mod 97)",
        example="DE89 3704 0044 0532 0130 00",
    ),
    "ipv4": Detector(
        "connectors.detectors.network:find_ipv4", "IPv4 addresses", example="192.168.10.24"
    ),
    "ipv6": Detector(
        "connectors.detectors.network:find_ipv6",
        "IPv6 addresses",
        example="2001:db8::8a2e:370:7334",
    ),
    "date_of_birth": Detector(
        "connectors.detectors.dates:find_dates_of_birth",
        "dates right after a birth cue (DOB, born, geb., né le, nato il, geboren)",
        example="DOB: 12/03/1984",
    ),
    "person": Detector(
        "connectors.detectors.people:find_people",
        "person names (spaCy NER, salutations, honorifics, labels)",
        example="Dear Mr. John Smith,",
        uses_ner=True,
    ),
    "address": Detector(
        "connectors.detectors.addresses:find_addresses",
        "postal addresses (streets with house numbers, postcodes with towns, spaCy NER)",
        example="221B Baker Street, London NW1 6XE",
        uses_ner=True,
    ),
}


@dataclass(frozen=True)
class CustomPattern:
    """An operator's regular expression (a `regex` rule): a detector of its own."""

    key: str
    type: str
    pattern: re.Pattern

    def find(self, scan: Scan) -> Iterable[Span]:
        for match in self.pattern.finditer(scan.text):
            if match.end() > match.start():
                yield Span(match.start(), match.end(), self.type, 1.0)


@cache
def _import(path: str):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def options(
    phone_regions: Sequence[str] | None = None, id_countries: Sequence[str] | None = None
) -> Options:
    """The detectors' options: what is given, else REDACTION_PHONE_REGIONS and
    REDACTION_ID_COUNTRIES, else the built-in lists."""
    if not phone_regions or not id_countries:
        defaults = _default_options()
        phone_regions = phone_regions or defaults.phone_regions
        id_countries = id_countries or defaults.id_countries
    return _options(tuple(phone_regions), tuple(id_countries))


@cache
def _default_options() -> Options:
    return _options(
        tuple(setting("REDACTION_PHONE_REGIONS", DEFAULT_PHONE_REGIONS)),
        tuple(setting("REDACTION_ID_COUNTRIES", DEFAULT_ID_COUNTRIES)),
    )


@receiver(setting_changed)
def _forget_default_options(*, setting: str, **kwargs) -> None:
    if setting.startswith("REDACTION_"):
        _default_options.cache_clear()


@cache
def _options(phone_regions: tuple[str, ...], id_countries: tuple[str, ...]) -> Options:
    return Options(
        phone_regions=tuple(region.upper() for region in phone_regions),
        id_countries=tuple(country.upper() for country in id_countries),
    )


class DetectorFailed(Exception):
    """A detector raised; names the detector, never the text."""

    def __init__(self, detector: str, error: BaseException) -> None:
        self.detector = detector
        self.error = error
        super().__init__(f"the {detector} detector failed ({type(error).__name__})")


def detect(
    texts: Sequence[str],
    detectors: Sequence[str],
    *,
    patterns: Sequence[CustomPattern] = (),
    settings: Options | None = None,
) -> list[list[Found]]:
    """One detection pass over each text: the resolved spans, each with the detectors that
    proposed it. The recognizer, when a detector needs it, reads all the texts in one batch."""
    finders, uses_ner = _finders(tuple(detectors))
    settings = settings or options()
    entities = _batch_entities(texts) if uses_ner else None
    results = []
    for index, text in enumerate(texts):
        scan = Scan(text, settings)
        if entities is not None:
            scan.entities = _entities_of(entities, index)
        candidates: list[Candidate] = []
        for name, find in finders:
            candidates.extend(_run(name, find, scan))
        for pattern in patterns:
            candidates.extend(_run(pattern.key, pattern.find, scan))
        results.append(resolve(candidates))
    return results


def _finders(detectors: tuple[str, ...]) -> tuple[tuple[tuple[str, Callable], ...], bool]:
    """Each named detector once, with its function; whether one needs the recognizer. Looked
    up once per list of names (and again if DETECTORS changed since)."""
    known = _FINDERS.get(detectors)
    if known is not None and all(map(operator.is_, known[0], map(DETECTORS.get, detectors))):
        return known[1], known[2]
    unknown = [name for name in detectors if name not in DETECTORS]
    if unknown:
        raise ValueError(f"unknown detector {unknown[0]!r}; known: {', '.join(DETECTORS)}")
    names = tuple(dict.fromkeys(detectors))
    finders = tuple((name, DETECTORS[name].find) for name in names)
    uses_ner = any(DETECTORS[name].uses_ner for name in names)
    if len(_FINDERS) < 256:
        _FINDERS[detectors] = (tuple(map(DETECTORS.get, detectors)), finders, uses_ner)
    return finders, uses_ner


_FINDERS: dict[tuple[str, ...], tuple] = {}


def _run(key: str, find: Callable[[Scan], Iterable[Span]], scan: Scan) -> list[Candidate]:
    try:
        return [
            Candidate(span if span.confidence <= 1 else replace(span, confidence=1.0), key)
            for span in find(scan)
            if span.confidence >= MIN_CONFIDENCE and span.end > span.start
        ]
    except DetectorUnavailable:
        raise
    except Exception as error:
        raise DetectorFailed(key if not key.startswith("regex:") else "regex", error) from None


def _batch_entities(texts: Sequence[str]) -> Callable[[], list]:
    computed: list = []

    def entities() -> list:
        if not computed:
            from connectors.detectors import ner

            computed.append(ner.entities(texts))
        return computed[0]

    return entities


def _entities_of(batch: Callable[[], list], index: int) -> Callable[[], list]:
    return lambda: batch()[index]


def find_spans(
    text: str,
    detectors: Sequence[str],
    *,
    phone_regions: Sequence[str] | None = None,
    id_countries: Sequence[str] | None = None,
) -> list[Span]:
    """What the named detectors find in `text`, overlaps resolved, in text order."""
    settings = options(phone_regions, id_countries)
    return [found.span for found in detect([text], detectors, settings=settings)[0]]


def clear_caches() -> None:
    """Forget the values detectors remembered (benchmarks time cold lookups with it)."""
    from connectors.detectors import context, phones

    phones.valid_numbers.cache_clear()
    phones.is_possible.cache_clear()
    context.table.cache_clear()
