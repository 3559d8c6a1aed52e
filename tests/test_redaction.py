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
    ("detector", "text", "expected"),
    [
        # Found by a review of real legacy data: each of these used to reach the prompt.
        ("credit_card", "4111 1111 1111 1111 12/25", "[REDACTED CREDIT_CARD] 12/25"),
        ("credit_card", "4111 1111 1111 1111 123", "[REDACTED CREDIT_CARD] 123"),
        ("credit_card", "qty 12 4111 1111 1111 1111", "qty 12 [REDACTED CREDIT_CARD]"),
        ("credit_card", "4111.1111.1111.1111", "[REDACTED CREDIT_CARD]"),
        ("credit_card", "4111\u00a01111\u00a01111\u00a01111", "[REDACTED CREDIT_CARD]"),
        ("credit_card", "4111\u20131111\u20131111\u20131111", "[REDACTED CREDIT_CARD]"),
        ("phone", "call 4155552671", "call [REDACTED PHONE]"),
        ("phone", "call +14155552671", "call [REDACTED PHONE]"),
        ("phone", "call 1-415-555-2671", "call [REDACTED PHONE]"),
        ("phone", "call 415/555-2671", "call [REDACTED PHONE]"),
        ("phone", "Tel. 0171 1234567", "Tel. [REDACTED PHONE]"),
        ("ssn", "219 09 9999", "[REDACTED SSN]"),
        ("ssn", "219.09.9999", "[REDACTED SSN]"),
        ("ssn", "SSN219-09-9999", "SSN[REDACTED SSN]"),
        ("ssn", "219\u200b-09-9999", "[REDACTED SSN]"),  # a zero-width space inside
        ("iban", "BE68 5390 0754 7034 BIC GEBABEBB", "[REDACTED IBAN] BIC GEBABEBB"),
        ("iban", "de89 3704 0044 0532 0130 00", "[REDACTED IBAN]"),
        ("email", "jos\u00e9@b\u00fccher.de", "[REDACTED EMAIL]"),
        ("ipv4", "from 192.168.001.010", "from [REDACTED IPV4]"),
    ],
)
def test_detectors_find_what_real_exports_look_like(detector, text, expected):
    assert masked(text, detector) == expected


def test_numbers_and_dict_keys_are_redacted_too():
    fields = {"card": 4111111111111111, "contacts": {"jo@example.com": "primary"}, "n": 7}

    result = redact(fields, [Rule("credit_card", "mask"), Rule("email", "mask")], hash_key=KEY)

    assert result.fields == {
        "card": "[REDACTED CREDIT_CARD]",
        "contacts": {"[REDACTED EMAIL]": "primary"},
        "n": 7,
    }


def test_pii_split_across_fields_is_caught_in_the_rendered_prompt():
    fields = {"area": "415", "number": "555-2671"}

    result = redact(
        fields,
        [Rule("phone", "mask")],
        hash_key=KEY,
        prompt=lambda safe: f"Call ({safe['area']}) {safe['number']} now",
    )

    assert result.fields == fields  # neither piece is a phone number
    assert result.prompt == "Call [REDACTED PHONE] now"
    assert result.hits == {"PHONE": 1}


def test_a_placeholder_in_the_input_cannot_steer_where_a_value_is_restored():
    fields = {"note": "customer wrote <SSN_1> in the form", "ssn": "219-09-9999"}

    result = redact(fields, [Rule("ssn", "tokenize")], hash_key=KEY)
    restored, _ = restore({"summary": result.fields["note"]}, result.tokens)

    assert result.fields["ssn"] == "<SSN_1>"
    assert "219-09-9999" not in restored["summary"]


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
    def exploding(scan):
        raise RuntimeError(f"boom {scan.text}")

    monkeypatch.setitem(redaction.DETECTORS, "ssn", redaction.Detector(exploding))

    with pytest.raises(RedactionError) as caught:
        redact({"t": "219-09-9999"}, [Rule("ssn", "mask")], hash_key=KEY)

    assert "219-09-9999" not in str(caught.value)
    assert "the ssn detector failed (RuntimeError)" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert caught.value.permanent


def test_the_prompt_scan_fails_closed_too(monkeypatch):
    calls = []

    def exploding_second_time(scan):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError(scan.text)
        return iter(())

    monkeypatch.setitem(redaction.DETECTORS, "ssn", redaction.Detector(exploding_second_time))

    with pytest.raises(RedactionError) as caught:
        redact({"t": "x"}, [Rule("ssn", "mask")], hash_key=KEY, prompt=lambda f: "219-09-9999")

    assert "219-09-9999" not in str(caught.value)


def test_spans_name_type_and_action_with_offsets_into_the_input():
    text = "ssn 219\u200b-09-9999 or jo@example.com"  # an invisible character inside the SSN

    result = redact({"t": text}, [Rule("ssn", "tokenize"), Rule("email", "mask")], hash_key=KEY)

    assert result.fields["t"] == "ssn <SSN_1> or [REDACTED EMAIL]"
    assert result.spans == {
        "t": [
            {"start": 4, "end": 16, "type": "ssn", "action": "tokenize"},
            {"start": 20, "end": 34, "type": "email", "action": "mask"},
        ]
    }
    assert text[4:16] == "219\u200b-09-9999"


def test_spans_in_nested_values_and_keys_say_where_they_are():
    fields = {
        "customer": {"contacts": [{"jo@example.com": "primary"}], "ssn": 219099999},
        "name": "Ada",
    }

    result = redact(
        fields, [Rule("email", "mask"), Rule("field", "hash", field="name")], hash_key=KEY
    )

    assert result.fields["customer"] == {
        "contacts": [{"[REDACTED EMAIL]": "primary"}],
        "ssn": 219099999,  # a bare nine digits without its label is not an SSN
    }
    assert result.spans["customer"] == [
        {
            "start": 0,
            "end": 14,
            "type": "email",
            "action": "mask",
            "path": ["contacts", 0, "[REDACTED EMAIL]"],
            "key": True,
        }
    ]
    assert result.spans["name"] == [{"start": 0, "end": 3, "type": "field", "action": "hash"}]
    assert list(result.fields) == ["customer", "name"]


def test_the_prompt_scan_leaves_what_redaction_wrote_alone():
    result = redact(
        {"a": "jo@example.com"},
        [Rule("email", "hash"), Rule("phone", "mask")],
        hash_key=b"k",
        prompt=lambda safe: f"mail {safe['a']}, Tel. 030 1234567",
    )

    assert result.prompt.startswith("mail [EMAIL ")
    assert result.prompt.endswith(", Tel. [REDACTED PHONE]")
    assert [span["type"] for span in result.prompt_spans] == ["phone"]


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
