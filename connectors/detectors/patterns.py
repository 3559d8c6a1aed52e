"""E-mail addresses, payment cards (Luhn) and IBANs (python-stdnum: mod 97 and the country's
BBAN format; not its bank registry, which does not know every bank)."""

import re
from collections.abc import Iterator
from functools import lru_cache

from stdnum import iban as stdnum_iban
from stdnum import numdb

from connectors.detectors import context
from connectors.detectors.base import Scan, Span

DASH = "\u2010-\u2015"  # hyphens and dashes word processors put in place of "-"

LOCAL_PART = re.compile(r"[\w.%+-]{1,64}$")
DOMAIN = re.compile(r"[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}")


def find_emails(scan: Scan) -> Iterator[Span]:
    """From each "@" outwards: a regular expression that starts anywhere would try every word
    of a long text."""
    text, position = scan.text, 0
    while (at := text.find("@", position)) >= 0:
        position = at + 1
        local = LOCAL_PART.search(text, max(0, at - 64), at)
        domain = DOMAIN.match(text, at + 1)
        if local and domain:
            yield Span(local.start(), domain.end(), "email", 0.95)
            position = domain.end()


# A run of digit groups: the card may sit among other numbers of a row (qty, price, expiry).
DIGIT_RUN = re.compile(rf"(?<!\d)\d(?:[ \t.\-\u00a0{DASH}]{{0,2}}\d){{12,}}(?!\d)")
DIGITS = re.compile(r"\d+")
# How people group card numbers: 4-4-4-4 (16), 4-4-4-4-3 (19), 4-6-5 (Amex), 4-6-4 (Diners).
CARD_GROUPINGS = {(4, 4, 4, 4), (4, 4, 4, 4, 3), (4, 6, 5), (4, 6, 4)}


DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)  # a digit doubled, its two digits added


def luhn_is_valid(digits: str) -> bool:
    total = sum(map(int, digits[-1::-2])) + sum(DOUBLED[int(digit)] for digit in digits[-2::-2])
    return total % 10 == 0


def find_cards(scan: Scan) -> Iterator[Span]:
    """Every run of whole digit groups that is grouped like a card and passes Luhn; overlaps
    between them (a card next to its CVV) are left to the resolver: longer wins."""
    text = scan.text
    for window in scan.windows(13, before=0, after=1):
        yield from _cards_in(text, window)


def _cards_in(text: str, window: tuple[int, int]) -> Iterator[Span]:
    for run in DIGIT_RUN.finditer(text, *window):
        groups = list(DIGITS.finditer(run.group()))
        sizes = [group.end() - group.start() for group in groups]
        offset = run.start()
        for first in range(len(groups)):
            total = 0
            for last in range(first, len(groups)):
                total += sizes[last]
                if total > 19:
                    break
                if total < 13 or (
                    last > first and tuple(sizes[first : last + 1]) not in CARD_GROUPINGS
                ):
                    continue
                start, end = offset + groups[first].start(), offset + groups[last].end()
                # The digits of the groups: what lies between them is no digit.
                if luhn_is_valid("".join(group.group() for group in groups[first : last + 1])):
                    confidence = 0.95 + context.adjustment(text, start, end, "credit_card")
                    yield Span(start, end, "credit_card", confidence, validated=True)


# Country code, check digits, then groups of letters and digits separated by a space or a dash;
# the run may take a word after the IBAN ("BIC"): the longest prefix that validates is kept.
IBAN_RUN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ \-]?[A-Za-z0-9]){11,40}")
IBAN_GROUP = re.compile(r"[A-Za-z0-9]+")


def find_ibans(scan: Scan) -> Iterator[Span]:
    """An IBAN's check digits are a run of digits right after two letters: only there is the
    pattern tried."""
    text, position = scan.text, 2
    for start, _, _ in scan.counted_runs(2):
        if start < position or not text[start - 2 : start].isalpha():
            continue
        run = IBAN_RUN.match(text, start - 2)
        if run is None:
            continue
        ends = [run.start() + group.end() for group in IBAN_GROUP.finditer(run.group())]
        for end in reversed(ends):
            compact = text[run.start() : end].replace(" ", "").replace("-", "")
            if len(compact) < 15:
                break
            if len(compact) <= 34 and _mod_97(compact) and _has_country_format(compact):
                yield Span(run.start(), end, "iban", 0.95, validated=True)
                position = end
                break


# Letters as their numbers (A = 10 ... Z = 35), as the ISO 7064 mod 97-10 check reads them.
_AS_NUMBER = {
    ord(char): str(int(char, 36)) for char in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
}


def _mod_97(compact: str) -> bool:
    """The IBAN's check digits hold (mod 97 == 1): what stdnum checks first, in one int();
    the country's format is asked only of the few runs that pass."""
    return int((compact[4:] + compact[:4]).translate(_AS_NUMBER)) % 97 == 1


def _has_country_format(compact: str) -> bool:
    """What stdnum's iban.is_valid(compact, check_country=False) answers once the check digits
    hold: the country is in its registry and the BBAN has that country's format. The format is
    read from stdnum's registry once per country (its lookup cost 25 µs an IBAN); anything but
    ASCII is left to stdnum, which maps some other digits to ASCII first."""
    if not compact.isascii():
        return stdnum_iban.is_valid(compact, check_country=False)
    number = compact.upper()
    bban = _bban_format(number[:2])
    return bban is not None and bban.fullmatch(number[4:]) is not None


# How the registry writes a BBAN's format: "4!n4!n12!c" is 4 digits, 4 digits, 12 of either.
BBAN_PART = re.compile(r"([1-9][0-9]*)!([nac])")
BBAN_CHARACTERS = {"n": "[0-9]", "a": "[A-Z]", "c": "[A-Za-z0-9]"}


@lru_cache(maxsize=256)
def _bban_format(country: str) -> re.Pattern | None:
    found = numdb.get("iban").info(country)
    properties = found[0][1] if found else {}
    if not properties:
        return None
    return re.compile(
        BBAN_PART.sub(
            lambda part: f"{BBAN_CHARACTERS[part.group(2)]}{{{part.group(1)}}}",
            properties.get("bban", ""),
        )
    )
