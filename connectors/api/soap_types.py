"""The XML Schema types of a connector's SOAP service: its record (from the input mappings), its
result (from the output mappings and schema), a job and an error.

The WSDL declares them and the SOAP answers are written from them, so an answer never carries an
element its WSDL does not declare (generated clients refuse those). A value that does not fit its
declared type is left out of the typed `result`; `result_json` always carries the whole result.
"""

import json
import re
from dataclasses import dataclass, field
from xml.etree import ElementTree as ET

from connectors.api.answer_formats import xml_text
from connectors.mapping import TRANSFORMS, parse_path, parse_transforms
from connectors.models import Connector, FieldMapping

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
XSD_TYPES = {
    "string": "xs:string",
    "json": "xs:string",  # JSON text, for a value of no single XML type
    "long": "xs:long",
    "double": "xs:double",
    "boolean": "xs:boolean",
    "dateTime": "xs:dateTime",
}
SCHEMA_TYPES = {"string": "string", "integer": "long", "number": "double", "boolean": "boolean"}
CONVERSIONS = {"int": "long", "float": "double", "str": "string"}
MAX_SCHEMA_DEPTH = 16
INTEGER = re.compile(r"^[+-]?\d+$")
NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@dataclass
class Node:
    """An element: a leaf of `type`, or a group of `children` (type "")."""

    name: str
    type: str = "string"
    children: list["Node"] = field(default_factory=list)
    is_required: bool = False
    is_repeated: bool = False


def record_nodes(connector: Connector) -> list[Node]:
    """The record's elements: one per input mapping path (`customer.email` nests, `lines[0]`
    repeats). A path no element can name (a space in it, a leading index) is left out."""
    nodes: list[Node] = []
    mappings = connector.mappings.filter(direction=FieldMapping.Direction.INPUT)
    for mapping in mappings.order_by("position", "id"):
        try:
            parts = parse_path(mapping.source_path)
        except ValueError:
            continue
        names = [part for part in parts if isinstance(part, str)]
        if isinstance(parts[0], int) or not all(NAME.match(name) for name in names):
            continue
        place(nodes, parts, mapping.is_required)
    return nodes


def place(nodes: list[Node], parts: list, is_required: bool) -> None:
    siblings = nodes
    for position, part in enumerate(parts):
        if isinstance(part, int):
            continue
        node = next((node for node in siblings if node.name == part), None)
        if node is None:
            node = Node(part)
            siblings.append(node)
        node.is_required = node.is_required or is_required
        rest = parts[position + 1 :]
        if rest and isinstance(rest[0], int):
            node.is_repeated = True
        if any(isinstance(later, str) for later in rest):
            node.type = ""
            siblings = node.children


def result_nodes(connector: Connector) -> list[Node] | None:
    """The mapped result's elements; None when it has no known shape (JSON without a schema)."""
    schema = connector.output_schema if connector.output_format == "json" else None
    outputs = connector.mappings.filter(direction=FieldMapping.Direction.OUTPUT)
    mappings = list(outputs.order_by("position", "id"))
    if mappings:
        return [output_node(mapping, schema) for mapping in mappings]
    if connector.output_format != "json":
        return [Node("value")]
    node = schema_node("result", schema or {}, 0)
    return node.children or None


def output_node(mapping: FieldMapping, schema) -> Node:
    node = schema_node(mapping.target_name, schema_at(schema, mapping.source_path), 0)
    try:
        transforms = parse_transforms(mapping.transform)
    except ValueError:
        transforms = []
    conversions = [CONVERSIONS[name] for name, _ in transforms if name in CONVERSIONS]
    if conversions:
        return Node(mapping.target_name, conversions[-1])
    if any(name in TRANSFORMS - {"default"} for name, _ in transforms):
        return Node(mapping.target_name, "json" if node.type != "string" else "string")
    return node


def schema_at(schema, path: str):
    """The JSON Schema of the value at `path`; {} when the schema does not say."""
    try:
        parts = parse_path(path)
    except ValueError:
        return {}
    for part in parts:
        if not isinstance(schema, dict):
            return {}
        key = "items" if isinstance(part, int) else None
        schema = schema.get("items") if key else (schema.get("properties") or {}).get(part)
    return schema if isinstance(schema, dict) else {}


def schema_node(name: str, schema: dict, depth: int) -> Node:
    """A JSON Schema as an element; what XML Schema cannot say plainly stays JSON text."""
    if not isinstance(schema, dict) or depth > MAX_SCHEMA_DEPTH:
        return Node(name, "json")
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [item for item in kind if item != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    if kind is None and isinstance(schema.get("enum"), list):
        kind = "string" if all(isinstance(item, str) for item in schema["enum"]) else None
    if kind == "array":
        item = schema_node(name, schema.get("items") or {}, depth + 1)
        if item.is_repeated:
            return Node(name, "json")
        item.is_repeated = True
        return item
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return Node(name, "json")
        required = set(schema.get("required") or [])
        children = [
            schema_node(key, value, depth + 1)
            for key, value in properties.items()
            if NAME.match(key)
        ]
        for child in children:
            child.is_required = child.name in required and not child.is_repeated
        return Node(name, "", children) if children else Node(name, "json")
    return Node(name, SCHEMA_TYPES.get(kind, "json"))


def job_nodes(result: list[Node] | None) -> list[Node]:
    """A job as the SOAP answer carries it: its reference, and with `?wait=` its outcome."""
    nodes = [
        Node("id", is_required=True),
        Node("status", is_required=True),
        Node("url"),
        Node("attempts", "long"),
    ]
    if result:
        nodes.append(Node("result", "", result))
    nodes += [
        Node("result_json"),
        Node("error", "", [Node("code", is_required=True), Node("message", is_required=True)]),
        Node("created_at", "dateTime"),
        Node("finished_at", "dateTime"),
    ]
    return nodes


ERROR_NODES = [
    Node("code", is_required=True),
    Node("detail", is_required=True),
    Node("field"),
    Node("index", "long"),
    Node("limit", "long"),
    Node("retry_after", "long"),
    Node("accepted", is_repeated=True),
]


def lexical(kind: str, value) -> str | None:
    """The value as `kind`'s text, or None when it is not one."""
    if kind == "string":
        return None if isinstance(value, dict | list) else xml_text(value)
    if kind == "json":
        return xml_text(value)
    if kind == "boolean":
        if isinstance(value, bool):
            return "true" if value else "false"
        return value if value in ("true", "false") else None
    if isinstance(value, bool):
        return None
    if kind == "long":
        is_long = isinstance(value, int) or (isinstance(value, str) and INTEGER.match(value))
        return str(value) if is_long else None
    if kind == "double":
        if isinstance(value, int | float):
            return repr(float(value)) if isinstance(value, float) else str(value)
        return value if isinstance(value, str) and NUMBER.match(value) else None
    return value if isinstance(value, str) else None  # dateTime: as DRF wrote it


def write(parent: ET.Element, nodes: list[Node], values: dict, prefix: str) -> None:
    """`values` as `nodes`' elements, in their declared order; what does not fit is left out."""
    for node in nodes:
        value = values.get(node.name)
        items = value if node.is_repeated and isinstance(value, list) else [value]
        for item in items:
            if item is None:
                continue
            if node.children:
                if isinstance(item, dict):
                    element = ET.SubElement(parent, prefix + node.name)
                    write(element, node.children, item, prefix)
                continue
            text = lexical(node.type, item)
            if text is not None:
                ET.SubElement(parent, prefix + node.name).text = text


def job_values(job: dict) -> dict:
    """A job as the API serialised it, with its result also as JSON text."""
    result = job.get("result")
    text = None if result is None else json.dumps(result, ensure_ascii=False)
    return {**job, "result_json": text}
