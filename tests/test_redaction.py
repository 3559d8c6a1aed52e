"""Redaction: detectors (true and false positives), actions, fail-closed, tokenize and restore."""

import pytest

from connectors import redaction
from connectors.errors import RedactionError
from connectors.redaction import Rule, redact, restore, validate_rule

KEY = b"test-key"


def masked(text: str, detector: str) -> str:
    return redact({"t": text}, [Rule(detector, "mask")], hash_key=KEY).fields["t"]


@pytest.mark.parametrize(
    ("detector", "text", "expected"),
    [
        ("ssn", "SSN 219-09-9999.", "SSN [REDACTED SSN]."),
        ("credit_card", "card 4111 1111 1111 1111 ok", "card [REDACTED CREDIT_CARD] ok"),
        ("credit_card", "card 4111-1111-1111-1111", "card [REDACTED CREDIT_CARD]"),
        ("email", "mail a.b+c@example.co.uk now", "mail [REDACTED EMAIL] now"),
        ("phone", "call +1 415-555-0100 today", "call [REDACTED PHONE] today"),
        ("phone", "call (030) 1234 5678", "call [REDACTED PHONE]"),
        ("iban", "IBAN DE89 3704 0044 0532 0130 00", "IBAN [REDACTED IBAN]"),
        ("iban", "GB82WEST12345698765432", "[REDACTED IBAN]"),
        ("ipv4", "from 10.0.0.1.", "from [REDACTED IPV4]."),
    ],
)
def test_detectors_find_what_they_are_for(detector, text, expected):
    assert masked(text, detector) == expected


@pytest.mark.parametrize(
    ("detector", "text"),
    [
        ("ssn", "000-12-3456"),
        ("ssn", "666-12-3456"),
        ("ssn", "912-12-3456"),
        ("ssn", "123-00-4567"),
        ("credit_card", "4111 1111 1111 1112"),  # fails the Luhn check
        ("credit_card", "order 1234"),
        ("iban", "DE89 3704 0044 0532 0130 01"),  # fails the mod-97 check
        ("ipv4", "999.1.1.1"),
        ("ipv4", "version 1.2.3"),
        ("phone", "219-09-9999"),  # an SSN is not a phone number
        ("phone", "192.168.100.200"),
        ("phone", "on 2024-05-01"),
        ("email", "not an @ address"),
    ],
)
def test_detectors_leave_lookalikes_alone(detector, text):
    assert masked(text, detector) == text


def test_hash_is_keyed_and_stable():
    rules = [Rule("ssn", "hash")]
    first = redact({"t": "219-09-9999"}, rules, hash_key=KEY).fields["t"]
    again = redact({"t": "219-09-9999"}, rules, hash_key=KEY).fields["t"]
    other_key = redact({"t": "219-09-9999"}, rules, hash_key=b"other").fields["t"]

    assert first == again
    assert first != other_key
    assert first.startswith("[SSN ") and len(first) == len("[SSN ]") + 12
    assert "219" not in first


def test_drop_removes_matches_and_whole_fields():
    result = redact(
        {"note": "ssn 219-09-9999", "dob": "1970-01-01"},
        [Rule("ssn", "drop"), Rule("field", "drop", field="dob")],
        hash_key=KEY,
    )

    assert result.fields == {"note": "ssn "}
    assert result.hits == {"SSN": 1, "DOB": 1}


def test_regex_and_field_rules():
    result = redact(
        {"note": "order ACME-12345 shipped", "name": "Ada Lovelace"},
        [
            Rule("regex", "mask", name="order id", pattern=r"ACME-\d+"),
            Rule("field", "tokenize", field="name"),
        ],
        hash_key=KEY,
    )

    assert result.fields == {"note": "order [REDACTED ORDER_ID] shipped", "name": "<NAME_1>"}
    assert result.tokens == {"<NAME_1>": "Ada Lovelace"}


def test_rules_reach_nested_values_and_do_not_mutate_the_input():
    fields = {"customer": {"ssns": ["219-09-9999", "078-05-1120"]}, "count": 2}

    result = redact(fields, [Rule("ssn", "tokenize")], hash_key=KEY)

    assert result.fields == {"customer": {"ssns": ["<SSN_1>", "<SSN_2>"]}, "count": 2}
    assert fields["customer"]["ssns"][0] == "219-09-9999"
    assert result.hits == {"SSN": 2}


def test_same_value_gets_the_same_placeholder():
    result = redact(
        {"a": "219-09-9999", "b": "again 219-09-9999"}, [Rule("ssn", "tokenize")], hash_key=KEY
    )

    assert result.fields == {"a": "<SSN_1>", "b": "again <SSN_1>"}
    assert result.tokens == {"<SSN_1>": "219-09-9999"}


def test_a_failing_detector_fails_closed_without_quoting_the_data(monkeypatch):
    class Exploding:
        def sub(self, *args):
            raise RuntimeError("boom 219-09-9999")

    monkeypatch.setitem(redaction.DETECTORS, "ssn", redaction.Detector(Exploding()))

    with pytest.raises(RedactionError) as caught:
        redact({"t": "219-09-9999"}, [Rule("ssn", "mask")], hash_key=KEY)

    assert "219-09-9999" not in str(caught.value)
    assert caught.value.permanent


def test_restore_puts_values_back_and_reports_dropped_and_invented():
    tokens = {"<SSN_1>": "219-09-9999", "<EMAIL_1>": "a@b.example"}

    value, report = restore({"reason": "ok for <SSN_1>", "list": ["<PERSON_3>"]}, tokens)

    assert value == {"reason": "ok for 219-09-9999", "list": ["<PERSON_3>"]}
    assert report.as_dict() == {
        "restored": ["<SSN_1>"],
        "dropped": ["<EMAIL_1>"],
        "invented": ["<PERSON_3>"],
    }


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (Rule("dna", "mask"), "unknown detector"),
        (Rule("ssn", "shred"), "unknown action"),
        (Rule("regex", "mask"), "needs a pattern"),
        (Rule("regex", "mask", pattern="("), "not a valid regular expression"),
        (Rule("regex", "mask", pattern="x*"), "matches an empty string"),
        (Rule("field", "mask"), "needs the name"),
    ],
)
def test_validate_rule_explains_what_is_wrong(rule, message):
    with pytest.raises(ValueError, match=message):
        validate_rule(rule)
