"""Whether libphonenumber takes a candidate as a valid (or possible) number, without its
general parse.

phonenumbers.parse accepts anything a person may type (letters of vanity numbers, extensions,
RFC 3966 URIs, wide digits) and costs about 13 µs; is_valid_number asks each type's pattern in
turn. The phone detector's candidates are ASCII digits, spaces, dots, dashes, slashes and
brackets, with at most a leading "+": for them parse's steps reduce to a few operations on the
digits (the international prefix, the country code, the default region's own code written
without "+", the national prefix), done here in the same order with the same metadata, and
validity is one pattern per region and length. Anything else (another character, a national
prefix transform rule, a "+0", a non-geographic code, two digits alone) is left to the
library: `is_valid` and `is_possible` answer None. tests/test_phone_parsing.py holds the answers
equal to the library's on generated numbers of 25 regions.
"""

import re
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneMetadata

MIN_NSN, MAX_NSN = 2, 17  # parse's bounds on a national significant number
SHORTCUT_CHARACTERS = frozenset("0123456789 .-/()+")
TYPES = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
)


def _parsed(text: str, region: str):
    """(plan, country code, national number) as parse would read `text` in `region`; False
    where parse raises; None where this module does not follow parse."""
    if not SHORTCUT_CHARACTERS.issuperset(text) or "+" in text[1:]:
        return None
    plan = _plan(region)
    if plan is None:
        return None
    parsed = _parse(text, plan)
    if parsed is None or parsed is False:
        return parsed
    return (plan, *parsed)


def is_valid(text: str, region: str) -> bool | None:
    """What `is_valid_number_for_region(parse(text, region), region) or
    is_valid_number(parse(text, region))` answers (False where parse raises), or None when
    `text` is not of the shape this module follows the library on."""
    parsed = _parsed(text, region)
    if parsed is None or parsed is False:
        return parsed
    plan, code, national = parsed
    if code == plan.code:
        if _is_valid_for(national, region):
            return True
        if plan.alone:
            return False
    return _is_valid_anywhere(code, national)


def is_possible(text: str, region: str) -> bool | None:
    """What `is_possible_number(parse(text, region))` answers (False where parse raises), or
    None where this module does not follow parse: the national number's length is one the
    general description of its country code's main region allows (or allows locally)."""
    parsed = _parsed(text, region)
    if parsed is None or parsed is False:
        return parsed
    _, code, national = parsed
    main = _plan(phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code][0])
    if main is None:
        return None
    return len(national) in main.lengths or len(national) in main.local_lengths


@dataclass(frozen=True, slots=True)
class _Plan:
    """What parse reads of a region's metadata, compiled once."""

    region: str
    code: int
    own: str  # the country code as written
    alone: bool  # the only region of its country code
    dialling_out: re.Pattern | None  # the international prefix
    national_prefix: re.Pattern | None  # national_prefix_for_parsing
    general: re.Pattern | None
    lengths: frozenset[int]
    local_lengths: frozenset[int]
    shortest: int
    longest: int


@lru_cache(maxsize=512)
def _plan(region: str) -> _Plan | None:
    metadata = PhoneMetadata.metadata_for_region(region)
    if metadata is None or metadata.national_prefix_transform_rule:
        return None
    general = metadata.general_desc
    lengths = tuple(general.possible_length)
    if not lengths:
        return None
    return _Plan(
        region=region,
        code=metadata.country_code,
        own=str(metadata.country_code),
        alone=len(phonenumbers.COUNTRY_CODE_TO_REGION_CODE[metadata.country_code]) == 1,
        dialling_out=_pattern(metadata.international_prefix),
        national_prefix=_pattern(metadata.national_prefix_for_parsing),
        general=_pattern(general.national_number_pattern),
        lengths=frozenset(lengths),
        local_lengths=frozenset(general.possible_length_local_only),
        shortest=lengths[0],
        longest=lengths[-1],
    )


def _pattern(pattern: str | None) -> re.Pattern | None:
    return re.compile(pattern) if pattern else None


def _parse(text: str, plan: _Plan) -> tuple[int, str] | bool | None:
    """(country code, national significant number) as parse makes them; False where parse
    raises; None where this module does not follow it."""
    digits = text.translate(_NOT_DIGITS)
    # parse first checks the input is "viable": at least three digits (or two and nothing
    # else, which is left to the library).
    if len(digits) < 3:
        return None if len(digits) == 2 else False
    if text.startswith("+"):
        international = digits
    else:
        found = plan.dialling_out.match(digits) if plan.dialling_out else None
        if found and found.end() < len(digits) and digits[found.end()] == "0":
            found = None  # the library does not take "00 0…" as dialling out
        international = digits[found.end() :] if found else None
    if international is not None:
        if len(international) <= MIN_NSN:
            return False
        code, national = _country_code(international)
        if code is None:
            return None  # parse would try the digits again as a national number
        regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code]
        if regions == (phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY,):
            return None
        if regions[0] != plan.region:
            plan = _plan(regions[0])
            if plan is None:
                return None
    else:
        code, national = plan.code, digits
        if digits.startswith(plan.own):
            # The region's own country code written without "+" (1 212 555 0100).
            rest = _strip_national_prefix(digits[len(plan.own) :], plan)
            if (not _fits(digits, plan) and _fits(rest, plan)) or _too_long(digits, plan):
                national = rest
    if len(national) < MIN_NSN:
        return False
    stripped = _strip_national_prefix(national, plan)
    if _length_allows_stripping(stripped, plan):
        national = stripped
    if not MIN_NSN <= len(national) <= MAX_NSN:
        return False
    return code, national


_NOT_DIGITS = {ord(char): None for char in " .-/()+"}


def _country_code(digits: str) -> tuple[int | None, str]:
    if digits[0] == "0":
        return None, digits
    for length in range(1, min(3, len(digits)) + 1):
        if int(digits[:length]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return int(digits[:length]), digits[length:]
    return None, digits


def _strip_national_prefix(number: str, plan: _Plan) -> str:
    """parse's _maybe_strip_national_prefix_carrier_code, for regions without a transform
    rule: the prefix goes unless the number fits the general pattern only with it."""
    if not number or plan.national_prefix is None:
        return number
    found = plan.national_prefix.match(number)
    if not found:
        return number
    rest = number[found.end() :]
    if not _fits(rest, plan) and _fits(number, plan):
        return number
    return rest


def _length_allows_stripping(number: str, plan: _Plan) -> bool:
    """Not TOO_SHORT, IS_POSSIBLE_LOCAL_ONLY nor INVALID_LENGTH (parse's _test_number_length)."""
    length = len(number)
    if length in plan.local_lengths:
        return False
    return length in plan.lengths or length > plan.longest


def _too_long(number: str, plan: _Plan) -> bool:
    length = len(number)
    return length not in plan.local_lengths and length > plan.shortest and length > plan.longest


def _fits(number: str, plan: _Plan) -> bool:
    """The general pattern, lengths not asked (parse's _match_national_number)."""
    return plan.general is not None and plan.general.fullmatch(number) is not None


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def _is_valid_for(national: str, region: str) -> bool:
    """number type != UNKNOWN: the general description, then any type's, each with its lengths."""
    pattern = _valid_pattern(region, len(national))
    return pattern is not None and pattern.fullmatch(national) is not None


@lru_cache(maxsize=4096)
def _valid_pattern(region: str, length: int) -> re.Pattern | None:
    """The numbers of `length` digits valid in `region`: the general pattern, and one of the
    types' patterns whose lengths allow it, as one regular expression."""
    metadata = PhoneMetadata.metadata_for_region(region)
    if not _allows(metadata.general_desc, length):
        return None
    names = TYPES if metadata.same_mobile_and_fixed_line_pattern else (*TYPES, "mobile")
    types = [
        f"(?:{desc.national_number_pattern})"
        for desc in (getattr(metadata, name) for name in names)
        if _allows(desc, length)
    ]
    if not types:
        return None
    general = metadata.general_desc.national_number_pattern
    return re.compile(f"(?=(?:{general})$)(?:{'|'.join(types)})")


def _allows(desc, length: int) -> bool:
    if desc is None or not desc.national_number_pattern:
        return False
    return not desc.possible_length or length in desc.possible_length


def _is_valid_anywhere(code: int, national: str) -> bool:
    """is_valid_number: the region the number belongs to (region_code_for_number), then valid
    there."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ())
    if len(regions) == 1:
        return _is_valid_for(national, regions[0])
    anywhere = _valid_anywhere_pattern(code, len(national))
    if anywhere is None or not anywhere.fullmatch(national):
        return False  # valid in none of the code's regions (most candidates): no need to ask which
    for region in regions:
        metadata = PhoneMetadata.metadata_for_region(region)
        if metadata is None:
            continue
        if metadata.leading_digits is not None:
            if _compiled(metadata.leading_digits).match(national):
                return _is_valid_for(national, region)
        elif _is_valid_for(national, region):
            return True
    return False


@lru_cache(maxsize=4096)
def _valid_anywhere_pattern(code: int, length: int) -> re.Pattern | None:
    """The numbers of `length` digits valid in some region of country code `code`."""
    patterns = [
        pattern.pattern
        for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ())
        if PhoneMetadata.metadata_for_region(region) is not None
        and (pattern := _valid_pattern(region, length)) is not None
    ]
    return re.compile("|".join(f"(?:{pattern})" for pattern in patterns)) if patterns else None


def valid_in_none(text: str, regions: tuple[str, ...]) -> bool:
    """True only where `is_valid(text, region)` is False for every region given, asked in one
    regular expression instead of a parse per region (most candidates are valid nowhere):
    the digits of a national number (no "+", no international prefix), less what parse may
    strip off them, fit the general pattern of no region of the regions' country codes.
    False when unsure."""
    if "+" in text or not SHORTCUT_CHARACTERS.issuperset(text):
        return False
    digits = text.translate(_NOT_DIGITS)
    screen = _screen(regions)
    if len(digits) < 3 or screen is None or screen[0].match(digits):
        return False
    return screen[1].fullmatch(digits) is None


@lru_cache(maxsize=256)
def _screen(regions: tuple[str, ...]) -> tuple[re.Pattern, re.Pattern] | None:
    """(the regions' international prefixes, every national number any of them may take as
    valid), or None when a region's parse is not followed here. Parse keeps of a national
    number the digits less the region's own country code written without "+" and up to two
    national prefixes (_parse), each optional here; a valid number fits the general pattern
    of its region, so the pattern holds at least every number that is valid."""
    plans = [_plan(region) for region in regions]
    if not plans or None in plans:
        return None
    outs, alternatives = [], []
    for plan in plans:
        if plan.dialling_out is not None:
            outs.append(f"(?:{plan.dialling_out.pattern})")
        prefix = f"(?:{plan.national_prefix.pattern})?" if plan.national_prefix else ""
        alternatives.append(f"(?:{plan.own})?{prefix}{prefix}(?:{_general_anywhere(plan.code)})")
    return re.compile("|".join(outs) or "(?!)"), re.compile("|".join(alternatives))


@lru_cache(maxsize=256)
def _general_anywhere(code: int) -> str:
    """The general patterns of every region of country code `code`, as one pattern."""
    patterns = []
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ()):
        metadata = PhoneMetadata.metadata_for_region(region)
        general = metadata.general_desc if metadata is not None else None
        if general is not None and general.national_number_pattern:
            patterns.append(f"(?:{general.national_number_pattern})")
    return "|".join(dict.fromkeys(patterns)) or "(?!)"
