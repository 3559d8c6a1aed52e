"""US Social Security numbers, and national identifiers by country with their check digits
(python-stdnum): US SSN/ITIN, GB NINO, DE tax ID (IdNr), FR NIR, ES DNI/NIE, IT codice
fiscale, NL BSN.

A formatted SSN (219-09-9999) is an SSN; a bare nine-digit number is one only right after its
label ("SSN 401687488"): zip+4 codes and order numbers look the same. A national ID that is only
digits with a weak check (BSN: 1 in 11 numbers passes) likewise needs its label.

The formats of the countries asked for are one regular expression, scanned once.
"""

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

from stdnum.de import idnr
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.us import itin

from connectors.detectors import context
from connectors.detectors.base import Scan, Span

DASH = "\u2010-\u2015"


def _compact(value: str) -> str:
    return re.sub(r"[\s.\-/\u2010-\u2015]", "", value)


def _check(validate: Callable[[str], bool]) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        try:
            return bool(validate(_compact(value)))
        except Exception:  # stdnum raises its own errors on odd input: not valid
            return False

    return check


def _is_nino(value: str) -> bool:
    return _compact(value).upper()[:2] not in {"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"}


def _always(value: str) -> bool:
    return True


@dataclass(frozen=True)
class Format:
    name: str
    country: str
    pattern: str
    is_valid: Callable[[str], bool]
    confidence: float  # when it validates (or, without a check digit, when it has the shape)
    validated: bool  # a check digit held
    # The text must hold one of these words for a candidate to reach the line (a bare number
    # with a weak check needs its label); None: the format alone can.
    cues: tuple[str, ...] | None = None


SSN_CUES = ("ss", "soc", "itin")
FORMATS = (
    # Area 000, 666 and 9xx, group 00 and serial 0000 are never issued. Not followed by a dash
    # and more (405-41-7800-Z is a SKU).
    Format(
        "ssn",
        "US",
        rf"(?<!\d)(?!000|666|9\d\d)\d{{3}}(?P<ssn_sep>[-. {DASH}])(?!00)\d{{2}}(?P=ssn_sep)"
        rf"(?!0000)\d{{4}}(?!\d|[-.{DASH}/][A-Za-z0-9])",
        _always,
        0.8,
        False,
    ),
    Format(
        "itin",
        "US",
        rf"(?<!\d)9\d{{2}}(?P<itin_sep>[- {DASH}]?)(?:5\d|6[0-5]|7\d|8[0-8]|9[0-24-9])"
        rf"(?P=itin_sep)\d{{4}}(?!\d|[-.{DASH}/][A-Za-z0-9])",
        _check(itin.is_valid),
        0.8,
        False,
    ),
    Format(
        "nino",
        "GB",
        r"(?<![A-Za-z0-9])(?i:[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D])"
        r"(?![A-Za-z0-9])",
        _is_nino,
        0.75,
        False,
    ),
    Format(
        "nir",
        "FR",
        r"(?<![\d\-])[12378][ .]?\d{2}[ .]?(?:0[1-9]|1[0-2]|[2-9]\d)[ .]?(?:\d{2}|2[ABab])"
        r"[ .]?\d{3}[ .]?\d{3}[ .]?\d{2}(?![\d\-])",
        _check(nir.is_valid),
        0.85,
        True,
    ),
    Format(
        "idnr",
        "DE",
        r"(?<![\d\-])[1-9](?:[ .\-/]?\d){10}(?![\d\-])",
        _check(idnr.is_valid),
        0.5,
        True,
    ),
    Format(
        "dni",
        "ES",
        r"(?<![\w\-.])\d(?:[ .]?\d){7}[ \-]?[A-Za-z](?![\w\-])",
        _check(dni.is_valid),
        0.85,
        True,
    ),
    Format(
        "nie",
        "ES",
        r"(?<![\w\-])[XYZxyz][ \-]?\d(?:[ .]?\d){6}[ \-]?[A-Za-z](?![\w\-])",
        _check(nie.is_valid),
        0.9,
        True,
    ),
    Format(
        "codice_fiscale",
        "IT",
        r"(?<![A-Za-z0-9])[A-Za-z]{6}[0-9LMNPQRSTUVlmnpqrstuv]{2}[A-Za-z]"
        r"[0-9LMNPQRSTUVlmnpqrstuv]{2}[A-Za-z][0-9LMNPQRSTUVlmnpqrstuv]{3}[A-Za-z]"
        r"(?![A-Za-z0-9])",
        _check(lambda value: codicefiscale.is_valid(value.upper())),
        0.95,
        True,
    ),
    Format(
        "bsn",
        "NL",
        r"(?<![\d\-])\d(?:[ .\-]?\d){8}(?![\d\-])",
        _check(bsn.is_valid),
        0.4,
        True,
        ("bsn", "burgerservice", "sofi"),
    ),
    # Last: a bare nine digits is tried as a BSN first.
    Format(
        "ssn_bare",
        "US",
        r"(?<![\d\-])(?!000|666|9\d\d)\d{3}(?!00)\d{2}(?!0000)\d{4}(?![\d\-])",
        _always,
        0.3,
        False,
        SSN_CUES,
    ),
)
_BY_NAME = {format.name: format for format in FORMATS}
# How many digits each numeric format holds. Its separators are ones a digit run (Scan.runs)
# may hold, so all its digits lie in one run: a run of fewer digits cannot begin it. A French
# NIR born in Corsica (2A, 2B) holds six digits before its letter.
DIGITS = {
    "ssn": 9,
    "itin": 9,
    "nino": 6,
    "nir": 6,
    "idnr": 11,
    "dni": 8,
    "nie": 7,
    "bsn": 9,
    "ssn_bare": 9,
}
_ALONE = {format.name: re.compile(format.pattern) for format in FORMATS}


@lru_cache(maxsize=256)
def combined(names: tuple[str, ...]) -> re.Pattern:
    return re.compile("|".join(f"(?P<{name}>{_BY_NAME[name].pattern})" for name in names))


# Every format but the codice fiscale holds six digits in a row (give or take a separator):
# the formats are tried only around such runs, not at every character of the text.
AROUND = 3  # characters before a run (AB 12…, X-12…) and after it (…78Z)
# A French NIR born in Corsica holds 2A or 2B: its run of digits stops there.
AFTER = 14
INTERLEAVED = ("codice_fiscale",)
# What every formatted SSN holds (the "ssn" format without its lookarounds).
SSN_SHAPE = re.compile(rf"\d{{3}}([-. {DASH}])\d{{2}}\1\d{{4}}")
SIXTEEN_ALPHANUMERICS = re.compile(r"[A-Za-z0-9]{16}")


def scan_formats(scan: Scan, names: Sequence[str], kind: str, least: int = 6) -> Iterator[Span]:
    """Each candidate of the formats named, validated; when the format that matched does not
    validate, the others that match at the same place are tried (nine digits: a BSN or an SSN).
    The numeric formats are tried only in runs of at least `least` digits."""
    text = scan.text
    numeric, interleaved = _split(names if isinstance(names, tuple) else tuple(names))
    runs = scan.counted_runs(least) if numeric else ()
    after = 0
    if runs:
        # A format that needs its label counts only when the text holds it; asked only of a
        # text with a run long enough for such a format (most texts have none).
        numeric = _labelled(scan, numeric, max(count for _, _, count in runs))
        length = len(text)
        ssn_shape = SHAPED if "ssn" in numeric and _has_ssn_shape(scan) else 0
        for run_start, run_end, count in runs:
            # Only around the runs of digits, not over the whole text, and only the formats
            # that fit in as many digits and the letters and digits around them: the regular
            # expression engine's own scan tries each place a format can begin.
            start = run_start - AROUND if run_start > AROUND else 0
            around = (
                ssn_shape
                | (LETTERS_BEFORE if LETTER_BEGINNING.search(text, start, run_start + 1) else 0)
                | (CLOSING_LETTER if CLOSING.match(text, run_end) else 0)
                | (CORSICAN if text[run_end : run_end + 1] in CORSICAN_LETTERS else 0)
                | (NINE if text.find("9", run_start, run_end) >= 0 else 0)
            )
            fitting, pattern = _fitting(numeric, count, around)
            if not fitting:
                continue
            if start < after:
                start = after
            end = min(length, run_end + AFTER)
            # The formats are asked only where one can begin, as the engine's own scan would
            # find them (leftmost first, none inside the one before), without trying each
            # character of the window.
            for begin in BEGINNINGS.finditer(text, start, run_end):
                begin = begin.start()
                if begin < after:
                    continue
                match = pattern.match(text, begin, end)
                if match is not None:
                    after = match.end()
                    yield from _validated(scan, match, fitting, kind)
    if interleaved:
        interleaved = _labelled(scan, interleaved, 0)
        # A codice fiscale is sixteen letters and digits: a text without such a word holds
        # none (most do not; looking for the word costs half the format's own scan).
        if interleaved and SIXTEEN_ALPHANUMERICS.search(text):
            for match in combined(interleaved).finditer(text):
                yield from _validated(scan, match, interleaved, kind)


@lru_cache(maxsize=256)
def _split(names: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The numeric formats and the interleaved ones, each in the order given."""
    return (
        tuple(name for name in names if name not in INTERLEAVED),
        tuple(name for name in names if name in INTERLEAVED),
    )


def _labelled(scan: Scan, names: tuple[str, ...], digits: int) -> tuple[str, ...]:
    """`names` without the formats whose label the text lacks. A format of more than `digits`
    digits is kept without asking: no run can hold it, so it is never tried."""
    lacking = [
        name
        for name, cues, count in _needing_labels(names)
        if count <= digits and not scan.mentions(*cues)
    ]
    return tuple(name for name in names if name not in lacking) if lacking else names


@lru_cache(maxsize=256)
def _needing_labels(names: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...], int], ...]:
    """The formats among `names` that need a label: each with its cues and its digits."""
    return tuple(
        (name, format.cues, DIGITS.get(name, 0))
        for name in names
        if (format := _BY_NAME[name]).cues is not None
    )


# Where a numeric format can begin: the first digit of a group, or a letter not inside a word
# before one (AB 12 34 56 C, X-1234567-L). One check at each place, before the formats.
BEGINNING = r"(?:(?<!\d)(?=\d)|(?<![A-Za-z0-9])(?=[A-Za-z][A-Za-z]?[ \-]?\d))"
BEGINNINGS = re.compile(BEGINNING)


# What is around a run of digits, as bits: which formats can begin in it depends on them. Each
# format's digits lie in one run. A NINO or an NIE begins with letters, where BEGINNINGS finds a
# letter before the run; the letter closing a DNI or an NIE stands right after the run's last
# digit, as does the A or B of a Corsican NIR (2A, 2B).
LETTERS_BEFORE, CLOSING_LETTER, CORSICAN, NINE, SHAPED = 1, 2, 4, 8, 16
LETTER_BEGINNING = re.compile(r"(?<![A-Za-z0-9])[A-Za-z][A-Za-z]?[ \-]?\d")
CLOSING = re.compile(r"[ \-]?[A-Za-z](?![\w\-])")
CORSICAN_LETTERS = frozenset("ABab")
NEEDS = {
    "nino": LETTERS_BEFORE,
    "nie": LETTERS_BEFORE | CLOSING_LETTER,
    "dni": CLOSING_LETTER,
    "itin": NINE,  # it begins with 9
    "ssn": SHAPED,  # SSN_SHAPE is in the text
}
NIR_DIGITS = 15  # a NIR without a Corsican department is all digits


def _has_ssn_shape(scan: Scan) -> bool:
    if "ssn_shape" not in scan.cache:
        scan.cache["ssn_shape"] = SSN_SHAPE.search(scan.text) is not None
    return scan.cache["ssn_shape"]


@lru_cache(maxsize=4096)
def _fitting(
    names: tuple[str, ...], count: int, around: int
) -> tuple[tuple[str, ...], re.Pattern | None]:
    """The formats of `names` that can begin in a run of `count` digits with `around` (bits)
    around it, and their pattern."""
    fitting = tuple(
        name
        for name in names
        if DIGITS[name] <= count
        and around & NEEDS.get(name, 0) == NEEDS.get(name, 0)
        and (name != "nir" or around & CORSICAN or count >= NIR_DIGITS)
    )
    # Only ever matched where BEGINNINGS found a beginning: the formats alone.
    return fitting, combined(fitting) if fitting else None


def _validated(scan: Scan, match: re.Match, names: tuple[str, ...], kind: str) -> Iterator[Span]:
    text, first = scan.text, match.lastgroup
    for name in [first, *(name for name in names if name != first)]:
        found = match if name == first else _ALONE[name].match(text, match.start())
        if found is None or not _BY_NAME[name].is_valid(found.group()):
            continue
        start, end = found.span()
        format = _BY_NAME[name]
        confidence = format.confidence + context.adjustment(text, start, end, kind)
        yield Span(start, end, kind, confidence, format.validated)
        return


def find_ssns(scan: Scan) -> Iterator[Span]:
    """A text holds an SSN only if it holds the shape of a formatted one, or the label a bare
    one needs: most hold neither, and are not scanned."""
    if not _has_ssn_shape(scan) and not scan.mentions(*SSN_CUES):
        return
    yield from scan_formats(scan, ("ssn", "ssn_bare"), "ssn", least=9)


def find_national_ids(scan: Scan) -> Iterator[Span]:
    yield from scan_formats(scan, _formats_of(scan.options.id_countries), "national_id")


@lru_cache(maxsize=256)
def _formats_of(countries: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(format.name for format in FORMATS if format.country in countries)
