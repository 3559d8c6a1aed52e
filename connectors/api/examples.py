"""Example requests for a connector's page: one shell command per body type it accepts, with a
record its input mappings accept, that works when pasted into a POSIX shell with the key in
$INTERLOCK_KEY (the page never shows a key). Right after a key is created, `ready_to_paste`
turns the first one into a command that carries the new key, and signs the body with the new
signing secret when the key has one."""

import csv
import io
import itertools
import json
import shlex
import urllib.parse
from dataclasses import dataclass, field
from xml.etree import ElementTree as ET

from connectors.api import soap, wsdl
from connectors.api.answer_formats import add_xml, form_pairs
from connectors.api.body_formats import BodyFormat, body_format_for
from connectors.mapping import parse_path, parse_transforms
from connectors.models import Connector, FieldMapping

AUTHORIZATION = '-H "Authorization: Bearer $INTERLOCK_KEY"'
TITLES = {
    "json": "JSON",
    "xml": "XML",
    "csv": "CSV",
    "form": "Form",
    "soap": "SOAP 1.1 (SOAP 1.2: Content-Type application/soap+xml, envelope namespace "
    f"{soap.SOAP12.namespace})",
}


@dataclass(frozen=True)
class Example:
    kind: str
    title: str
    command: str
    note: str = ""
    headers: list[str] = field(default_factory=list)  # curl -H options, besides the key
    body: str = ""  # the exact body the command sends


def for_connector(connector: Connector, url: str) -> list[Example]:
    """`url` is the records endpoint's absolute URL."""
    fmt = body_format_for(connector)
    record = sample_record(connector)
    builders = {"json": json_example, "xml": xml_example, "csv": csv_example}
    builders |= {"form": form_example, "soap": soap_example}
    return [
        builders[kind](connector, fmt, record, f"{url}?wait=10")
        for kind in ("json", "xml", "soap", "csv", "form")
        if kind in fmt.accepts
    ]


def sample_record(connector: Connector) -> dict:
    """A record with a value at every input path (a number where a transform converts one)."""
    record: dict = {}
    mappings = connector.mappings.filter(direction=FieldMapping.Direction.INPUT)
    for mapping in mappings.order_by("position", "id"):
        try:
            parts = parse_path(mapping.source_path)
            transforms = [name for name, _ in parse_transforms(mapping.transform)]
        except ValueError:
            continue
        if isinstance(parts[0], int):
            continue
        value = "1" if {"int", "float"} & set(transforms) else f"example {mapping.target_name}"
        place(record, parts, value)
    return record or {"text": "example text"}


def place(record: dict, parts: list, value: str) -> None:
    """Set `value` at `parts` (names and list indexes), making the objects and lists on the way;
    a path that crosses a value already placed is left out."""
    holder = record
    for part, following in itertools.pairwise(parts):
        holder = child(holder, part, [] if isinstance(following, int) else {})
        if holder is None:
            return
    last = parts[-1]
    if isinstance(holder, list) and isinstance(last, int) and last >= 0:
        pad(holder, last)
        if holder[last] is None:
            holder[last] = value
    elif isinstance(holder, dict) and isinstance(last, str):
        holder.setdefault(last, value)


def child(holder, part, empty: dict | list):
    if isinstance(holder, dict) and isinstance(part, str):
        found = holder.setdefault(part, empty)
    elif isinstance(holder, list) and isinstance(part, int) and part >= 0:
        pad(holder, part)
        if holder[part] is None:
            holder[part] = empty
        found = holder[part]
    else:
        return None
    return found if type(found) is type(empty) else None


def pad(items: list, index: int) -> None:
    items.extend(None for _ in range(index + 1 - len(items)))


def command(url: str, headers: list[str], data: str) -> str:
    lines = [f"curl -X POST {shlex.quote(url)}", AUTHORIZATION, *headers, data]
    return " \\\n  ".join(lines)


def binary(body: str) -> str:
    return f"--data-binary {shlex.quote(body)}"


def json_example(connector, fmt: BodyFormat, record: dict, url: str) -> Example:
    body = json.dumps(record, ensure_ascii=False)
    headers = ["-H 'Content-Type: application/json'"]
    return Example("json", TITLES["json"], command(url, headers, binary(body)), "", headers, body)


def xml_record(name: str, record: dict) -> ET.Element:
    element = ET.Element(name)
    for key, value in record.items():
        add_xml(element, key, value)
    return element


def xml_example(connector, fmt: BodyFormat, record: dict, url: str) -> Example:
    if fmt.record_element:
        root = ET.Element("records")
        root.append(xml_record(fmt.record_element, record))
    else:
        root = xml_record("record", record)
    body = ET.tostring(root, encoding="unicode")
    headers = ["-H 'Content-Type: application/xml'"]
    return Example("xml", TITLES["xml"], command(url, headers, binary(body)), "", headers, body)


def soap_example(connector, fmt: BodyFormat, record: dict, url: str) -> Example:
    namespace = soap.namespace_for(connector.slug)
    if fmt.record_element:
        submit = ET.Element("submit", {"xmlns": namespace})
        submit.append(xml_record(fmt.record_element, record))
    else:
        submit = xml_record("submit", record)
        submit.set("xmlns", namespace)
    envelope = ET.Element("soap:Envelope", {"xmlns:soap": soap.SOAP11.namespace})
    ET.SubElement(envelope, "soap:Body").append(submit)
    body = ET.tostring(envelope, encoding="unicode")
    action = f'SOAPAction: "{wsdl.soap_action(connector.slug)}"'
    headers = ["-H 'Content-Type: text/xml; charset=utf-8'", f"-H {shlex.quote(action)}"]
    wsdl_url = shlex.quote(url.partition("?")[0] + "?wsdl")
    note = f"WSDL: curl {AUTHORIZATION} {wsdl_url}"
    return Example("soap", TITLES["soap"], command(url, headers, binary(body)), note, headers, body)


def csv_example(connector, fmt: BodyFormat, record: dict, url: str) -> Example:
    columns = {
        name: value if isinstance(value, str) else json.dumps(value)
        for name, value in record.items()
    }
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=fmt.delimiter, lineterminator="\n")
    if fmt.header:
        writer.writerow(columns)
    writer.writerow(columns.values())
    lines = " ".join(shlex.quote(line) for line in out.getvalue().splitlines())
    headers = [f"-H {shlex.quote(f'Content-Type: text/csv; charset={fmt.encoding}')}"]
    text = f"printf '%s\\n' {lines} |\n" + command(url, headers, "--data-binary @-")
    nested = any(not isinstance(value, str) for value in record.values())
    note = "CSV columns are flat: a nested input path matches no column." if nested else ""
    return Example("csv", TITLES["csv"], text, note, headers, out.getvalue())


def form_example(connector, fmt: BodyFormat, record: dict, url: str) -> Example:
    pairs = form_pairs(record, "")
    fields = " ".join(f"--data-urlencode {shlex.quote(f'{name}={value}')}" for name, value in pairs)
    body = urllib.parse.urlencode(pairs)
    headers = ["-H 'Content-Type: application/x-www-form-urlencoded'"]
    return Example("form", TITLES["form"], command(url, [], fields), "", headers, body)


# Standard Webhooks: v1 is the base64 HMAC-SHA256, keyed by the secret after whsec_, of
# "<webhook-id>.<webhook-timestamp>.<body>" (openssl, base64, od: in every POSIX base system).
SIGN = [
    'WEBHOOK_ID="msg_$(date +%s)_$$"',
    'WEBHOOK_TIMESTAMP="$(date +%s)"',
    'SECRET_HEX="$(printf \'%s\' "${INTERLOCK_SECRET#whsec_}" | base64 -d'
    " | od -An -v -tx1 | tr -d ' \\n')\"",
    'SIGNATURE="$(printf \'%s\' "$WEBHOOK_ID.$WEBHOOK_TIMESTAMP.$BODY"'
    ' | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$SECRET_HEX" -binary | base64)"',
]
SIGNATURE_HEADERS = [
    '-H "webhook-id: $WEBHOOK_ID"',
    '-H "webhook-timestamp: $WEBHOOK_TIMESTAMP"',
    '-H "webhook-signature: v1,$SIGNATURE"',
]


def ready_to_paste(connector: Connector, url: str, key: str, secret: str | None) -> Example:
    """The connector's first example with the new key in it (and signed, with a secret)."""
    example = for_connector(connector, url)[0]
    lines = [f"export INTERLOCK_KEY={shlex.quote(key)}"]
    if secret is None:
        return Example(example.kind, example.title, "\n".join([*lines, example.command]))
    lines += [f"export INTERLOCK_SECRET={shlex.quote(secret)}", f"BODY={shlex.quote(example.body)}"]
    curl = command(
        f"{url}?wait=10", [*example.headers, *SIGNATURE_HEADERS], '--data-binary "$BODY"'
    )
    return Example(example.kind, example.title, "\n".join([*lines, *SIGN, curl]))
