"""The pattern detectors' shortcuts against the slower way each replaced: on generated inputs,
none turns away a value the slow way takes, and none finds one it would not."""

import ipaddress
import json
import random
import re
from pathlib import Path

import pytest
from stdnum import iban as stdnum_iban
from stdnum import luhn as stdnum_luhn
from stdnum import numdb

from connectors.detectors import context, national_ids, network, patterns
from connectors.detectors.base import DEFAULT_ID_COUNTRIES, Options, Scan

RNG_SEED = 11


def test_ipv4_octets_are_checked_as_ipaddress_checks_them():
    rng = random.Random(RNG_SEED)
    texts = []
    for _ in range(3000):
        octets = [
            rng.choice(
                [str(rng.randint(0, 255)), str(rng.randint(0, 999)), f"{rng.randint(0, 99):03d}"]
            )
            for _ in range(4)
        ]
        texts.append(f"host {'.'.join(octets)} up")

    def by_ipaddress(text: str) -> list[tuple[int, int]]:
        found = []
        for match in network.IPV4.finditer(text):
            try:
                ipaddress.IPv4Address(".".join(str(int(part)) for part in match.group().split(".")))
            except ValueError:
                continue
            found.append(match.span())
        return found

    expected = [by_ipaddress(text) for text in texts]
    assert any(expected) and not all(expected)
    assert [
        [span[:2] for span in _spans(network._ipv4_in(t, (0, len(t))))] for t in texts
    ] == expected


def _spans(found) -> list[tuple[int, int]]:
    return [(span.start, span.end) for span in found]


def _ibans(count: int) -> list[str]:
    """Valid IBANs of many countries, and the same with a character changed or swapped."""
    rng = random.Random(RNG_SEED)
    shapes = {
        "DE": "n18",
        "FR": "n10c11n2",
        "GB": "a4n14",
        "NL": "a4n10",
        "ES": "n20",
        "IT": "a1n10c12",
    }
    shapes |= {"BE": "n12", "AT": "n16", "CH": "n5c12", "PL": "n24"}

    def bban(shape: str) -> str:
        out = []
        for kind, size in re.findall(r"([anc])(\d+)", shape):
            alphabet = {"a": "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "n": "0123456789"}.get(
                kind, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
            )
            out.extend(rng.choice(alphabet) for _ in range(int(size)))
        return "".join(out)

    found = []
    for _ in range(count):
        country = rng.choice(sorted(shapes))
        body = bban(shapes[country])
        number = country + stdnum_iban.calc_check_digits(country + "00" + body) + body
        change = rng.random()
        if change < 0.3:
            index = rng.randrange(4, len(number))
            number = number[:index] + rng.choice("0123456789") + number[index + 1 :]
        elif change < 0.5:
            index = rng.randrange(4, len(number) - 1)
            number = number[:index] + number[index + 1] + number[index] + number[index + 2 :]
        if rng.random() < 0.3:
            number = number.lower()
        found.append(number)
    return found


def test_the_iban_check_digits_never_turn_away_an_iban_stdnum_takes():
    numbers = _ibans(4000)
    valid = [stdnum_iban.is_valid(number, check_country=False) for number in numbers]
    assert any(valid) and not all(valid)
    for number, is_valid in zip(numbers, valid, strict=True):
        if is_valid:
            assert patterns._mod_97(number), number


def test_iban_country_formats_are_read_as_stdnum_reads_them():
    # Every country of stdnum's registry, and codes it does not know, with BBANs of the right
    # shape and of shapes one character off; the check digits made to hold, as the detector
    # asks only then.
    rng = random.Random(RNG_SEED)
    countries = [line[:2] for line in _registry_lines()]
    numbers = []
    for country in [*countries, "XX", "QQ", "AA"]:
        structure = (numdb.get("iban").info(country)[0][1] or {}).get("bban", "4!a12!n")
        for _ in range(12):
            body = []
            for size, kind in re.findall(r"(\d+)!([nac])", structure):
                size = int(size) + (rng.choice([-1, 1]) if rng.random() < 0.15 else 0)
                if rng.random() < 0.1:
                    kind = rng.choice("nac")
                alphabet = {"n": "0123456789", "a": "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}.get(
                    kind, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                )
                body.extend(rng.choice(alphabet) for _ in range(max(size, 0)))
            bban = "".join(body)
            number = country + stdnum_iban.calc_check_digits(country + "00" + bban) + bban
            numbers.append(number.lower() if rng.random() < 0.3 else number)
    numbers += [number for number in _ibans(2000) if patterns._mod_97(number)]
    expected = [stdnum_iban.is_valid(number, check_country=False) for number in numbers]
    assert sum(expected) > 500 and not all(expected)
    assert [patterns._has_country_format(number) for number in numbers] == expected


def _registry_lines() -> list[str]:
    path = Path(stdnum_iban.__file__).with_name("iban.dat")
    return [line for line in path.read_text().splitlines() if line and not line.startswith("#")]


def _labelled_ids() -> list[str]:
    """The national IDs and SSNs of the benchmark's data set."""
    values = []
    for path in sorted((Path(__file__).parent.parent / "bench/data/redaction").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                labels = json.loads(line)["labels"]
                values += [label["value"] for label in labels if label["type"] in IDS]
    return values


IDS = ("national_id", "ssn")


def _id_texts(count: int) -> list[str]:
    """Real IDs, some with a digit changed, and digit runs shaped like IDs, dates, phone
    numbers and order numbers, with the letters and separators around them the formats see."""
    rng = random.Random(RNG_SEED)
    pieces = ["SSN", "BSN", "DNI", "NIE", "IdNr", "NINO", "n°", "PO", "", "", "X", "AB", "Y-"]
    real = _labelled_ids()
    texts = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.4:
                value = rng.choice(real)
                if rng.random() < 0.3:
                    index = rng.randrange(len(value))
                    value = value[:index] + rng.choice("0123456789 ") + value[index + 1 :]
                parts.append(f"{rng.choice(pieces)} {value}")
                continue
            digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(5, 16)))
            separator = rng.choice(["", " ", "-", ".", "/", " - "])
            groups = [
                digits[index : index + rng.randint(2, 4)] for index in range(0, len(digits), 3)
            ]
            run = separator.join(group for group in groups if group)
            if rng.random() < 0.2:
                run = run[:6] + rng.choice(["2A", "2B"]) + run[6:]
            parts.append(f"{rng.choice(pieces)} {run}{rng.choice(['', 'Z', 'L', ' C', '-Z', ','])}")
        texts.append(" ".join(parts))
    return texts


def _formats_everywhere(scan: Scan, names: list[str], kind: str, least: int = 6):
    """scan_formats as it was: every format over the whole window of each run."""
    names = [
        name
        for name in names
        if (cues := national_ids._BY_NAME[name].cues) is None or scan.mentions(*cues)
    ]
    text, after = scan.text, 0
    numeric = tuple(name for name in names if name not in national_ids.INTERLEAVED)
    pattern = re.compile(national_ids.BEGINNING + national_ids.combined(numeric).pattern)
    for run_start, run_end in scan.runs(least):
        start = max(0, run_start - national_ids.AROUND, after)
        for match in pattern.finditer(text, start, min(len(text), run_end + national_ids.AFTER)):
            if match.start() < run_end:
                after = match.end()
                yield from national_ids._validated(scan, match, numeric, kind)


@pytest.mark.parametrize("countries", [DEFAULT_ID_COUNTRIES, ("US",), ("NL", "ES"), ("FR",)])
def test_national_ids_are_found_as_when_every_format_is_tried_everywhere(countries):
    options = Options(id_countries=countries)
    names = [
        format.name
        for format in national_ids.FORMATS
        if format.country in countries and format.name not in national_ids.INTERLEAVED
    ]
    texts = _id_texts(3000)
    expected = [
        list(_formats_everywhere(Scan(text, options), names, "national_id")) for text in texts
    ]
    assert sum(map(len, expected)) > 100  # the sample holds IDs of these countries
    found = [list(national_ids.scan_formats(Scan(t, options), names, "national_id")) for t in texts]
    assert found == expected


def _adjustment_as_it_was(text: str, start: int, kind: str) -> float:
    """The word part of context.adjustment before it scanned the words once."""
    raising, lowering = (
        context.RAISING.get(kind, frozenset()),
        context.LOWERING.get(kind, frozenset()),
    )
    words = context.WORD.findall(text[max(0, start - context.RAISE_WINDOW) : start].lower())
    if not words:
        return 0.0
    near = len(context.WORD.findall(text[max(0, start - context.LOWER_WINDOW) : start]))
    for last in range(len(words) - 1, -1, -1):
        phrases = [words[last]]
        if words[last] in context._ENDS_LONGER_CUE:
            phrases += [
                " ".join(words[last - length + 1 : last + 1])
                for length in range(2, min(context.LONGEST_CUE, last + 1) + 1)
            ]
        for phrase in phrases:
            if phrase in raising:
                return context.RAISE_BY
            if phrase in lowering and len(words) - last <= near:
                return -context.LOWER_BY
    return 0.0


def test_context_words_weigh_as_when_they_were_found_twice():
    rng = random.Random(RNG_SEED)
    words = ["tel", "PO", "order no", "Art.-Nr.", "invoice", "call", "the", "ssn", "card", "ip"]
    words += ["Bestellnummer", "ref", "x", "purchase order", "de", "número", "Tél."]
    checked = moved = 0
    for _ in range(4000):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(0, 8)))
        text += rng.choice([" ", ": ", "", "#", " - "]) + "0301234567"
        start = text.index("0301234567")
        for kind in ("phone", "credit_card", "ssn", "national_id", "ipv4"):
            if kind == "phone" and context.TIME_BEFORE.search(text, max(0, start - 9), start):
                continue
            expected = _adjustment_as_it_was(text, start, kind)
            assert context.adjustment(text, start, start + 10, kind) == expected, (text, kind)
            checked += 1
            moved += expected != 0
    assert checked > 10000 and moved > 1000


def _cells_as_they_were(line: str, delimiter: str) -> list[tuple[int, int]]:
    spans, start, quoted = [], 0, False
    for index, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == delimiter and not quoted:
            spans.append((start, index))
            start = index + 1
    spans.append((start, len(line)))
    return spans


def test_table_cells_are_split_as_the_quote_aware_loop_splits_them():
    rng = random.Random(RNG_SEED)
    for _ in range(3000):
        line = "".join(rng.choice('ab1 ,;|\t"') for _ in range(rng.randint(0, 30)))
        for delimiter in context.DELIMITERS:
            assert context.cells(line, delimiter) == _cells_as_they_were(line, delimiter), line


@pytest.mark.parametrize("countries", [DEFAULT_ID_COUNTRIES, ("US",)])
def test_ssns_are_found_as_when_every_format_is_tried_everywhere(countries):
    # The labels a bare number needs are asked only of a text with a run long enough for it.
    options = Options(id_countries=countries)
    texts = _id_texts(3000)
    expected = [
        list(_formats_everywhere(Scan(text, options), ["ssn", "ssn_bare"], "ssn", least=9))
        for text in texts
    ]
    assert sum(map(len, expected)) > 50
    assert [list(national_ids.find_ssns(Scan(text, options))) for text in texts] == expected


def test_codici_fiscali_are_found_as_when_the_format_scans_every_text():
    rng = random.Random(RNG_SEED)
    real = [value for value in _labelled_ids() if len(value) == 16 and value[:6].isalpha()]
    assert real
    texts = []
    for _ in range(3000):
        value = rng.choice(real)
        if rng.random() < 0.4:
            index = rng.randrange(len(value))
            value = value[:index] + rng.choice("0123456789AZ- ") + value[index + 1 :]
        if rng.random() < 0.3:
            value = value.lower()
        texts.append(
            f"{rng.choice(['CF', 'codice fiscale:', '', 'x'])}{rng.choice([' ', ''])}{value}"
        )
    pattern = national_ids.combined(national_ids.INTERLEAVED)
    options = Options(id_countries=("IT",))
    expected = [
        [
            span
            for match in pattern.finditer(text)
            for span in national_ids._validated(
                Scan(text, options), match, national_ids.INTERLEAVED, "national_id"
            )
        ]
        for text in texts
    ]
    assert sum(map(len, expected)) > 1000 and not all(expected)
    found = [list(national_ids.find_national_ids(Scan(text, options))) for text in texts]
    assert found == expected


def test_a_time_next_to_a_number_is_seen_as_the_two_patterns_see_it():
    rng = random.Random(RNG_SEED)
    checked = near = 0
    for _ in range(20000):
        text = "".join(rng.choice("0123456789:: T-.x") for _ in range(rng.randint(0, 24)))
        start = rng.randint(0, len(text))
        end = rng.randint(start, len(text))
        expected = bool(
            context.TIME_AFTER.match(text, end)
            or context.TIME_BEFORE.search(text, max(0, start - 9), start)
        )
        assert context._next_to_a_time(text, start, end) == expected, (text, start, end)
        checked += 1
        near += expected
    assert near > 300 and checked - near > 10000


def test_luhn_is_checked_as_stdnum_checks_it():
    rng = random.Random(RNG_SEED)
    valid = 0
    for _ in range(20000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 20)))
        expected = stdnum_luhn.checksum(digits) == 0
        assert patterns.luhn_is_valid(digits) == expected, digits
        valid += expected
    assert 1000 < valid < 3000


def test_ipv4_addresses_are_looked_for_as_in_every_dotted_window():
    rng = random.Random(RNG_SEED)
    options = Options()
    found = 0
    for _ in range(10000):
        pieces = []
        for _ in range(rng.randint(1, 4)):
            groups = [str(rng.randint(0, 300)) for _ in range(rng.randint(1, 6))]
            pieces.append(rng.choice([".", ". ", "-", " "]).join(groups))
        text = "".join(piece + rng.choice([" ", "x", ".", ". ", "/", ":"]) for piece in pieces)
        scan = Scan(text, options)
        expected = [
            span
            for window in scan.windows(4, before=0, after=2)
            if text.count(".", *window) >= 3
            for span in network._ipv4_in(text, window)
        ]
        assert list(network.find_ipv4(Scan(text, options))) == expected, text
        found += len(expected)
    assert found > 200
