"""Postal addresses: a street with its house number (street-type words of English, German,
French, Spanish, Italian and Dutch), a postcode with its town (formats per country), and the
place names spaCy's recognizer sees right next to them. A street and the postcode line after it
become one span."""

import re
from collections.abc import Iterator

from connectors.detectors import context
from connectors.detectors.base import MIN_CONFIDENCE, Scan, Span
from connectors.detectors.people import LOW, UP

CAP = rf"[{UP}][{LOW}{UP}'\u2019.\-]*"
NUMBER = r"\d{1,5}(?:[ ]?[A-Za-z](?![\w]))?(?:[ ]?[-/][ ]?\d{1,5}[A-Za-z]?)?"
EN_STREET = (
    r"Street|St\.?|Road|Rd\.?|Avenue|Ave\.?|Lane|Ln\.?|Drive|Dr\.?|Boulevard|Blvd\.?|Way|Court"
    r"|Ct\.?|Place|Pl\.?|Terrace|Close|Crescent|Square|Sq\.?|Parkway|Pkwy\.?|Highway|Hwy\.?|Row"
    r"|Gardens|Grove|Mews|Walk|Circle|Cir\.?|Trail|Alley|Hill"
)
FR_STREET = (
    r"rue|avenue|av\.|bd\.?|boulevard|place|pl\.|chemin|ch\.|allée|impasse|imp\.|quai|route|rte"
    r"|cours|square|passage|faubourg|fg|rond-point|voie|esplanade|cité|résidence|sentier|promenade"
)
ES_STREET = (
    r"Calle|C/|Avenida|Avda\.?|Av\.|Paseo|Pº|Plaza|Pza\.?|Camino|Carretera|Ctra\.?|Ronda"
    r"|Travesía|Pasaje|Glorieta|Rambla|Carrer|Vía|Urbanización|Urb\."
)
IT_STREET = (
    r"Via|V\.|Viale|V\.le|Piazza|P\.za|P\.zza|Piazzale|Corso|C\.so|Largo|Vicolo|Strada"
    r"|Lungomare|Lungotevere|Contrada|Borgo|Località|Loc\."
)
# German and Dutch streets are one word ending in the street type (Hauptstraße, Kerkstraat) or a
# word before a capitalised type (Berliner Straße, Am Markt).
DE_NL_SUFFIX = (
    r"straße|strasse|str\.|weg|gasse|platz|allee|ring|damm|ufer|chaussee|steig|pfad|markt"
    r"|graben|wall|kamp|stieg|zeile|promenade|brücke|chaussee|tor|hof"
    r"|straat|laan|plein|gracht|kade|singel|dijk|steeg|dreef|pad|wal|hof|park|markt|plantsoen"
)
DE_TYPE_WORDS = r"Straße|Strasse|Str\.|Weg|Gasse|Platz|Allee|Ring|Damm|Ufer|Chaussee|Steig|Markt"
STREETS = re.compile(
    "|".join(
        (
            # 221B Baker Street; 12 rue de la Paix; 5 bis, avenue Foch
            rf"(?<![\w.,])\d{{1,5}}[A-Za-z]?(?:[ ]?(?:bis|ter))?,?[ ]+"
            rf"(?:(?:{CAP}[ ]+){{1,4}}(?:{EN_STREET})(?![\w])"
            rf"|(?i:{FR_STREET})[ ]+(?:(?i:de la|de l'|du|des|de|d'|la|le|l')[ ]*)?{CAP}"
            rf"(?:[ \-](?:(?:de|du|des|la|le|l'|d'|et)[ ]+)?{CAP}){{0,4}})",
            # Calle Mayor 5; Via Roma, 10; Avenida de la Constitución, nº 12
            rf"(?<![\w])(?:{ES_STREET}|{IT_STREET})[ ]+"
            rf"(?:(?:de la|de las|de los|del|de|di|della|dei|degli|delle|dello|d')[ ]*)?"
            rf"{CAP}(?:[ ](?:(?:de|del|la|di|della|y|e)[ ]+)?(?:{CAP}|\d{{1,2}}(?= ))){{0,4}}"
            rf",?[ ]*(?:(?:n[º°o]\.?|núm\.?|n\.|nr\.?)[ ]*)?{NUMBER}"
            rf"(?:,?[ ]*\d{{1,2}}[º°ª](?:[ ]?[A-Za-z](?!\w))?)?",  # 3º B
            # Hauptstraße 12; Berliner Str. 5a; Kerkstraat 5; Laan van Meerdervoort 12
            rf"(?<![\w])(?:{CAP}[ \-])?[{UP}][{LOW}{UP}\-]*(?i:{DE_NL_SUFFIX})[ ]*{NUMBER}",
            rf"(?<![\w]){CAP}[ ](?:{DE_TYPE_WORDS})[ ]*{NUMBER}",
            rf"(?<![\w])(?:Am|An der|Auf der|Im|In der|Zum|Zur|Laan van|Plein|Hof van)"
            rf"[ ]+{CAP}[ ]+{NUMBER}",
        )
    )
)
US_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH"
    "|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY"
)
TOWN_WORD = rf"[{UP}][{LOW}]+(?:['\u2019\-][{UP}]?[{LOW}]+)*"
TOWN = (
    rf"{TOWN_WORD}(?:[ \-](?:(?:am|an|der|bei|im|sur|en|de|di|del|la|le|aan|den|op)[ \-])?"
    rf"{TOWN_WORD}){{0,2}}"
)
POSTCODES = (
    # Springfield, IL 62704; Austin TX 78701-1234
    (
        re.compile(rf"(?<![\w])(?:{TOWN},?[ ]+)?(?:{US_STATES})[ ]+\d{{5}}(?:-\d{{4}})?(?![\w\-])"),
        0.7,
    ),
    # London NW1 6XE; SW1A 1AA
    (
        re.compile(
            r"(?<![\w])(?:[A-Z][a-z]+,?[ ]+)?(?:[A-PR-UWYZ][A-HK-Y]?\d[A-Z\d]?)[ ]?"
            r"\d[ABD-HJLNP-UW-Z]{2}(?![\w])"
        ),
        0.7,
    ),
    # 10115 Berlin; D-10115 Berlin; 75002 Paris; 28013 Madrid; 00184 Roma
    (re.compile(rf"(?<![\w\-.,])(?:[A-Z]{{1,2}}-)?\d{{5}}[ ]+{TOWN}"), 0.55),
    # 1017 GC Amsterdam
    (re.compile(rf"(?<![\w\-.,])[1-9]\d{{3}}[ ]?(?!SA|SD|SS)[A-Z]{{2}}[ ]+{TOWN}"), 0.6),
)
# Words after a five-digit number that make it a quantity or an amount, not a postcode.
NOT_TOWNS = frozenset(
    [
        "euro",
        "eur",
        "usd",
        "gbp",
        "chf",
        "dollar",
        "dollars",
        "pounds",
        "stück",
        "stk",
        "units",
        "pcs",
        "pieces",
        "items",
        "kg",
        "km",
        "mal",
        "times",
    ]
)
ADDRESS_COLUMNS = re.compile(
    r"address|street|street address|address line ?\d?|adresse|anschrift|straße|strasse"
    r"|dirección|direccion|domicilio|indirizzo|adres|straat|rue"
)
JOIN = re.compile(r"[ \t]*(?:,|\r?\n)?[ \t]*(?:\r?\n)?[ \t]*")


def find_addresses(scan: Scan) -> Iterator[Span]:
    text = scan.text
    found: list[tuple[int, int, float]] = []
    for match in STREETS.finditer(text):
        found.append((match.start(), match.end(), 0.75))
    for pattern, confidence in POSTCODES:
        for match in pattern.finditer(text):
            if not any(word.lower().strip(".,") in NOT_TOWNS for word in match.group().split()):
                start, end = match.span()
                adjusted = confidence + context.adjustment(text, start, end, "address")
                found.append((start, end, adjusted))
    if "\n" in text:
        for start, end in context.column_cells(text, ADDRESS_COLUMNS.fullmatch):
            if any(char.isdigit() for char in text[start:end]):
                found.append((start, end, 0.7))
    found = sorted(part for part in found if part[2] >= MIN_CONFIDENCE)
    if not found:
        return
    places = [(start, end) for start, end, label in scan.entities() if label == "place"]
    for start, end, confidence in join(text, found, places):
        yield Span(start, end, "address", confidence)


def join(
    text: str, parts: list[tuple[int, int, float]], places: list[tuple[int, int]]
) -> list[tuple[int, int, float]]:
    """A street followed by its postcode line, and a place name right after either, is one
    address: what a reader sees as one."""
    joined: list[tuple[int, int, float]] = []
    for start, end, confidence in parts:
        if joined:
            last_start, last_end, last_confidence = joined[-1]
            gap = JOIN.fullmatch(text, last_end, start) if start >= last_end else None
            if start < last_end or gap:
                joined[-1] = (last_start, max(last_end, end), max(0.9, last_confidence))
                continue
        joined.append((start, end, confidence))
    for index, (start, end, confidence) in enumerate(joined):
        for place_start, place_end in places:
            if place_start >= end and JOIN.fullmatch(text, end, place_start):
                end = place_end
        joined[index] = (start, end, confidence)
    return joined
