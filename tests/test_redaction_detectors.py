"""The detectors, one table per detector and language: what real exports hold, and the hard
negatives that look like it (order numbers, SKUs, timestamps, versions)."""

import itertools
import random
import subprocess
import sys

import phonenumbers
import pytest

from connectors.detectors import DETECTORS, find_spans, phones
from connectors.detectors.base import DEFAULT_PHONE_REGIONS
from connectors.redaction import Rule, redact

KEY = b"test-key"
PATTERN_DETECTORS = [name for name, detector in DETECTORS.items() if not detector.uses_ner]


def found(text: str, detector: str, **options) -> list[str]:
    return [text[span.start : span.end] for span in find_spans(text, [detector], **options)]


def found_with_all(text: str) -> list[tuple[str, str]]:
    return [
        (span.type, text[span.start : span.end]) for span in find_spans(text, PATTERN_DETECTORS)
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # US
        ("call (415) 555-2671 today", ["(415) 555-2671"]),
        ("call +1 415-555-0100", ["+1 415-555-0100"]),
        ("cell 4155552671", ["4155552671"]),
        # GB: national format with its trunk 0
        ("ring 07700 900429 after 5", ["07700 900429"]),
        ("office 020 7946 0958", ["020 7946 0958"]),
        ("+44 (0)20 7946 0958", ["+44 (0)20 7946 0958"]),
        # DE: trunk 0, (0) after the country code, area code in brackets, no separators
        ("Tel. 0462648409", ["0462648409"]),
        ("Rückruf unter +49(0) 313058901 erbeten", ["+49(0) 313058901"]),
        ("Telefon (0238)-550944", ["(0238)-550944"]),
        ("Handy 0171 1234567", ["0171 1234567"]),
        ("0049 30 1234567", ["0049 30 1234567"]),
        ("Kd.-Nr. 4711 0171 1234567", ["0171 1234567"]),
        # FR
        ("tél. 06 12 34 56 78", ["06 12 34 56 78"]),
        ("+33 1 42 68 53 00", ["+33 1 42 68 53 00"]),
        # ES
        ("móvil 612 34 56 78", ["612 34 56 78"]),
        ("+34 912 345 678", ["+34 912 345 678"]),
        # IT
        ("cellulare 333 1234567", ["333 1234567"]),
        ("tel. 06 6982 1234", ["06 6982 1234"]),
        # NL
        ("bel 06-12345678", ["06-12345678"]),
        ("telefoon 020-1234567", ["020-1234567"]),
    ],
)
def test_phone_numbers_in_every_format(text, expected):
    assert found(text, "phone") == expected


@pytest.mark.parametrize(
    "text",
    [
        "PO 4500012345 released",  # a 10-digit SAP purchase order
        "order 4500012345",
        "Bestellung 4500012345 vom 12.03.2024",
        "commande 4500012345",
        "2024-03-12 14:22:05 job started",  # a timestamp
        "at 12.03.2024 14:22",
        "from 192.168.100.200",
        "SSN 219-09-9999",
        "SKU 405-41-7800-Z",
        "INV-2024-0012",
        "version 3.6.5.2418",
        "total 1.234.567,89 EUR",
    ],
)
def test_phone_lookalikes_are_left_alone(text):
    assert found(text, "phone") == []


def test_phone_regions_come_from_the_connector_or_the_default():
    assert found("Handy 0171 1234567", "phone", phone_regions=["DE"]) == ["0171 1234567"]
    assert found("Handy 0171 1234567", "phone", phone_regions=["US"]) == []


def _generated_phone_candidates(count: int) -> list[str]:
    """Digit runs written the ways people write phone numbers, most of them no real number."""
    rng = random.Random(7)
    prefixes = ["", "", "", "+49 ", "+44 ", "+1 ", "0049 ", "+33 ", "+39 ", "+31 ", "+34 "]
    prefixes += ["(+34) ", "+49(0) ", "0", "00", "1", "49", "44", "011 "]
    candidates = []
    for _ in range(count):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(5, 13)))
        groups = [digits[index : index + 3] for index in range(0, len(digits), 3)]
        text = rng.choice(prefixes) + rng.choice(["", " ", "-", ".", "/"]).join(groups)
        if rng.random() < 0.1:
            text = f"(0{digits[:3]}) {digits[3:]}"
        candidates.append(phones.normalized(text))
    return candidates


@pytest.mark.parametrize("regions", [DEFAULT_PHONE_REGIONS, ("DE",), ("US", "CA"), ("IT", "GB")])
def test_the_phone_pre_check_never_turns_away_a_number_libphonenumber_takes(regions):
    """The detector asks libphonenumber only about candidates that fit a region's general
    pattern; what it finds must be exactly what parse and is_valid_number alone would find."""

    def by_the_library_alone(text: str) -> bool:
        for region in phones._regions_for(text, regions):
            try:
                number = phonenumbers.parse(text, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(number):
                return True
        return False

    candidates = _generated_phone_candidates(3000)
    expected = [by_the_library_alone(text) for text in candidates]
    assert any(expected) and not all(expected)  # the sample holds both
    assert [bool(phones._matches(text, regions)) for text in candidates] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("IBAN DE89 3704 0044 0532 0130 00", ["DE89 3704 0044 0532 0130 00"]),
        ("iban de89 3704 0044 0532 0130 00", ["de89 3704 0044 0532 0130 00"]),
        ("DE89-3704-0044-0532-0130-00 please", ["DE89-3704-0044-0532-0130-00"]),
        ("GB82 WEST 1234 5698 7654 32", ["GB82 WEST 1234 5698 7654 32"]),
        ("NL91 ABNA 0417 1643 00", ["NL91 ABNA 0417 1643 00"]),
        ("FR14 2004 1010 0505 0001 3M02 606", ["FR14 2004 1010 0505 0001 3M02 606"]),
        ("BE68 5390 0754 7034 BIC GEBABEBB", ["BE68 5390 0754 7034"]),
        (
            "ES91 2100 0418 4502 0005 1332, IT60 X054 2811 1010 0000 0123 456",
            [
                "ES91 2100 0418 4502 0005 1332",
                "IT60 X054 2811 1010 0000 0123 456",
            ],
        ),
    ],
)
def test_ibans_grouped_any_way(text, expected):
    assert found(text, "iban") == expected


@pytest.mark.parametrize(
    "text",
    ["DE89 3704 0044 0532 0130 01", "AB12 3456 7890 1234", "ISO 9001 2015 certified"],
)
def test_iban_lookalikes_are_left_alone(text):
    assert found(text, "iban") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("card 4111 1111 1111 1111 exp 12/25", ["4111 1111 1111 1111"]),
        ("1001\t4111111111111111\t12/25\t19.99", ["4111111111111111"]),  # a TSV row
        ("qty 12 4111 1111 1111 1111", ["4111 1111 1111 1111"]),
        ("4111 1111 1111 1111 123", ["4111 1111 1111 1111"]),
        ("amex 3782 822463 10005", ["3782 822463 10005"]),
        ("4111.1111.1111.1111", ["4111.1111.1111.1111"]),
    ],
)
def test_cards_among_other_numbers(text, expected):
    assert found(text, "credit_card") == expected


def test_a_luhn_run_inside_an_iban_is_the_iban():
    text = "pay to DE39 7069 0059 2922 4469 62 today"  # 7069 0059 2922 4469 passes Luhn

    assert found(text, "credit_card") == ["7069 0059 2922 4469"]  # alone, it looks like a card
    assert found_with_all(text) == [("iban", "DE39 7069 0059 2922 4469 62")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SSN 219-09-9999.", ["219-09-9999"]),
        ("SSN 401687488", ["401687488"]),  # a bare number right after its label
        ("ssn: 401687488", ["401687488"]),
        ("Social Security No. 401 68 7488", ["401 68 7488"]),
    ],
)
def test_ssns(text, expected):
    assert found(text, "ssn") == expected


@pytest.mark.parametrize(
    "text",
    [
        "SKU 405-41-7800-Z",
        "zip 941031234",  # a bare nine digits without its label
        "order 401687488",
        "000-12-3456",
        "666-12-3456",
        "123-00-4567",
    ],
)
def test_ssn_lookalikes_are_left_alone(text):
    assert found(text, "ssn") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SSN 219-09-9999", ["219-09-9999"]),  # US
        ("ITIN 912-70-1234", ["912-70-1234"]),
        ("NI number AB123456C", ["AB123456C"]),  # GB
        ("NINO: AB 12 34 56 C", ["AB 12 34 56 C"]),
        ("Steuer-ID 36574261809", ["36574261809"]),  # DE
        ("numéro de sécurité sociale 1 85 12 78 006 084 09", ["1 85 12 78 006 084 09"]),  # FR
        ("DNI 12345678Z", ["12345678Z"]),  # ES
        ("NIE X1234567L", ["X1234567L"]),
        ("codice fiscale RSSMRA85T10A562S", ["RSSMRA85T10A562S"]),  # IT
        ("BSN 111222333", ["111222333"]),  # NL
        ("burgerservicenummer 1112.22.333", ["1112.22.333"]),
    ],
)
def test_national_ids_by_country(text, expected):
    assert found(text, "national_id") == expected


@pytest.mark.parametrize(
    "text",
    [
        "Steuer-ID 36574261808",  # check digit off by one
        "DNI 12345678A",
        "codice fiscale RSSMRA85T10A562T",
        "111222333",  # a valid BSN checksum, but no label: order numbers pass 1 in 11
        "BSN 111222334",
        "NI number BG123456C",  # prefixes never issued
        "SKU 405-41-7800-Z",
    ],
)
def test_national_id_lookalikes_are_left_alone(text):
    assert found(text, "national_id") == []


def test_national_id_countries_are_chosen():
    assert found("DNI 12345678Z", "national_id", id_countries=["ES"]) == ["12345678Z"]
    assert found("DNI 12345678Z", "national_id", id_countries=["DE"]) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("from 10.0.0.1.", ["10.0.0.1"]),
        ("from 192.168.001.010", ["192.168.001.010"]),
    ],
)
def test_ipv4(text, expected):
    assert found(text, "ipv4") == expected


@pytest.mark.parametrize(
    "text", ["version 3.6.5.2418", "build 1.2.3.4.5", "version 10.2.3.4", "999.1.1.1"]
)
def test_version_numbers_are_not_ipv4(text):
    assert found(text, "ipv4") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("client fe80::1%eth0 connected", ["fe80::1%eth0"]),
        ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", ["2001:0db8:85a3:0000:0000:8a2e:0370:7334"]),
        ("src 2001:db8::8a2e:370:7334, dst ::1", ["2001:db8::8a2e:370:7334", "::1"]),
        ("mapped ::ffff:192.0.2.128", ["::ffff:192.0.2.128"]),
    ],
)
def test_ipv6(text, expected):
    assert found(text, "ipv6") == expected


@pytest.mark.parametrize("text", ["at 14:22:05", "MAC 00:1A:2B:3C:4D:5E", "ratio 3:2"])
def test_ipv6_lookalikes_are_left_alone(text):
    assert found(text, "ipv6") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("DOB: 12/03/1985", ["12/03/1985"]),  # en
        ("born on March 12, 1985", ["March 12, 1985"]),
        ("geb. 5. März 1970 in Köln", ["5. März 1970"]),  # de
        ("Geburtsdatum 1970-03-05", ["1970-03-05"]),
        ("né le 3 avril 1990 à Lyon", ["3 avril 1990"]),  # fr
        ("date de naissance : 03/04/1990", ["03/04/1990"]),
        ("fecha de nacimiento 01/02/1980", ["01/02/1980"]),  # es
        ("nacida el 1 de febrero de 1980", ["1 de febrero de 1980"]),
        ("nato il 12/12/1960 a Roma", ["12/12/1960"]),  # it
        ("data di nascita 12.12.1960", ["12.12.1960"]),
        ("geboren op 4 mei 1975", ["4 mei 1975"]),  # nl
        ("geboortedatum 04-05-1975", ["04-05-1975"]),
    ],
)
def test_dates_of_birth_next_to_their_cue(text, expected):
    assert found(text, "date_of_birth") == expected


@pytest.mark.parametrize(
    "text",
    ["Invoice date 12.03.2024", "Lieferdatum: 12.03.2024", "shipped 1985-03-12", "le 3 avril 1990"],
)
def test_dates_alone_are_not_dates_of_birth(text):
    assert found(text, "date_of_birth") == []


@pytest.mark.parametrize(
    ("detector", "text", "expected"),
    [
        # The label right before raises a candidate over the line...
        ("phone", "Tel. 030 123456", ["030 123456"]),
        ("ssn", "SSN 401687488", ["401687488"]),
        ("national_id", "BSN 111222333", ["111222333"]),
        # ...and a word that says it is something else lowers it below.
        ("phone", "invoice 4155552671", []),
        ("phone", "PO 4155552671", []),
        ("ipv4", "version 10.2.3.4", []),
        # The closer cue decides.
        ("phone", "Tel. for order 4155552671", []),
        ("phone", "order 17, Tel. 4155552671", ["4155552671"]),
    ],
)
def test_context_words_move_confidence(detector, text, expected):
    assert found(text, detector) == expected


def test_every_span_has_type_confidence_and_validation():
    spans = find_spans("IBAN DE89 3704 0044 0532 0130 00, Tel. 030 1234567", ["iban", "phone"])

    assert [(span.type, span.validated) for span in spans] == [("iban", True), ("phone", False)]
    assert all(0.5 <= span.confidence <= 1 for span in spans)


RULE_ORDER_TEXT = (
    "SSN 219-09-9999; card 4111 1111 1111 1111; IBAN DE39 7069 0059 2922 4469 62; "
    "mail jo@example.com; Tel. +49 30 1234567; from 10.0.0.1; DOB: 12/03/1985"
)


def test_rule_order_decides_the_action_never_what_is_found():
    names = ["iban", "credit_card", "phone", "ssn", "national_id", "email", "ipv4"]
    seen = set()
    for order in itertools.permutations(names, len(names)):
        if len(seen) > 40:
            break
        rules = [Rule(name, "mask") for name in order]
        result = redact({"t": RULE_ORDER_TEXT}, rules, hash_key=KEY)
        seen.add(tuple((span["start"], span["end"], span["type"]) for span in result.spans["t"]))
        assert "DE[" not in result.fields["t"]  # the IBAN is never cut by the card detector
    assert len(seen) == 1


def test_the_first_rule_whose_detector_found_a_span_decides_its_action():
    text = "SSN 219-09-9999"

    first = redact(
        {"t": text}, [Rule("ssn", "tokenize"), Rule("national_id", "mask")], hash_key=KEY
    )
    second = redact(
        {"t": text}, [Rule("national_id", "mask"), Rule("ssn", "tokenize")], hash_key=KEY
    )

    assert first.fields["t"] == "SSN <SSN_1>"
    assert second.fields["t"] == "SSN [REDACTED NATIONAL_ID]"
    assert first.spans["t"][0]["type"] == second.spans["t"][0]["type"] == "ssn"


def test_a_regex_rule_takes_part_in_the_same_pass():
    rules = [Rule("phone", "mask"), Rule("regex", "mask", name="customer", pattern=r"K-\d{10}")]

    result = redact({"t": "customer K-4155552671, Tel. 030 1234567"}, rules, hash_key=KEY)

    assert result.fields["t"] == "customer [REDACTED CUSTOMER], Tel. [REDACTED PHONE]"
    assert [span["type"] for span in result.spans["t"]] == ["customer", "phone"]


def test_pattern_detectors_never_import_spacy():
    code = (
        "import sys; from connectors.detectors import find_spans, DETECTORS; "
        "names = [n for n, d in DETECTORS.items() if not d.uses_ner]; "
        "find_spans('Tel. 030 1234567, jo@example.com', names); "
        "print('spacy' in sys.modules)"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "False"
