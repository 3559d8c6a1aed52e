"""Dates of birth: a date counts only right after a cue (DOB, born, geb., né le, fecha de
nacimiento, nato il, geboren); a date alone is an invoice date."""

import re
from collections.abc import Iterator

from connectors.detectors import context
from connectors.detectors.base import Scan, Span

MONTHS = (
    # en
    "january|february|march|april|may|june|july|august|september|october|november|december"
    "|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
    # de
    "|januar|jänner|februar|märz|maerz|april|mai|juni|juli|august|september|oktober|november"
    "|dezember|okt|dez"
    # fr
    "|janvier|février|fevrier|mars|avril|mai|juin|juillet|août|aout|septembre|octobre"
    "|novembre|décembre|decembre|janv|févr|fevr|avr|juil|déc"
    # es
    "|enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre"
    "|noviembre|diciembre|ene|abr|ago|dic"
    # it
    "|gennaio|febbraio|marzo|aprile|maggio|giugno|luglio|agosto|settembre|ottobre|novembre"
    "|dicembre|gen|mag|giu|lug|ott"
    # nl
    "|januari|februari|maart|april|mei|juni|juli|augustus|september|oktober|november"
    "|december|mrt"
)
DAY = r"(?:0?[1-9]|[12]\d|3[01])"
MONTH_NUMBER = r"(?:0?[1-9]|1[0-2])"
YEAR = r"(?:1[89]\d\d|20\d\d)"
DATE = (
    rf"(?:{YEAR}[-/.]{MONTH_NUMBER}[-/.]{DAY}"
    rf"|{DAY}[-/.]{MONTH_NUMBER}[-/.](?:{YEAR}|\d\d)"
    rf"|{MONTH_NUMBER}[-/.]{DAY}[-/.](?:{YEAR}|\d\d)"
    rf"|{DAY}(?:st|nd|rd|th|er|º|°)?\.?\s+(?:of\s+|de\s+)?(?:{MONTHS})\.?,?\s+(?:de\s+)?{YEAR}"
    rf"|(?:{MONTHS})\.?\s+{DAY}(?:st|nd|rd|th)?,?\s+{YEAR})"
)
# Words of a cue may be joined by spaces or underscores (JSON keys: "geb_datum", "nata_il").
CUE = (
    r"d\.?o\.?b\.?|date[ _]of[ _]birth|birth[ _]?date|born(?:[ _]on)?|birthday"
    r"|geb\.?|geboren(?:[ _]am|[ _]op)?|geburtsdatum|geburtstag|geb(?:\.-?|_)?datum"
    r"|n[ée]e?[\s_]+le|date[ _]de[ _]naissance|naissance"
    r"|fecha[ _]de[ _]nacimiento|f(?:\. ?|_)(?:de )?nac\.?|nacid[oa][ _]el|nacimiento"
    r"|nat[oa][ _]il|data[ _]di[ _]nascita|nascita"
    r"|geboortedatum"
)
DATE_OF_BIRTH = re.compile(
    rf"(?<![^\W\d_])(?:{CUE})(?![^\W\d_])[\s:.,\-=\"'(]{{0,5}}"
    rf"(?:(?:is|ist|est|es|è|was|war|on|am|le|el|il|op|the|:)[\s:]+){{0,2}}"
    rf"(?P<date>{DATE})(?!\d)",
    re.IGNORECASE,
)


# Every cue holds one of these; a text without any has no date of birth to find.
CUE_STEMS = (
    *("dob", "d.o.b", "birth", "born", "geb", "né", "ne_le", "ne le", "nee le", "naissance"),
    *("nac", "nato", "nata", "nascita", "geboorte"),
)


DATE_ALONE = re.compile(DATE)
CUE_ALONE = re.compile(rf"(?:{CUE})", re.IGNORECASE)


def find_dates_of_birth(scan: Scan) -> Iterator[Span]:
    if not scan.mentions(*CUE_STEMS):
        return
    text = scan.text
    for match in DATE_OF_BIRTH.finditer(text):
        yield Span(match.start("date"), match.end("date"), "date_of_birth", 0.9)
    if "\n" in text:  # a table whose column is headed "dob", "geb.", "f_nac"
        for start, end in context.column_cells(text, CUE_ALONE.fullmatch):
            if DATE_ALONE.fullmatch(text, start, end):
                yield Span(start, end, "date_of_birth", 0.9)
