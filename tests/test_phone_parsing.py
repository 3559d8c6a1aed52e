"""The phone detector's own parse (connectors/detectors/phone_parsing.py) against libphonenumber:
wherever it answers, it answers what parse and the validity checks answer."""

import random

import phonenumbers
import pytest

from connectors.detectors import phone_parsing, phones

REGIONS = ["US", "GB", "DE", "FR", "ES", "IT", "NL", "CA", "AT", "CH", "BE", "AU", "IE", "PL"]
REGIONS += ["BR", "IN", "JP", "MX", "SE", "PT", "AR", "RU", "ZA", "GG", "VA"]
FORMATS = [
    phonenumbers.PhoneNumberFormat.NATIONAL,
    phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    phonenumbers.PhoneNumberFormat.E164,
]
SEPARATORS = ["", " ", "-", ".", "/", " / "]


def by_the_library(text: str, region: str) -> bool:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number_for_region(number, region) or phonenumbers.is_valid_number(
        number
    )


def _written(digits: str, rng: random.Random) -> str:
    groups, position = [], 0
    while position < len(digits):
        size = rng.randint(1, 4)
        groups.append(digits[position : position + size])
        position += size
    return rng.choice(SEPARATORS).join(groups)


def _candidates(region: str, count: int) -> list[str]:
    """Real numbers of every type written each way, the same with digits changed, dropped or
    added, and digit runs with the prefixes people dial."""
    rng = random.Random(region)
    code = str(phonenumbers.country_code_for_region(region))
    examples = []
    for kind in phonenumbers.PhoneNumberType.values():
        example = phonenumbers.example_number_for_type(region, kind)
        if example is not None:
            examples.append(example)
    texts = [phonenumbers.format_number(number, style) for number in examples for style in FORMATS]
    prefixes = ["", "", "0", "00", "+", f"+{code}", f"00{code}", code, f"+{code}(0)", "1", "011"]
    prefixes += ["+0", "000", "+800", f"00 {code} 0", "(0", f"({code})"]
    while len(texts) < count:
        if examples and rng.random() < 0.5:
            national = str(rng.choice(examples).national_number)
            change = rng.random()
            if change < 0.4:
                index = rng.randrange(len(national))
                national = national[:index] + rng.choice("0123456789") + national[index + 1 :]
            elif change < 0.6:
                national = national[:-1]
            elif change < 0.8:
                national += rng.choice("0123456789")
        else:
            national = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 15)))
        prefix = rng.choice(prefixes)
        text = prefix + rng.choice(["", " "]) + _written(national, rng)
        if prefix.startswith("(") and ")" not in prefix:
            text = f"{prefix}{national[:3]}) {national[3:]}"
        texts.append(phones.normalized(text))
    return texts


@pytest.mark.parametrize("region", REGIONS)
def test_the_shortcut_answers_what_parse_and_is_valid_number_answer(region):
    answered = valid = 0
    for text in _candidates(region, 3000):
        answer = phone_parsing.is_valid(text, region)
        if answer is None:
            continue
        answered += 1
        valid += answer
        assert answer == by_the_library(text, region), (text, region)
    # The sample is worth something: most candidates are answered, some valid, most not.
    assert (
        answered > 2000
        or phonenumbers.PhoneMetadata.metadata_for_region(region).national_prefix_transform_rule
    )
    assert 0 < valid < answered or answered == 0


def possible_by_the_library(text: str, region: str) -> bool:
    try:
        return phonenumbers.is_possible_number(phonenumbers.parse(text, region))
    except phonenumbers.NumberParseException:
        return False


@pytest.mark.parametrize("region", REGIONS)
def test_the_shortcut_answers_what_is_possible_number_answers(region):
    answered = possible = 0
    for text in _candidates(region, 3000):
        answer = phone_parsing.is_possible(text, region)
        if answer is None:
            continue
        answered += 1
        possible += answer
        assert answer == possible_by_the_library(text, region), (text, region)
    assert 0 < possible < answered or answered == 0


@pytest.mark.parametrize(
    "text",
    ["030 1234567", "+49 30 1234567", "0049 30 1234567", "(030) 123 45 67", "12125550100"],
)
def test_the_shortcut_answers_the_common_forms(text):
    assert phone_parsing.is_valid(text, "DE") is not None
    assert phone_parsing.is_valid(text, "US") is not None


@pytest.mark.parametrize(
    ("text", "region"),
    [
        ("+0 30 1234567", "DE"),  # parse reads it again as a national number
        ("+800 1234 5678", "DE"),  # a non-geographic code
        ("030\u00a01234567", "DE"),  # a character the shortcut does not follow parse on
        ("030 1234567", "AR"),  # Argentina rewrites its national prefix
    ],
)
def test_the_shortcut_leaves_other_forms_to_the_library(text, region):
    assert phone_parsing.is_valid(text, region) is None


@pytest.mark.parametrize(
    "regions",
    [
        ("US", "ES", "IT"),  # what a national number not starting with 0 is asked of
        ("GB", "DE", "FR", "ES", "IT", "NL"),  # one starting with 0
        ("US", "GB", "DE", "FR", "ES", "IT", "NL"),
        ("CA", "VA", "AU", "CH", "IE", "PL"),
    ],
)
def test_valid_in_none_only_where_no_region_takes_the_number(regions):
    """The screen before the per-region parse: where it says a number is valid nowhere, the
    shortcut and the library agree in every region; and it says so of many invalid ones (not
    of those written with "+" or an international prefix, which it leaves to the parse)."""
    screened = invalid = 0
    for text in [text for region in regions for text in _candidates(region, 1500)]:
        valid_somewhere = any(by_the_library(text, region) for region in regions)
        invalid += not valid_somewhere
        if phone_parsing.valid_in_none(text, regions):
            screened += 1
            assert not valid_somewhere, (text, regions)
            assert all(phone_parsing.is_valid(text, region) is False for region in regions)
    assert screened > invalid / 20, (screened, invalid)


def test_valid_in_none_is_unsure_of_regions_parse_is_not_followed_in():
    # Argentina rewrites its national prefix: the shortcut leaves it to the library.
    assert phone_parsing.is_valid("2024 0315", "AR") is None
    assert not phone_parsing.valid_in_none("2024 0315", ("US", "AR"))
    assert phone_parsing.valid_in_none("2024 0315", ("US", "ES", "IT"))
    # Nor does it follow parse on a "+" inside the number, or on other characters.
    assert phone_parsing.is_valid("2024+0315", "US") is None
    assert not phone_parsing.valid_in_none("2024+0315", ("US", "ES", "IT"))
    assert not phone_parsing.valid_in_none("2024\u00a00315", ("US", "ES", "IT"))
