"""What every detector shares: the span it proposes, the options it reads, the text it scans."""

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from django.core.exceptions import ImproperlyConfigured

# A candidate below this confidence is not redacted (context words move a candidate across it).
MIN_CONFIDENCE = 0.5

DEFAULT_PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL")
DEFAULT_ID_COUNTRIES = ("US", "GB", "DE", "FR", "ES", "IT", "NL")


# Digits and what separates their groups in legacy exports: spaces, tabs, dots, dashes (and
# the dashes word processors put instead), slashes, brackets, non-breaking spaces.
# A lone digit is no detector's concern: a run holds two at least.
NUMBER_RUN = re.compile(r"\d(?:[ \t.\-/()\u00a0\u2010-\u2015]{0,3}\d)+")
SEPARATORS = re.compile(r"\D")


@dataclass(frozen=True, slots=True)
class Span:
    """Where a detector found a value: never the value itself."""

    start: int
    end: int
    type: str
    confidence: float
    validated: bool = False  # a checksum (Luhn, mod 97, a national ID's check digit) held

    def __len__(self) -> int:
        return self.end - self.start


class DetectorUnavailable(Exception):
    """A detector cannot run here (a library or model is missing); the message names what to
    install and never quotes data, so it may be shown as it is."""


@dataclass(frozen=True)
class Options:
    phone_regions: tuple[str, ...] = DEFAULT_PHONE_REGIONS
    id_countries: tuple[str, ...] = DEFAULT_ID_COUNTRIES


@dataclass
class Scan:
    """One text of a batch, as the detectors see it. `entities` gives the NER entities of this
    text; the batch computes them for all its texts at once, on first use."""

    text: str
    options: Options
    entities: Callable[[], Sequence[tuple[int, int, str]]] = field(default=lambda: ())
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def lower(self) -> str:
        """The text in lower case, for cheap "is this cue anywhere?" checks."""
        if "lower" not in self.cache:
            self.cache["lower"] = self.text.lower()
        return self.cache["lower"]

    def mentions(self, *words: str) -> bool:
        key = ("mentions", words)
        if key not in self.cache:
            self.cache[key] = bool(words) and _any_of(words).search(self.lower) is not None
        return self.cache[key]

    def runs(self, digits: int) -> list[tuple[int, int]]:
        """Where the runs of at least `digits` digits are (with the separators people put
        between groups). One pass over the text finds them for every numeric detector."""
        return [(start, end) for start, end, _ in self.counted_runs(digits)]

    def counted_runs(self, digits: int) -> list[tuple[int, int, int]]:
        """The same runs with how many digits each holds."""
        runs = self.cache.get("runs")
        if runs is None:
            runs = self.cache["runs"] = []
            for match in NUMBER_RUN.finditer(self.text):
                run = match.group()
                count = len(run) if run.isdigit() else len(run) - len(SEPARATORS.findall(run))
                runs.append((match.start(), match.end(), count))
        if digits <= 2:
            return runs  # every run holds two digits at least (the list itself: read only)
        return [run for run in runs if run[2] >= digits]

    def windows(self, digits: int, before: int, after: int) -> list[tuple[int, int]]:
        """The runs of at least `digits` digits, widened by `before` and `after` characters:
        the numeric detectors run their patterns there, not at every character of the text."""
        length = len(self.text)
        return [
            (start - before if start > before else 0, min(length, end + after))
            for start, end in self.runs(digits)
        ]


@lru_cache(maxsize=256)
def _any_of(words: tuple[str, ...]) -> re.Pattern:
    return re.compile("|".join(map(re.escape, words)))


def setting(name: str, default):
    """A Django setting when Django is configured; the default otherwise (the benchmark and the
    detectors' own tests call find_spans without Django)."""
    from django.conf import settings

    if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        return default
    try:
        return getattr(settings, name, default)
    except ImproperlyConfigured:
        return default
