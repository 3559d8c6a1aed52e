"""The intake's body types: JSON, XML, SOAP, CSV and forms, each read into a list of dict records.

XML goes through defusedxml and the file drop's helpers (namespaces, repeated children, depth),
so a record reads the same whether it came in a file, an XML request or a SOAP envelope. Every
refusal is an ApiError; a body either yields all its records or none.
"""

import codecs
import csv
import io
from dataclasses import dataclass
from urllib.parse import parse_qsl

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, iterparse
from django.conf import settings

from connectors import legacy_json
from connectors.api import soap
from connectors.api.errors import ApiError
from connectors.files.formats import SURROGATE, local_name, xml_row
from connectors.models import Connector
from connectors.sources import SOURCES

# Media type -> body type. SOAP 1.1 is text/xml too: its SOAPAction header or its envelope
# tells it from plain XML.
MEDIA_TYPES = {
    "application/json": "json",
    "application/xml": "xml",
    "text/xml": "xml",
    "text/csv": "csv",
    "application/x-www-form-urlencoded": "form",
    "application/soap+xml": "soap",
}


@dataclass(frozen=True)
class BodyFormat:
    accepts: tuple[str, ...] = ("json",)
    record_element: str = ""
    delimiter: str = ","
    encoding: str = "utf-8"
    header: bool = True


@dataclass(frozen=True)
class Body:
    records: list
    is_batch: bool
    kind: str = "json"
    soap_version: soap.Version | None = None


def body_format_for(connector: Connector) -> BodyFormat:
    """The connector's body settings (a source kind not fed through the API: JSON only)."""
    config = SOURCES.get(connector.source_kind).intake_body_settings(connector.source_config)
    return BodyFormat(**{**config, "accepts": tuple(config["accepts"])})


def media_type_of(content_type: str) -> tuple[str, dict[str, str]]:
    """`text/csv; charset=latin-1` -> ("text/csv", {"charset": "latin-1"})."""
    kind, *parameters = content_type.split(";")
    options = {}
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        options[name.strip().lower()] = value.strip().strip('"')
    return kind.strip().lower(), options


def accepted_media_types(fmt: BodyFormat) -> list[str]:
    accepted = [media for media, kind in MEDIA_TYPES.items() if kind in fmt.accepts]
    if "soap" in fmt.accepts and "text/xml" not in accepted:
        accepted.append("text/xml")  # SOAP 1.1
    return accepted


def parse_body(
    raw: bytes, content_type: str, fmt: BodyFormat, *, soap_action: str | None = None
) -> Body:
    """`soap_action` is the SOAPAction header, None when the request has none."""
    media_type, options = media_type_of(content_type)
    version = soap.labelled_version(media_type, soap_action)
    if not raw.strip():  # whatever its type; a client sends none with an empty body
        raise soap_aware(ApiError(400, "empty_body", "The body is empty; send a record."), version)
    kind = MEDIA_TYPES.get(media_type) or ("json" if media_type.endswith("+json") else None)
    if kind == "xml" and version is None:
        version = soap.envelope_version(raw)
    if version is not None or (kind == "xml" and is_soap_only(fmt)):
        kind = "soap"
    if kind not in fmt.accepts and mislabelled_json(kind, fmt):
        kind = "json"
    if kind not in fmt.accepts:
        accepted = accepted_media_types(fmt)
        sent = f"SOAP {version.name} ({media_type})" if version else media_type
        error = ApiError(
            415,
            "unsupported_media_type",
            f"This connector accepts {', '.join(accepted)}; the body is "
            f"{sent or 'without a Content-Type'}.",
            accepted=accepted,
        )
        raise soap_aware(error, version)
    if kind == "soap":
        return read_soap(raw, fmt, version)
    readers = {"json": read_json, "xml": read_xml, "csv": read_csv, "form": read_form}
    body = readers[kind](raw, fmt, options)
    if not body.records:
        raise ApiError(400, "invalid_body", "The body holds no records.")
    return body


def soap_aware(error: ApiError, version: soap.Version | None) -> ApiError:
    """Mark `error` to be answered as a Fault of `version` (when it is one)."""
    error.soap_version = version
    return error


def is_soap_only(fmt: BodyFormat) -> bool:
    """An XML body to a connector that takes SOAP and not plain XML is read as an envelope, so
    that a body that is none is told so (400), not that XML is not accepted (415)."""
    return "soap" in fmt.accepts and "xml" not in fmt.accepts


def mislabelled_json(kind: str | None, fmt: BodyFormat) -> bool:
    """Legacy systems send JSON as text/plain, with no Content-Type, or as a form (curl -d):
    a connector that takes JSON and not what the label says reads the body as JSON, as it
    always has. Only a label for a body type it could read but does not take (XML, CSV) is 415."""
    return "json" in fmt.accepts and kind in (None, "form")


def check_batch_size(count: int, *, is_complete: bool = False) -> None:
    """XML and CSV are counted as they are read and stop at the first record past the limit."""
    limit = settings.INTAKE_MAX_BATCH
    if count > limit:
        counted = f"{count}" if is_complete else f"More than {limit}"
        raise ApiError(
            413,
            "batch_too_large",
            f"{counted} records in one request; at most {limit}.",
            limit=limit,
        )


def read_json(raw: bytes, fmt: BodyFormat, options: dict) -> Body:
    try:
        body = legacy_json.loads(raw)
    except legacy_json.TooDeep as error:
        raise ApiError(400, "invalid_body", str(error), limit=legacy_json.MAX_DEPTH) from None
    except ValueError as error:  # also UnicodeDecodeError
        raise ApiError(400, "malformed_json", f"The body is not valid JSON: {error}") from None
    if isinstance(body, dict) and set(body) == {"records"}:
        body = body["records"]
        if not isinstance(body, list):
            raise ApiError(400, "invalid_body", '"records" must be a list of records.')
        if not body:
            raise ApiError(400, "invalid_body", '"records" is empty.')
    is_batch = isinstance(body, list)
    records = body if is_batch else [body]
    check_batch_size(len(records), is_complete=True)
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise ApiError(
                400,
                "invalid_record",
                f"Record {index} is a {json_type(record)}, not an object.",
                index=index,
            )
    return Body(records, is_batch)


def json_type(value) -> str:
    return {list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def read_xml(raw: bytes, fmt: BodyFormat, options: dict) -> Body:
    """Every `record_element` is a record (a batch); without one, the root element is."""
    records, root = [], None
    try:
        for event, element in iterparse(io.BytesIO(raw), ("start", "end"), forbid_dtd=True):
            if root is None:
                root = element
            if not fmt.record_element or event != "end":
                continue
            if local_name(element.tag) == fmt.record_element:
                records.append(xml_record(len(records), element))
                check_batch_size(len(records))
    except DefusedXmlException as error:
        raise ApiError(
            400,
            "invalid_body",
            f"The XML is refused: {type(error).__name__} (DTDs and entities are not allowed).",
        ) from None
    except ParseError as error:
        raise ApiError(400, "invalid_body", f"The body is not well-formed XML: {error}") from None
    if not fmt.record_element:
        return Body([xml_record(0, root)], is_batch=False, kind="xml")
    if not records:
        raise ApiError(400, "invalid_body", f"The XML holds no <{fmt.record_element}> element.")
    return Body(records, is_batch=True, kind="xml")


def read_soap(raw: bytes, fmt: BodyFormat, label: soap.Version | None) -> Body:
    """The Body's first element is the record; with `record_element`, every such element in the
    Body is one. A refusal is answered as a Fault of the envelope's version."""
    envelope = soap.open_envelope(raw, label)
    try:
        if not fmt.record_element:
            return Body([xml_record(0, envelope.payload[0])], False, "soap", envelope.version)
        records = []
        for top in envelope.payload:
            for element in top.iter():
                if local_name(element.tag) == fmt.record_element:
                    records.append(xml_record(len(records), element))
                    check_batch_size(len(records))
        if not records:
            raise ApiError(
                400, "invalid_body", f"The SOAP Body holds no <{fmt.record_element}> element."
            )
    except ApiError as error:
        raise soap_aware(error, envelope.version) from None
    return Body(records, True, "soap", envelope.version)


def xml_record(index: int, element) -> dict:
    row = xml_row(index + 1, element)
    if row.error:
        raise ApiError(
            400, "invalid_body", f"Record {index}: {row.error}.", limit=legacy_json.MAX_DEPTH
        )
    return row.record


def read_csv(raw: bytes, fmt: BodyFormat, options: dict) -> Body:
    """One record per row; a row that cannot be read refuses the whole body, by number."""
    expected = codecs.lookup(fmt.encoding).name
    charset = options.get("charset")
    if charset and lookup_name(charset) != expected:
        raise ApiError(
            400,
            "invalid_body",
            f"The body is declared as charset={charset}, but this connector reads CSV as "
            f"{fmt.encoding}; send {fmt.encoding} or change the connector's encoding.",
        )
    # Excel writes UTF-8 with a byte order mark; it must not become part of the first column.
    encoding = "utf-8-sig" if expected == "utf-8" else fmt.encoding
    text = raw.decode(encoding, errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=fmt.delimiter)
    header, records, previous_end = None, [], 0
    try:
        for fields in reader:
            line, previous_end = previous_end + 1, reader.line_num
            if header is None and fmt.header:
                header = [SURROGATE.sub("?", name).strip() for name in fields]
                if repeated := sorted({name for name in header if header.count(name) > 1}):
                    raise ApiError(
                        400,
                        "invalid_body",
                        f"The CSV header names {', '.join(map(repr, repeated))} more than once.",
                    )
                continue
            if not fields:
                continue
            index = len(records)
            if any(SURROGATE.search(field) for field in fields):
                raise bad_row(index, line, f"cannot be decoded as {fmt.encoding}")
            if header is None:
                records.append({f"column{i + 1}": value for i, value in enumerate(fields)})
            elif len(fields) != len(header):
                raise bad_row(index, line, f"expected {len(header)} fields, found {len(fields)}")
            else:
                records.append(dict(zip(header, fields, strict=True)))
            check_batch_size(len(records))
    except csv.Error as error:
        raise ApiError(
            400, "invalid_body", f"CSV error at line {reader.line_num}: {error}."
        ) from None
    return Body(records, is_batch=True, kind="csv")


def lookup_name(encoding: str) -> str | None:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        return None


def bad_row(index: int, line: int, problem: str) -> ApiError:
    return ApiError(
        400,
        "invalid_record",
        f"Row {index + 1} (line {line}) {problem}; nothing was accepted.",
        index=index,
    )


def read_form(raw: bytes, fmt: BodyFormat, options: dict) -> Body:
    """One record; `customer.email=…` is a path, and a repeated name makes a list."""
    try:
        fields = parse_qsl(raw.decode("ascii"), keep_blank_values=True, errors="strict")
    except (ValueError, UnicodeDecodeError) as error:  # also a percent-escape that is not UTF-8
        raise ApiError(400, "invalid_body", f"The form cannot be read: {error}.") from None
    record: dict = {}
    for name, value in fields:
        place_form_value(record, name, value)
    try:
        legacy_json.shallow(record)
    except ValueError:
        raise ApiError(
            400,
            "invalid_body",
            f"A field name nests more than {legacy_json.MAX_DEPTH} levels deep.",
            limit=legacy_json.MAX_DEPTH,
        ) from None
    return Body([record], is_batch=False, kind="form")


def place_form_value(record: dict, name: str, value: str) -> None:
    *parents, last = name.split(".")
    if not all([*parents, last]):
        raise ApiError(400, "invalid_body", f"The form field name {name!r} has an empty part.")
    fields = record
    for part in parents:
        fields = fields.setdefault(part, {})
        if not isinstance(fields, dict):
            raise ApiError(
                400, "invalid_body", f"The form field {name!r} is both a value and a group."
            )
    if isinstance(fields.get(last), dict):
        raise ApiError(400, "invalid_body", f"The form field {name!r} is both a value and a group.")
    if last not in fields:
        fields[last] = value
    elif isinstance(fields[last], list):
        fields[last].append(value)
    else:
        fields[last] = [fields[last], value]
