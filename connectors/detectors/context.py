"""Context words: a label before a value raises a candidate's confidence, a word that says
"this number is something else" lowers it. The closer of the two decides.

Six languages: English, German, French, Spanish, Italian, Dutch.
"""

import re
from collections.abc import Callable, Iterator
from functools import lru_cache

RAISE_BY = 0.35
LOWER_BY = 0.4
RAISE_WINDOW = 32  # characters before the candidate
LOWER_WINDOW = 20

# Cues are compared word by word (letters only, lower case): "P.O." is "p o", "Art.-Nr." is
# "art nr", and a cue may be glued to the number after it ("SSN401687488", "Tel.:030").
WORD = re.compile(r"[^\W\d_]+")
LONGEST_CUE = 3  # words


def _cues(*phrases: str) -> frozenset[str]:
    return frozenset(" ".join(WORD.findall(phrase.lower())) for phrase in phrases)


NUMBER_IS_SOMETHING_ELSE = _cues(
    *[
        "po",
        "p.o.",
        "order",
        "order no",
        "ord",
        "purchase order",
        "invoice",
        "inv",
        "sku",
        "part",
        "part no",
        "item",
        "article",
        "art.-nr",
        "art.nr",
        "artnr",
        "ref",
        "reference",
        "ticket",
        "case",
        "tracking",
        "batch",
        "lot",
        "serial",
        "version",
        "ver",
        "v",
        "build",
        "release",
        "rev",
        "bestellung",
        "bestellnr",
        "bestellnummer",
        "auftrag",
        "auftragsnr",
        "auftragsnummer",
        "rechnung",
        "rechnungsnr",
        "rechnungsnummer",
        "lieferschein",
        "commande",
        "bon de commande",
        "facture",
        "pedido",
        "factura",
        "albarán",
        "ordine",
        "fattura",
        "bestelling",
        "bestelnummer",
        "factuur",
        "factuurnummer",
    ]
)
RAISING: dict[str, frozenset[str]] = {
    "ssn": _cues("ssn", "ss#", "social security", "soc sec", "soc. sec.", "itin"),
    "national_id": _cues(
        *[
            "ssn",
            "social security",
            "itin",
            "tin",
            "nino",
            "national insurance",
            "ni number",
            "ni no",
            "steuer-id",
            "steuerid",
            "steuer-identifikationsnummer",
            "steueridentifikationsnummer",
            "identifikationsnummer",
            "idnr",
            "tax id",
            "nir",
            "sécurité sociale",
            "securite sociale",
            "n° ss",
            "numéro ss",
            "insee",
            "dni",
            "nie",
            "nif",
            "documento",
            "codice fiscale",
            "c.f.",
            "cf",
            "bsn",
            "burgerservicenummer",
            "sofinummer",
            "personalausweis",
        ]
    ),
    "phone": _cues(
        *[
            "tel",
            "tél",
            "tfno",
            "telefon",
            "telefono",
            "teléfono",
            "telephone",
            "téléphone",
            "telefoon",
            "phone",
            "ph",
            "mobile",
            "mobil",
            "mob",
            "handy",
            "cell",
            "cellulare",
            "cellphone",
            "móvil",
            "movil",
            "portable",
            "fax",
            "gsm",
            "rufnummer",
            "call",
            "ring",
            "whatsapp",
            "anrufen",
            "appeler",
            "llamar",
            "chiamare",
            "bellen",
            "contact",
        ]
    ),
    "credit_card": _cues(
        *[
            "card",
            "carte",
            "karte",
            "tarjeta",
            "carta",
            "kaart",
            "visa",
            "mastercard",
            "amex",
            "cc",
            "pan",
            "kreditkarte",
            "creditcard",
        ]
    ),
    "iban": _cues(*["iban", "bank", "konto", "account", "compte", "cuenta", "conto"]),
    "ipv4": _cues(*["ip", "host", "addr", "address", "server", "client", "src", "dst"]),
    "ipv6": _cues(*["ip", "ipv", "host", "addr", "address", "server", "client"]),
}
LOWERING: dict[str, frozenset[str]] = {
    kind: NUMBER_IS_SOMETHING_ELSE
    for kind in ("ssn", "national_id", "phone", "credit_card", "ipv4", "address")
}

# A number next to a time of day is a timestamp, not a phone number (2024-03-12 14:22:05).
TIME_AFTER = re.compile(r"[ T]?\d{1,2}:\d{2}(?::\d{2})?\b")
TIME_BEFORE = re.compile(r"\d{1,2}:\d{2}(?::\d{2})?[ T]?$")


def _next_to_a_time(text: str, start: int, end: int) -> bool:
    """TIME_AFTER at `end` or TIME_BEFORE in the nine characters before `start`; a time holds
    a ":" within them, which is looked for first."""
    if text.find(":", end, end + 4) >= 0 and TIME_AFTER.match(text, end):
        return True
    before = max(0, start - 9)
    return (
        text.find(":", before, start) >= 0 and TIME_BEFORE.search(text, before, start) is not None
    )


# Only a word that ends a cue of several words is worth joining with the words before it.
_ENDS_LONGER_CUE = frozenset(
    phrase.rsplit(" ", 1)[1]
    for cues in (*RAISING.values(), *LOWERING.values())
    for phrase in cues
    if " " in phrase
)


# Every word of every cue, by kind: a window holding none of them holds no cue.
_CUE_WORDS: dict[str, frozenset[str]] = {
    kind: frozenset(
        word
        for phrase in (*RAISING.get(kind, ()), *LOWERING.get(kind, ()))
        for word in phrase.split()
    )
    for kind in {*RAISING, *LOWERING}
}


def adjustment(text: str, start: int, end: int, kind: str) -> float:
    """How much the words before text[start:end] move a candidate's confidence."""
    if kind == "phone" and _next_to_a_time(text, start, end):
        return -LOWER_BY
    raising, lowering = RAISING.get(kind, frozenset()), LOWERING.get(kind, frozenset())
    if "\n" in text and (header := header_of(text, start)):
        # In a table, the column's header is the label: "ssn", "Telefon", "PO".
        named = " ".join(WORD.findall(header))
        if named in raising or any(word in raising for word in named.split()):
            return RAISE_BY
        if named in lowering or any(word in lowering for word in named.split()):
            return -LOWER_BY
    words = WORD.findall(text[max(0, start - RAISE_WINDOW) : start].lower())
    if not words or _CUE_WORDS.get(kind, frozenset()).isdisjoint(words):
        return 0.0
    near = -1  # how many words the last LOWER_WINDOW characters hold, counted when needed
    # The closest cue decides: look back from the candidate.
    for last in range(len(words) - 1, -1, -1):
        word = words[last]
        phrases = (word,)
        if word in _ENDS_LONGER_CUE:
            phrases += tuple(
                " ".join(words[last - length + 1 : last + 1])
                for length in range(2, min(LONGEST_CUE, last + 1) + 1)
            )
        for phrase in phrases:
            if phrase in raising:
                return RAISE_BY
            if phrase in lowering:
                if near < 0:
                    near = len(WORD.findall(text[max(0, start - LOWER_WINDOW) : start]))
                if len(words) - last <= near:
                    return -LOWER_BY
    return 0.0


# --- Tables: a header line names what its column holds ---------------------------------------

DELIMITERS = ("\t", ";", "|", ",")


def cells(line: str, delimiter: str) -> list[tuple[int, int]]:
    """Where each cell of a delimited line is (a quoted cell may hold the delimiter)."""
    if '"' not in line:
        spans, start = [], 0
        for cell in line.split(delimiter):
            spans.append((start, start + len(cell)))
            start += len(cell) + 1
        return spans
    spans, start, quoted = [], 0, False
    for index, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == delimiter and not quoted:
            spans.append((start, index))
            start = index + 1
    spans.append((start, len(line)))
    return spans


@lru_cache(maxsize=512)
def table(text: str) -> tuple[str, int, tuple[str, ...]] | None:
    """(delimiter, where the rows start, the header's cells in lower case) when `text` is rows
    of delimited cells under a header line of labels; None otherwise."""
    if "\n" not in text:
        return None
    lines = text.split("\n")
    offset = 0
    for number, line in enumerate(lines[:-1]):
        # A header holds no digits.
        for delimiter in () if any(map(str.isdigit, line)) else DELIMITERS:
            count = line.count(delimiter)
            if count == 0:
                continue
            if lines[number + 1].count(delimiter) < count:
                continue
            header = tuple(
                line[start:end].strip().strip("\"'").lower().replace("_", " ")
                for start, end in cells(line, delimiter)
            )
            if all(len(cell) <= 40 for cell in header):
                return delimiter, offset + len(line) + 1, header
        offset += len(line) + 1
    return None


def header_of(text: str, position: int) -> str:
    """The header of the table column `position` is in ("" outside a table's rows)."""
    found = table(text)
    if found is None or position < found[1]:
        return ""
    delimiter, _, header = found
    line_start = text.rfind("\n", 0, position) + 1
    line_end = text.find("\n", position)
    line = text[line_start : line_end if line_end >= 0 else len(text)]
    for column, (start, end) in enumerate(cells(line, delimiter)):
        if start <= position - line_start <= end:
            return header[column] if column < len(header) else ""
    return ""


def column_cells(text: str, is_header: Callable[[str], bool]) -> Iterator[tuple[int, int]]:
    """The cells, stripped of spaces and quotes, of the columns whose header `is_header`."""
    found = table(text)
    if found is None:
        return
    delimiter, rows_start, header = found
    columns = {index for index, name in enumerate(header) if is_header(name)}
    if not columns:
        return
    offset = rows_start
    for line in text[rows_start:].split("\n"):
        for column, (start, end) in enumerate(cells(line, delimiter)):
            if column in columns:
                piece = line[start:end]
                stripped = piece.strip().strip("\"'")
                if stripped:
                    first = start + piece.index(stripped)
                    yield offset + first, offset + first + len(stripped)
        offset += len(line) + 1
