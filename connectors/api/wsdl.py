"""A connector's WSDL 1.1 (document/literal, SOAP 1.1 and 1.2 bindings), generated from its input
mappings (the record), output mappings and schema (the result), so that a legacy client can
generate its stub. It names no key, credential or prompt: only field names and the endpoint."""

from xml.etree import ElementTree as ET

from django.conf import settings

from connectors.api import soap, soap_types
from connectors.api.body_formats import body_format_for
from connectors.models import Connector

WSDL = "http://schemas.xmlsoap.org/wsdl/"
BINDINGS = (  # (name, prefix, namespace of its WSDL extension elements)
    ("RecordsSoap11", "soap", "http://schemas.xmlsoap.org/wsdl/soap/"),
    ("RecordsSoap12", "soap12", "http://schemas.xmlsoap.org/wsdl/soap12/"),
)
TRANSPORT = "http://schemas.xmlsoap.org/soap/http"
OPERATION = "submit"


def soap_action(slug: str) -> str:
    return f"{soap.namespace_for(slug)}#{OPERATION}"


def document(connector: Connector, address: str) -> bytes:
    namespace = soap.namespace_for(connector.slug)
    attributes = {
        "xmlns:wsdl": WSDL,
        "xmlns:xs": "http://www.w3.org/2001/XMLSchema",
        "xmlns:tns": namespace,
        "targetNamespace": namespace,
        "name": "Records",
    }
    attributes.update({f"xmlns:{prefix}": uri for _, prefix, uri in BINDINGS})
    root = ET.Element("wsdl:definitions", attributes)
    ET.SubElement(root, "wsdl:documentation").text = (
        f"Interlock connector {connector.slug}: submit records; each becomes a job. Add "
        "?wait=N (N <= 30) to the address to get the jobs' results when they finish in time. "
        "Authenticate with Authorization: Bearer <key> (or X-Api-Key)."
    )
    add_types(ET.SubElement(root, "wsdl:types"), connector, namespace)
    for name, element in (
        ("submitRequest", "submit"),
        ("submitResponse", "submitResponse"),
        ("error", "error"),
    ):
        message = ET.SubElement(root, "wsdl:message", {"name": name})
        ET.SubElement(message, "wsdl:part", {"name": "parameters", "element": f"tns:{element}"})
    port_type = ET.SubElement(root, "wsdl:portType", {"name": "Records"})
    operation = ET.SubElement(port_type, "wsdl:operation", {"name": OPERATION})
    ET.SubElement(operation, "wsdl:input", {"message": "tns:submitRequest"})
    ET.SubElement(operation, "wsdl:output", {"message": "tns:submitResponse"})
    ET.SubElement(operation, "wsdl:fault", {"name": "error", "message": "tns:error"})
    for name, prefix, _ in BINDINGS:
        add_binding(root, name, prefix, connector.slug)
    service = ET.SubElement(root, "wsdl:service", {"name": "Records"})
    for name, prefix, _ in BINDINGS:
        port = ET.SubElement(service, "wsdl:port", {"name": name, "binding": f"tns:{name}"})
        ET.SubElement(port, f"{prefix}:address", {"location": address})
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def add_binding(root: ET.Element, name: str, prefix: str, slug: str) -> None:
    binding = ET.SubElement(root, "wsdl:binding", {"name": name, "type": "tns:Records"})
    ET.SubElement(binding, f"{prefix}:binding", {"style": "document", "transport": TRANSPORT})
    operation = ET.SubElement(binding, "wsdl:operation", {"name": OPERATION})
    ET.SubElement(
        operation, f"{prefix}:operation", {"soapAction": soap_action(slug), "style": "document"}
    )
    for direction in ("input", "output"):
        ET.SubElement(
            ET.SubElement(operation, f"wsdl:{direction}"), f"{prefix}:body", {"use": "literal"}
        )
    fault = ET.SubElement(operation, "wsdl:fault", {"name": "error"})
    ET.SubElement(fault, f"{prefix}:fault", {"name": "error", "use": "literal"})


def add_types(types: ET.Element, connector: Connector, namespace: str) -> None:
    schema = ET.SubElement(
        types,
        "xs:schema",
        {"targetNamespace": namespace, "elementFormDefault": "qualified"},
    )
    record = ET.SubElement(schema, "xs:complexType", {"name": "Record"})
    fields = soap_types.record_nodes(connector)
    if fields:
        add_sequence(record, fields)
    else:  # no input mapping: the record itself is what the connector reads
        sequence = ET.SubElement(record, "xs:sequence")
        any_element = {"processContents": "lax", "minOccurs": "0", "maxOccurs": "unbounded"}
        ET.SubElement(sequence, "xs:any", any_element)
    record_element = body_format_for(connector).record_element
    if record_element:
        submit = ET.SubElement(schema, "xs:element", {"name": "submit"})
        batch = {
            "name": record_element,
            "type": "tns:Record",
            "maxOccurs": str(settings.INTAKE_MAX_BATCH),
        }
        sequence = ET.SubElement(ET.SubElement(submit, "xs:complexType"), "xs:sequence")
        ET.SubElement(sequence, "xs:element", batch)
    else:
        ET.SubElement(schema, "xs:element", {"name": "submit", "type": "tns:Record"})
    job = ET.SubElement(schema, "xs:complexType", {"name": "Job"})
    add_sequence(job, soap_types.job_nodes(soap_types.result_nodes(connector)))
    response = ET.SubElement(schema, "xs:element", {"name": "submitResponse"})
    sequence = ET.SubElement(ET.SubElement(response, "xs:complexType"), "xs:sequence")
    jobs = {"name": "job", "type": "tns:Job", "maxOccurs": "unbounded"}
    ET.SubElement(sequence, "xs:element", jobs)
    error = ET.SubElement(schema, "xs:complexType", {"name": "Error"})
    add_sequence(error, soap_types.ERROR_NODES)
    ET.SubElement(schema, "xs:element", {"name": "error", "type": "tns:Error"})


def add_sequence(parent: ET.Element, nodes: list[soap_types.Node]) -> None:
    sequence = ET.SubElement(parent, "xs:sequence")
    for node in nodes:
        attributes = {"name": node.name, "minOccurs": "1" if node.is_required else "0"}
        if node.is_repeated:
            attributes["maxOccurs"] = "unbounded"
        if node.children:
            element = ET.SubElement(sequence, "xs:element", attributes)
            add_sequence(ET.SubElement(element, "xs:complexType"), node.children)
        else:
            attributes["type"] = soap_types.XSD_TYPES[node.type]
            ET.SubElement(sequence, "xs:element", attributes)
