"""Names and addresses: the deterministic cues per language, spaCy's recognizer behind them, and
what it costs only the connectors that use them."""

import logging

import pytest

from connectors.detectors import addresses, find_spans, ner, options, people
from connectors.detectors.base import Scan
from connectors.errors import RedactionError
from connectors.redaction import Rule, redact

KEY = b"test-key"


def cued(find, text: str) -> list[str]:
    """What the cues alone find (the recognizer answers nothing)."""
    return [text[span.start : span.end] for span in find(Scan(text, options()))]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Dear Mr John Smith, thank you", ["John Smith"]),  # en
        ("Hi Peter,\nthe parcel left today", ["Peter"]),
        ("Regards,\nMaria Gonzalez", ["Maria Gonzalez"]),
        ("Contact: Peter O'Neil", ["Peter O'Neil"]),
        ("Name: SMITH, John | order 17", ["SMITH, John"]),
        ("Sehr geehrte Frau Anna Schmidt,", ["Anna Schmidt"]),  # de
        ("bitte Herrn Klaus Müller-Lüdenscheidt anrufen", ["Klaus Müller-Lüdenscheidt"]),
        ("Ansprechpartner: Herr Dr. Weber", ["Weber"]),
        ("Mit freundlichen Grüßen\nJürgen Weiß", ["Jürgen Weiß"]),
        ("Bonjour Mme Claire Dubois,", ["Claire Dubois"]),  # fr
        ("M. Dupont a appelé", ["Dupont"]),
        ("Nom : Lefèvre", ["Lefèvre"]),
        ("Estimado Sr. Juan García:", ["Juan García"]),  # es
        ("Nombre: josé pérez", ["josé pérez"]),  # a strong label takes lower case too
        ("Gentile Sig. Marco Rossi,", ["Marco Rossi"]),  # it
        ("Geachte Dhr. Jan de Vries,", ["Jan de Vries"]),  # nl
        ("Mevr. Sanne van den Berg belde", ["Sanne van den Berg"]),
        # Honorifics written in lower case inside a sentence
        ("graag dhr. Pieter Bakker terugbellen", ["Pieter Bakker"]),
        ("Beste mevrouw De Jong,", ["De Jong"]),
        ("ha chiamato il dott. Ferri ieri", ["Ferri"]),
        ("a la atención de D.ª Lucía Prieto", ["Lucía Prieto"]),
        # A key that names a person, as a table column would
        ('{"beneficiario": "Andrés Molina", "importe": 120}', ["Andrés Molina"]),
        ('sync cliente="Paula Serra" ok', ["Paula Serra"]),
    ],
)
def test_person_cues_in_six_languages(text, expected):
    assert cued(people.find_people, text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Dear Customer,",
        "Sehr geehrte Damen und Herren,",
        "Kunde: ACME GmbH",
        "Customer: wants a refund",
        "Beste Grüße,\n",
        "Contact: 0171 1234567",
        '{"responsable": "ventas"}',
        "latency 12 ms Total",
    ],
)
def test_person_cue_lookalikes_are_left_alone(text):
    assert cued(people.find_people, text) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ship to 221B Baker Street, London NW1 6XE.", ["221B Baker Street, London NW1 6XE"]),
        (
            "1600 Pennsylvania Avenue, Washington, DC 20500",
            ["1600 Pennsylvania Avenue, Washington, DC 20500"],
        ),
        ("Lieferung an Hauptstraße 12, 10115 Berlin.", ["Hauptstraße 12, 10115 Berlin"]),
        (
            "Berliner Str. 5a\n60311 Frankfurt am Main",
            ["Berliner Str. 5a\n60311 Frankfurt am Main"],
        ),
        ("livré au 12 rue de la Paix, 75002 Paris", ["12 rue de la Paix, 75002 Paris"]),
        ("a Calle Mayor 5, 28013 Madrid", ["Calle Mayor 5, 28013 Madrid"]),
        ("in Via Roma 10, 00184 Roma", ["Via Roma 10, 00184 Roma"]),
        ("naar Kerkstraat 5, 1017 GC Amsterdam", ["Kerkstraat 5, 1017 GC Amsterdam"]),
    ],
)
def test_addresses_in_six_languages(text, expected):
    assert cued(addresses.find_addresses, text) == expected


@pytest.mark.parametrize(
    "text",
    ["50000 Euro Umsatz", "order 12345 Shipped", "qty 3 boxes, 12 units", "ISO 9001 Street"],
)
def test_address_lookalikes_are_left_alone(text):
    assert cued(addresses.find_addresses, text) == []


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Ticket 4711: customer Maria Gonzalez called about her invoice.", "Maria Gonzalez"),
        ("Le client Pierre Martin a signalé un colis endommagé.", "Pierre Martin"),
    ],
)
def test_the_recognizer_finds_names_without_a_cue(text, name):
    spans = find_spans(text, ["person"])

    assert [text[span.start : span.end] for span in spans] == [name]
    assert spans[0].type == "person"


def test_names_and_addresses_are_redacted_through_the_pipeline_api():
    fields = {"note": "Sehr geehrte Frau Anna Schmidt, Hauptstraße 12, 10115 Berlin"}

    result = redact(fields, [Rule("person", "tokenize"), Rule("address", "mask")], hash_key=KEY)

    assert result.fields["note"] == "Sehr geehrte Frau <PERSON_1>, [REDACTED ADDRESS]"
    assert result.tokens == {"<PERSON_1>": "Anna Schmidt"}
    assert result.spans["note"] == [
        {"start": 18, "end": 30, "type": "person", "action": "tokenize"},
        {"start": 32, "end": 60, "type": "address", "action": "mask"},
    ]


def test_only_the_recognizer_is_run():
    nlp = ner.load(ner.model_for("en"))

    assert nlp.pipe_names == ["ner"]


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Thank you for your order, the invoice is attached.", "en"),
        ("Vielen Dank für die Bestellung, die Rechnung ist beigefügt.", "de"),
        ("Merci pour votre commande, la facture est jointe.", "fr"),
        ("Gracias por su pedido, la factura está adjunta.", "es"),
        ("Grazie per il suo ordine, la fattura è allegata.", "it"),
        ("Bedankt voor uw bestelling, de factuur is bijgevoegd.", "nl"),
    ],
)
def test_the_language_is_guessed_from_function_words(text, language):
    assert ner.guess_language(text) == language


def test_a_missing_model_fails_closed_naming_it(settings):
    settings.REDACTION_NER_MODELS = {"*": "xx_no_such_model"}

    with pytest.raises(RedactionError) as caught:
        redact({"t": "Maria Gonzalez called"}, [Rule("person", "mask")], hash_key=KEY)

    assert "xx_no_such_model" in str(caught.value)
    assert "Maria" not in str(caught.value)


def test_logs_never_quote_what_the_detectors_read(caplog):
    caplog.set_level(logging.DEBUG)
    text = "Dear Mr Zebulon Quimby, call +49 30 1234567, IBAN DE89 3704 0044 0532 0130 00"

    redact(
        {"t": text},
        [Rule("person", "mask"), Rule("phone", "mask"), Rule("iban", "mask")],
        hash_key=KEY,
    )

    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "Quimby" not in logged
    assert "1234567" not in logged
    assert "3704" not in logged
