"""Answers in the request's format: JSON, XML, CSV or a form, as `Accept` asks, else as the body
was sent. SOAP callers always get SOAP (connectors.api.soap).

The choice is made when the answer is finalised, not when DRF negotiates at the start of the
request: only then is the body's real type known (a connector that takes JSON reads a form-labelled
`curl -d '{…}'` as JSON, and answers it in JSON, as it always has).
"""

import csv
import io
import json
import re
from urllib.parse import urlencode
from xml.etree import ElementTree as ET

from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer

from connectors.files.formats import safe_cell

# Answer media type -> kind; the first of a kind is its default media type.
ANSWER_MEDIA_TYPES = {
    "application/json": "json",
    "application/xml": "xml",
    "text/xml": "xml",
    "text/csv": "csv",
    "application/x-www-form-urlencoded": "form",
}
DEFAULT_MEDIA_TYPES = {"json": "application/json", "xml": "application/xml", "csv": "text/csv"}
DEFAULT_MEDIA_TYPES["form"] = "application/x-www-form-urlencoded"
# What XML 1.0 cannot carry (control characters, lone surrogates) becomes U+FFFD.
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
NOT_NAME_START = re.compile(r"^[^A-Za-z_]")
NOT_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def accepted_kind(request) -> tuple[str, str] | None:
    """The kind and media type that `Accept` names most, ignoring wildcards; None without one.

    `*/*` (curl, requests, Java's default header) says nothing, so the body's type decides."""
    for accepted in request._request.accepted_types:
        media_type = f"{accepted.main_type}/{accepted.sub_type}".lower()
        if media_type in ANSWER_MEDIA_TYPES:
            return ANSWER_MEDIA_TYPES[media_type], media_type
    return None


def xml_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return NOT_XML.sub("\ufffd", value if isinstance(value, str) else json.dumps(value))


def xml_name(name: str) -> str:
    """A key as an element name; our own keys are names already, an AI's may not be."""
    name = NOT_NAME.sub("_", str(name)) or "_"
    return "_" + name if NOT_NAME_START.match(name) else name


def add_xml(parent: ET.Element, name: str, value) -> None:
    """A list is one element per item (as the intake reads a repeated child), None is empty."""
    if isinstance(value, list):
        for item in value:
            add_xml(parent, name, item)
        return
    element = ET.SubElement(parent, xml_name(name))
    if isinstance(value, dict):
        for key, item in value.items():
            add_xml(element, key, item)
    elif value is not None:
        element.text = xml_text(value)


def to_xml(data: dict, status: int) -> bytes:
    """`{"jobs": [...]}` -> `<jobs><job>…</job></jobs>`, one job -> `<job>`, an error ->
    `<error>`."""
    if status < 400 and "jobs" in data:
        root = ET.Element("jobs")
        for job in data["jobs"]:
            add_xml(root, "job", job)
    else:
        root = ET.Element("error" if status >= 400 else "job")
        for key, value in data.items():
            add_xml(root, key, value)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def flat(value, prefix: str = "") -> list[tuple[str, object]]:
    """Nested objects as dotted names (`result.decision`), as a form's names are read."""
    if isinstance(value, dict) and value:
        pairs = []
        for key, item in value.items():
            pairs += flat(item, f"{prefix}.{key}" if prefix else str(key))
        return pairs
    return [(prefix, value)]


def rows_of(data: dict, status: int) -> list[dict]:
    if status >= 400:
        return [data]
    return data.get("jobs", [data])


def to_csv(data: dict, status: int, delimiter: str = ",") -> str:
    """A header row, then one row per job (or the error); a list stays a JSON cell."""
    rows = [dict(flat(row)) for row in rows_of(data, status)]
    columns = list(dict.fromkeys(name for row in rows for name in row))
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([safe_cell(row.get(name)) for name in columns])
    return out.getvalue()


def form_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def form_pairs(value, prefix: str) -> list[tuple[str, str]]:
    """Dotted names for objects, a repeated name for a list: how the intake reads a form."""
    if isinstance(value, list):
        return [pair for item in value for pair in form_pairs(item, prefix)]
    if isinstance(value, dict) and value:
        pairs = []
        for key, item in value.items():
            pairs += form_pairs(item, f"{prefix}.{key}" if prefix else str(key))
        return pairs
    return [(prefix, form_value(value))]


def to_form(data: dict, status: int) -> str:
    return urlencode(form_pairs(data, ""))


class XmlRenderer(BaseRenderer):
    media_type = "application/xml"
    format = "xml"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return to_xml(data, renderer_context["response"].status_code)


class CsvRenderer(BaseRenderer):
    """In the connector's delimiter and encoding when the caller is one of its keys."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"
    delimiter = ","

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        text = to_csv(data, renderer_context["response"].status_code, self.delimiter)
        return text.encode(self.charset, errors="replace")


class FormRenderer(BaseRenderer):
    media_type = "application/x-www-form-urlencoded"
    format = "form"
    charset = None  # percent-encoded UTF-8, ASCII on the wire

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return to_form(data, renderer_context["response"].status_code).encode("ascii")


RENDERERS = {"json": JSONRenderer, "xml": XmlRenderer, "csv": CsvRenderer, "form": FormRenderer}


class DeferredNegotiation(BaseContentNegotiation):
    """JSON for now, never a 406: the view chooses the answer's format once the body is read."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def use(request, kind: str, media_type: str | None = None, body_format=None) -> None:
    """Render the answer as `kind`, in `body_format`'s delimiter and encoding for CSV."""
    renderer = RENDERERS[kind]()
    if kind == "csv" and body_format is not None:
        renderer.charset, renderer.delimiter = body_format.encoding, body_format.delimiter
    renderer.media_type = media_type or DEFAULT_MEDIA_TYPES[kind]  # the Content-Type's
    request.accepted_renderer, request.accepted_media_type = renderer, renderer.media_type


def choose(request, body_kind: str, body_media_type: str = "", body_format=None) -> None:
    """`Accept` first (its kind in the caller's media type), else the body's own type."""
    accepted = accepted_kind(request)
    if accepted is not None:
        use(request, *accepted, body_format=body_format)
        return
    media_type = body_media_type if ANSWER_MEDIA_TYPES.get(body_media_type) == body_kind else None
    use(request, body_kind, media_type, body_format=body_format)
