"""Phone numbers, found and validated by phonenumbers (Google's libphonenumber) per region.

A cheap pattern proposes digit runs shaped like a phone number; libphonenumber's matcher
(leniency VALID) decides, region by region, whether one is a real number there. A number that is
only *possible* (right length, unknown range: `+49(0) 313058901`) still counts when its shape
says phone (a country code, a trunk 0 in brackets, an area code in brackets), or when a label
such as "Tel." stands before it. "PO", "order", "invoice" before it, or a time of day after it,
lower it below the line.
"""

import re
from collections.abc import Iterator
from functools import lru_cache

import phonenumbers

from connectors.detectors import context, phone_parsing
from connectors.detectors.base import MIN_CONFIDENCE, Scan, Span

CANDIDATE = re.compile(
    r"(?<![\w+])(?<!\d[.:/\-])(?<!\w[\-/])"
    r"(?:(?:(?:\+|00)\d{1,3}|\(\+\d{1,3}\))[ .\-]?(?:\(0\)[ .\-]?)?)?"  # +49, 0049, (+34), +49(0)
    r"(?:\(\d{1,5}\)[ .\-]?)?"  # (030), (0238)-
    r"\d(?:(?:[ .\-/]| / )?\d){5,16}"  # 0345 / 68 23 417
    r"(?![\w]|[.:/\-]?\d|[\-/][A-Za-z])"  # a comma after is a CSV field's end
)
NOT_A_PHONE = re.compile(
    r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}"  # dates
    r"|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}"
    r"|\d{1,3}(?:\.\d{1,3}){3}"  # IPv4
    r"|\d{3}-\d{2}-\d{4}"  # SSN
)
TRUNK_ZERO = re.compile(r"\(0\)")
BRACKETED_COUNTRY = re.compile(r"^\(\+(\d{1,3})\)")
SEPARATED = re.compile(r"[\s./()\-]")
NOT_A_DIGIT = re.compile(r"\D")
GROUP_AFTER_SPACE = re.compile(r"(?<= )\S")
INTERNATIONAL, NATIONAL, UNSEPARATED = 0.9, 0.8, 0.65  # valid numbers, by how they are written
POSSIBLE_SHAPED, POSSIBLE, POSSIBLE_UNSEPARATED = 0.6, 0.45, 0.3  # possible, not valid
# Regions whose trunk prefix _regions_for accounts for (none, 0, or North America's optional 1);
# for any other the library's matcher decides.
CHECKED_TRUNK_PREFIXES = (None, "0", "1")
LONGEST_NATIONAL = 12  # digits; a longer national run is two numbers side by side


def find_phones(scan: Scan) -> Iterator[Span]:
    text, regions = scan.text, scan.options.phone_regions
    for window in scan.windows(7, before=2, after=3):
        yield from _phones_in(scan, text, regions, window)


def _phones_in(scan: Scan, text: str, regions: tuple[str, ...], window) -> Iterator[Span]:
    for match in CANDIDATE.finditer(text, *window):
        raw = match.group()
        if _digit_count(raw) < 7 or NOT_A_PHONE.fullmatch(raw):
            continue
        start = match.start()
        international = raw.startswith(("+", "00", "(+"))
        separated = bool(SEPARATED.search(raw))
        best = INTERNATIONAL if international else NATIONAL if separated else UNSEPARATED
        adjustment = context.adjustment(text, start, match.end(), "phone")
        if best + adjustment < MIN_CONFIDENCE:
            continue  # "PO 4500012345": not worth asking the library
        found = valid_numbers(raw, regions)
        if not found:
            shaped = international or "(" in raw
            likely = POSSIBLE_SHAPED if shaped else POSSIBLE if separated else POSSIBLE_UNSEPARATED
            if likely + adjustment >= MIN_CONFIDENCE and is_possible(raw, regions):
                found = ((0, len(raw), likely),)
        for offset, end, confidence in found:
            confidence = min(1.0, max(0.0, confidence + adjustment))
            yield Span(start + offset, start + end, "phone", confidence)


def _digit_count(candidate: str) -> int:
    return len(candidate) - len(NOT_A_DIGIT.findall(candidate))


def normalized(raw: str) -> str:
    """ "+49(0) 30…": the (0) is a trunk prefix written for national callers, blanked out;
    "(+34) 981…" is "+34 981…". Same length, so offsets hold."""
    if "(" not in raw:
        return raw
    raw = BRACKETED_COUNTRY.sub(lambda match: f"+{match.group(1)}  ", raw)
    return TRUNK_ZERO.sub("   ", raw)


# Small on purpose: the prompt's second scan meets the same numbers again, but a long-lived
# worker should not hold tens of thousands of phone numbers (and a benchmark must not time hits).
@lru_cache(maxsize=2048)
def valid_numbers(raw: str, regions: tuple[str, ...]) -> tuple[tuple[int, int, float], ...]:
    """Where in `raw` libphonenumber finds valid numbers (leniency VALID), with a confidence
    from how each is written."""
    text = normalized(raw)
    if found := _matches(text, regions):
        return found
    if _digit_count(text) <= LONGEST_NATIONAL or text.startswith("+"):
        return ()
    # "4711 0171 1234567": a customer number, then the phone number; try the run without its
    # leading or trailing groups.
    cuts = [match.start() for match in GROUP_AFTER_SPACE.finditer(text)]
    for cut in cuts:
        if found := _matches(text[cut:], regions):
            return tuple((cut + start, cut + end, confidence) for start, end, confidence in found)
    for cut in reversed(cuts):
        if found := _matches(text[: cut - 1], regions):
            return found
    return ()


def _matches(text: str, regions: tuple[str, ...]) -> tuple[tuple[int, int, float], ...]:
    regions = _regions_for(text, regions)
    if _all_checked(regions) and phone_parsing.valid_in_none(text, regions):
        return ()  # what the loop below finds: phone_parsing.is_valid is False in each region
    for region in regions:
        if _trunk_prefix(region) in CHECKED_TRUNK_PREFIXES:
            # What the matcher at leniency VALID checks, without its search for a number
            # inside the text (the candidate is the number): valid, and written with its trunk
            # prefix where the region needs one (_regions_for saw to that).
            valid = phone_parsing.is_valid(text, region)
            if valid:
                return ((0, len(text), _confidence(text)),)
            if valid is False or not _may_be_valid(text, region):
                continue
            try:
                number = phonenumbers.parse(text, region)
            except phonenumbers.NumberParseException:
                continue
            # Valid for the region asked is valid (and cheap); the library's own question,
            # which region of the country code the number belongs to, only when it is not.
            if phonenumbers.is_valid_number_for_region(number, region) or (
                phonenumbers.is_valid_number(number)
            ):
                return ((0, len(text), _confidence(text)),)
            continue
        found = tuple(
            (match.start, match.end, _confidence(match.raw_string))
            for match in phonenumbers.PhoneNumberMatcher(
                text, region, leniency=phonenumbers.Leniency.VALID
            )
        )
        if found:
            return found
    return ()


def _may_be_valid(text: str, region: str) -> bool:
    """False when no number parse could make of `text` for `region` fits the general pattern
    of that country's numbers, which every valid number fits: the library's own metadata,
    asked in one regular expression instead of a parse and a validation (70 % of the pattern
    detectors' time went there, mostly on numbers no region takes). True when unsure."""
    digits = NOT_A_DIGIT.sub("", text)
    if text.startswith("+"):
        return any(_fits(code, rest) for code, rest in _country_codes(digits))
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is None or metadata.national_prefix_transform_rule or _dials_out(digits, metadata):
        return True
    code = str(metadata.country_code)
    if _fits(metadata.country_code, digits, metadata):
        return True
    return digits.startswith(code) and _fits(metadata.country_code, digits[len(code) :], metadata)


def _country_codes(digits: str) -> Iterator[tuple[int, str]]:
    for length in (1, 2, 3):
        if int(digits[:length] or 0) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            yield int(digits[:length]), digits[length:]
            return


def _fits(code: int, digits: str, metadata=None) -> bool:
    """Whether `digits`, or what is left of them after a trunk prefix (once or twice, as parse
    may strip it), fits the general pattern of a region of country code `code`."""
    if metadata is None:
        region = phonenumbers.region_code_for_country_code(code)
        metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(code, region)
    general = _general_pattern(code)
    pattern = metadata.national_prefix_for_parsing if metadata else None
    prefix = _prefix_pattern(pattern) if pattern else None
    for _ in range(3):
        if general.fullmatch(digits):
            return True
        found = prefix.match(digits) if prefix else None
        if not found or not found.end():
            return False
        digits = digits[found.end() :]
    return False


def _dials_out(digits: str, metadata) -> bool:
    """Whether parse would read the digits as dialled from abroad (0049…, 011 49…)."""
    pattern = metadata.international_prefix
    return bool(pattern) and _prefix_pattern(pattern).match(digits) is not None


@lru_cache(maxsize=512)
def _general_pattern(code: int) -> re.Pattern:
    """Every number of every region that shares country code `code`, as one pattern."""
    patterns = []
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ()):
        metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(code, region)
        general = metadata.general_desc if metadata else None
        if general is not None and general.national_number_pattern:
            patterns.append(f"(?:{general.national_number_pattern})")
    return re.compile("|".join(patterns) or "(?!)")


@lru_cache(maxsize=256)
def _prefix_pattern(pattern: str) -> re.Pattern:
    return re.compile(pattern)


@lru_cache(maxsize=65536)
def is_possible(raw: str, regions: tuple[str, ...]) -> bool:
    text = normalized(raw)
    for region in _regions_for(text, regions):
        possible = phone_parsing.is_possible(text, region)
        if possible is None:
            try:
                possible = phonenumbers.is_possible_number(phonenumbers.parse(text, region))
            except phonenumbers.NumberParseException:
                continue
        if possible:
            return True
    return False


def _regions_for(text: str, regions: tuple[str, ...]) -> tuple[str, ...]:
    """The regions worth asking: any one for an international number; for a national one, not
    those whose trunk prefix it lacks (a German number written nationally starts with 0) nor
    those where it cannot start with one (no North American number starts with 0)."""
    if text.startswith("+"):
        return regions[:1]
    if text.startswith("00"):
        return _regions_by_start("00", regions)
    first = FIRST_DIGIT.search(text)
    return _regions_by_start("0" if first and first.group() == "0" else "", regions)


FIRST_DIGIT = re.compile(r"\d")


@lru_cache(maxsize=256)
def _regions_by_start(start: str, regions: tuple[str, ...]) -> tuple[str, ...]:
    if start == "00":  # dialled from a region whose international prefix is 00
        return tuple(region for region in regions if _dialling_out(region) == "00")[:1]
    first = start
    return tuple(
        region
        for region in regions
        if (prefix := _trunk_prefix(region)) is None or (prefix == "0") == (first == "0")
    )


@lru_cache(maxsize=256)
def _all_checked(regions: tuple[str, ...]) -> bool:
    return all(_trunk_prefix(region) in CHECKED_TRUNK_PREFIXES for region in regions)


@lru_cache(maxsize=512)
def _trunk_prefix(region: str) -> str | None:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    return metadata.national_prefix if metadata is not None else None


@lru_cache(maxsize=512)
def _dialling_out(region: str) -> str | None:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    return metadata.international_prefix if metadata is not None else None


def _confidence(raw: str) -> float:
    if raw.startswith(("+", "00")):
        return INTERNATIONAL
    return NATIONAL if SEPARATED.search(raw) else UNSEPARATED
