"""Person names: spaCy's entity recognizer, and the cues it misses in six languages.

Cues: a salutation or honorific before the name (Mr, Dear, Herr, Sehr geehrte Frau, M., Mme,
Sr., Sra., Sig., Dhr., Mevr.), a label before it (Name:, Contact:, Ansprechpartner:, Nom :,
Nombre:), a closing above it (Regards, / Mit freundlichen Grüßen). Only the name is redacted:
"Frau [REDACTED PERSON]" keeps what the AI needs.
"""

import re
from collections.abc import Iterator

from connectors.detectors import context
from connectors.detectors.base import Scan, Span
from connectors.detectors.ner import STOPWORDS

UP = "A-ZÀ-ÖØ-ÞĀĂĄĆČĎĐĘĚŁŃŇŐŒŘŚŞŠŢŤŮŰŹŻŽ"
LOW = "a-zß-öø-ÿāăąćčďđęěłńňőœřśşšţťůűźżž"
# Marie, O'Neil, McDonald, Müller-Lüdenscheidt, SMITH; an initial (J.).
WORD = (
    rf"(?:[{UP}](?:['\u2019][{UP}])?(?:[{LOW}]+(?:[{UP}][{LOW}]+)?|[{UP}]+)(?:['\u2019\-][{UP}]?[{LOW}{UP}]+)*"
    rf"(?![{LOW}{UP}])|[{UP}]\.)"
)
PARTICLE = r"(?:van|von|der|den|de|du|des|di|da|del|della|dos|das|le|la|ten|ter|zu|y|bin|al)"
NAME = rf"{WORD}(?:[ \t]+(?:{PARTICLE}[ \t]+)*{WORD}){{0,3}}"
LOWER_NAME = rf"[{LOW}]{{2,}}(?: [{LOW}]{{2,}}){{0,2}}"

HONORIFICS = (
    r"Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Herr|Herrn|Frau|Fr\.|Hr\.|Dipl\.-Ing|Ing"
    r"|M\.|MM\.|Mme|Mmes|Mlle|Monsieur|Madame|Mademoiselle|Maître"
    r"|Sr|Sra|Srta|Señor|Señora|Señorita|Doña|D\.|Dña"
    r"|Sig|Sig\.ra|Sig\.na|Signor|Signora|Signorina|Dott|Dott\.ssa|Avv"
    r"|Dhr|Mevr|Mw|Mej|De heer|Meneer|Mevrouw"
    # Dutch, Italian, Spanish and French write these in lower case inside a sentence
    # ("graag dhr. Jansen bellen", "il dott. Bianchi", "a la atención de D.ª Ruiz").
    r"|dhr|mevr|mw|mej|de heer|meneer|mevrouw"
    r"|sig|sig\.ra|sig\.na|signor|signora|signorina|dott|dott\.ssa|avv"
    r"|sr|sra|srta|señor|señora|señorita|don|doña|D\.ª|Dª|monsieur|madame|mademoiselle"
)
SALUTATIONS = (
    r"Dear|Sehr geehrte[rs]?|Liebe[rs]?|Hallo|Guten Tag|Cher|Chère|Chers|Bonjour|Estimad[oa]s?"
    r"|Querid[oa]|Hola|Gentile|Gentilissim[oa]|Egregi[oa]|Car[oa]|Buongiorno|Geachte|Beste"
    r"|Hi|Hello|Hey"
)
# What follows a salutation but is not a name.
NOT_NAMES = frozenset(
    [
        "customer",
        "customers",
        "sir",
        "sirs",
        "madam",
        "madams",
        "team",
        "all",
        "colleague",
        "colleagues",
        "friend",
        "friends",
        "user",
        "users",
        "support",
        "service",
        "services",
        "client",
        "clients",
        "partner",
        "partners",
        "member",
        "members",
        "kunde",
        "kundin",
        "kunden",
        "damen",
        "herren",
        "kollege",
        "kollegin",
        "kollegen",
        "team",
        "mitglied",
        "monsieur",
        "madame",
        "messieurs",
        "mesdames",
        "cliente",
        "clientes",
        "señor",
        "señora",
        "señores",
        "amigo",
        "amigos",
        "signore",
        "signori",
        "collega",
        "colleghi",
        "klant",
        "klanten",
        "heer",
        "mevrouw",
        "dames",
        "heren",
        "collega's",
        "administrator",
        "admin",
        "manager",
        "owner",
        "grüße",
        "gruesse",
        "gruß",
        "regards",
        "wishes",
        "greetings",
        "saludos",
        "saluti",
        "groeten",
        "salutations",
    ]
)
COMPANY_WORDS = frozenset(
    [
        "gmbh",
        "ag",
        "kg",
        "ohg",
        "ug",
        "ltd",
        "limited",
        "inc",
        "llc",
        "plc",
        "corp",
        "co",
        "sa",
        "sas",
        "sarl",
        "sl",
        "srl",
        "spa",
        "bv",
        "nv",
        "vof",
        "group",
        "gruppe",
        "groupe",
        "grupo",
        "gruppo",
    ]
)
LABELS = (
    r"name|full name|customer name|contact name|contact person|contact|customer|client|attn"
    r"|attention|requester|requested by|reported by|submitted by|assignee|caller|recipient"
    r"|sender|signed|employee|patient|passenger|driver|guest|tenant|account holder|holder"
    r"|ansprechpartner(?:in)?|kontakt(?:person)?|kunde|kundin|kundenname|empfänger|absender"
    r"|sachbearbeiter(?:in)?|mitarbeiter(?:in)?|besteller(?:in)?|inhaber(?:in)?|z\. ?hd\.?|vorname"
    r"|nachname|nom|prénom|prenom|nom complet|nom du client|destinataire|expéditeur|interlocuteur"
    r"|titulaire|nombre|nombre completo|apellidos?|contacto|destinatario|remitente|solicitante"
    r"|titular|nome|cognome|nominativo|referente|intestatario|naam|klantnaam|contactpersoon"
    r"|klant|ontvanger|afzender|aanvrager|voornaam|achternaam"
    # What names a person in a table column names one in a "key": "value" pair too.
    r"|cardholder|beneficiary|payee|bénéficiaire|beneficiaire|beneficiario|begunstigde"
    r"|tenaamstelling|kontoinhaber(?:in)?|leidinggevende|responsable|cliente"
)
# Labels whose value is a name even in lower case ("name: john smith" in an export).
STRONG_LABELS = re.compile(
    r"name|full name|customer name|contact name|kundenname|vorname|nachname|nom|prénom|prenom"
    r"|nom complet|nombre|nombre completo|apellidos?|nome|cognome|naam|voornaam|achternaam",
    re.IGNORECASE,
)
CLOSINGS = (
    r"regards|best regards|kind regards|warm regards|best|thanks|thank you|cheers|sincerely"
    r"|yours sincerely|yours faithfully|mit freundlichen grüßen|mit freundlichen gruessen"
    r"|freundliche grüße|viele grüße|beste grüße|liebe grüße|gruß|mfg|lg|cordialement"
    r"|bien cordialement|salutations|bien à vous|sincères salutations|saludos|atentamente"
    r"|un saludo|saludos cordiales|cordiali saluti|distinti saluti|saluti|cordialmente"
    r"|met vriendelijke groet(?:en)?|vriendelijke groet(?:en)?|groeten|mvg"
)

HONORIFIC_CUE = re.compile(
    rf"(?<![\w.])(?:(?:{SALUTATIONS})[ \t]+)?(?:(?:{HONORIFICS})\.?[ \t]+)+(?P<name>{NAME})"
)
SALUTATION_CUE = re.compile(
    rf"(?<![\w.])(?:{SALUTATIONS})[ \t]+(?!(?:{HONORIFICS})\.?[ \t])(?P<name>{NAME})"
    r"(?=\s*[,!:\n]|$)"
)
LABEL_CUE = re.compile(
    rf"(?<![\w])(?P<label>(?i:{LABELS}))[\"']?[ \t]*[:=][ \t]*[\"']?"
    rf"(?P<name>{WORD}(?:,?[ \t]+(?:{PARTICLE}[ \t]+)*{WORD}){{0,3}}"
    rf"|{LOWER_NAME}(?=[\"']?[ \t]*(?:[,;|\n\t]|$)))"
)
CLOSING_CUE = re.compile(rf"(?<![\w])(?i:{CLOSINGS})[ \t]*[,.!]?[ \t]*\r?\n[ \t]*(?P<name>{NAME})")
LEADING = re.compile(rf"^(?:(?:{SALUTATIONS}|{HONORIFICS}|{CLOSINGS})\.?[ \t,]+)+", re.IGNORECASE)
TITLE_WORD = re.compile(rf"[{UP}]")
# Table columns that hold names (headers in lower case, "_" read as a space).
NAME_COLUMNS = re.compile(
    rf"(?:{LABELS}|first ?name|last ?name|surname|forename|given ?name|full ?name|cardholder"
    r"|beneficiary|payee|bénéficiaire|beneficiaire|beneficiario|begunstigde|tenaamstelling"
    r"|kontoinhaber(?:in)?|leidinggevende|responsable|voornaam|achternaam)"
)
CELL_NAME = re.compile(rf"[{UP}{LOW}'\u2019.,\- ]+")


def find_people(scan: Scan) -> Iterator[Span]:
    text = scan.text
    for pattern, confidence in ((HONORIFIC_CUE, 0.85), (SALUTATION_CUE, 0.6), (CLOSING_CUE, 0.7)):
        for match in pattern.finditer(text):
            if span := name_span(text, match.start("name"), match.end("name"), confidence):
                yield span
    for match in LABEL_CUE.finditer(text):
        start, end = match.span("name")
        if not TITLE_WORD.match(text, start) and not STRONG_LABELS.fullmatch(match["label"]):
            continue  # "Customer: wants a refund"
        if span := name_span(text, start, end, 0.8, lower_case=True):
            yield span
    if "\n" in text:
        for start, end in context.column_cells(text, NAME_COLUMNS.fullmatch):
            is_name = CELL_NAME.fullmatch(text, start, end) and len(text[start:end].split()) <= 5
            if is_name and (span := name_span(text, start, end, 0.75, lower_case=True)):
                yield span
    for start, end, label in scan.entities():
        span = name_span(text, start, end, 0.7, trim=True) if label == "person" else None
        # One capitalised word alone is as often "Tel" or "Ticket" as a name: the recognizer's
        # single words count only where a cue above says so.
        if span is not None and len(text[span.start : span.end].split()) >= 2:
            yield span


def name_span(
    text: str, start: int, end: int, confidence: float, *, trim: bool = False, lower_case=False
) -> Span | None:
    """The name in text[start:end], or None when what is there cannot be a name."""
    # The recognizer takes "Bonjour Mme Claire Dubois" or "Sie Herrn Klaus Müller", a label
    # "Herr Dr. Weber": the name is what follows.
    while start < end:
        if leading := LEADING.match(text[start:end] + " "):
            start += min(leading.end(), end - start)
            continue
        if not trim:
            break
        word = re.match(r"\S+\s*", text[start:end])
        token = word.group().strip(" ,.;:") if word else ""
        if token and TITLE_WORD.match(token) and token.lower() not in STOPWORDS:
            break
        start += word.end() if word else end - start
    while end > start and not text[end - 1].isalpha():
        end -= 1  # "Smith," and "J." as the last word keep their letters only
    piece = text[start:end]
    words = piece.split()
    if not words or len(piece) < 2 or any(char.isdigit() or char == "@" for char in piece):
        return None
    lowered = [word.lower().strip(".,") for word in words]
    if all(word in NOT_NAMES or word in STOPWORDS for word in lowered):
        return None
    following = text[end : end + 12].lower().split()[:1]
    if any(word.strip(".,") in COMPANY_WORDS for word in lowered + following):
        return None  # "Kunde: ACME GmbH"
    if not lower_case and not TITLE_WORD.match(piece):
        return None
    return Span(start, end, "person", confidence)
