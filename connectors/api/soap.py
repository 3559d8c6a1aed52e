"""SOAP 1.1 and 1.2 at the webhook: the envelope read with defusedxml (no DTDs, entities or
external references; the size limit is the intake's), the answer written as a SOAP response, and
every refusal a Fault carrying the JSON API's `code` and `detail` under the JSON API's status.

`SOAPAction` (1.1) and the `action` parameter (1.2) are accepted and ignored: the URL names the
connector and the service has one operation.
"""

import io
from dataclasses import dataclass
from xml.etree import ElementTree as ET

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring, iterparse
from rest_framework.renderers import BaseRenderer

from connectors.api import soap_types
from connectors.api.answer_formats import xml_text
from connectors.api.errors import ApiError


@dataclass(frozen=True)
class Version:
    name: str
    namespace: str
    media_type: str
    sender_fault: str  # the caller's mistake (our 4xx)
    receiver_fault: str  # ours (our 5xx)
    roles_for_us: tuple[str, ...]  # header blocks aimed at these (or at no role) are ours


SOAP11 = Version(
    "1.1",
    "http://schemas.xmlsoap.org/soap/envelope/",
    "text/xml",
    "Client",
    "Server",
    ("", "http://schemas.xmlsoap.org/soap/actor/next"),
)
SOAP12 = Version(
    "1.2",
    "http://www.w3.org/2003/05/soap-envelope",
    "application/soap+xml",
    "Sender",
    "Receiver",
    (
        "",
        "http://www.w3.org/2003/05/soap-envelope/role/next",
        "http://www.w3.org/2003/05/soap-envelope/role/ultimateReceiver",
    ),
)
VERSIONS = {version.namespace: version for version in (SOAP11, SOAP12)}


@dataclass(frozen=True)
class Envelope:
    version: Version
    payload: list  # the Body's elements


def namespace_for(slug: str) -> str:
    return f"urn:interlock:connector:{slug}"


def split_tag(tag: str) -> tuple[str, str]:
    """`{urn:x}Envelope` -> ("urn:x", "Envelope")."""
    namespace, _, name = tag[1:].rpartition("}") if tag.startswith("{") else ("", "", tag)
    return namespace, name


def labelled_version(media_type: str, soap_action: str | None) -> Version | None:
    """What the request's headers say before its body is read: SOAP 1.2's media type, or
    SOAP 1.1's mandatory SOAPAction header."""
    if media_type == SOAP12.media_type:
        return SOAP12
    if soap_action is not None and media_type in ("text/xml", "application/xml"):
        return SOAP11
    return None


def envelope_version(raw: bytes) -> Version | None:
    """The version of the SOAP envelope that is the root element, if it is one; reads no
    further than that element."""
    try:
        for _, element in iterparse(io.BytesIO(raw), ("start",), forbid_dtd=True):
            namespace, name = split_tag(element.tag)
            return VERSIONS.get(namespace) if name == "Envelope" else None
    except (DefusedXmlException, ParseError):
        return None  # the XML reader says what is wrong with it
    return None


def refusal(detail: str, version: Version, fault_code: str | None = None) -> ApiError:
    """A 400 `invalid_body` that is answered as a Fault of `version`."""
    error = ApiError(400, "invalid_body", detail)
    error.soap_version, error.fault_code = version, fault_code
    return error


def open_envelope(raw: bytes, label: Version | None) -> Envelope:
    """The envelope's version and its Body's elements; anything else is refused."""
    fallback = label or SOAP11
    try:
        root = fromstring(raw, forbid_dtd=True)
    except DefusedXmlException as error:
        raise refusal(
            f"The XML is refused: {type(error).__name__} (DTDs and entities are not allowed).",
            fallback,
        ) from None
    except ParseError as error:
        raise refusal(f"The body is not well-formed XML: {error}", fallback) from None
    namespace, name = split_tag(root.tag)
    if name != "Envelope":
        raise refusal(f"The body is not a SOAP envelope: its root element is <{name}>.", fallback)
    version = VERSIONS.get(namespace)
    if version is None:
        raise refusal(
            f"The envelope's namespace {namespace or '(none)'} is neither SOAP 1.1 "
            f"({SOAP11.namespace}) nor SOAP 1.2 ({SOAP12.namespace}).",
            fallback,
            "VersionMismatch",
        )
    header = root.find(f"{{{namespace}}}Header")
    for block in header if header is not None else ():
        if must_understand(block, version):
            raise refusal(
                f"The header block <{split_tag(block.tag)[1]}> must be understood; this "
                "service understands no header blocks.",
                version,
                "MustUnderstand",
            )
    body = root.find(f"{{{namespace}}}Body")
    if body is None:
        raise refusal("The SOAP envelope has no Body.", version)
    payload = list(body)
    if not payload:
        raise refusal("The SOAP Body is empty; send the record in it.", version)
    return Envelope(version, payload)


def must_understand(block, version: Version) -> bool:
    flag = block.get(f"{{{version.namespace}}}mustUnderstand", "").strip()
    role_attribute = "actor" if version is SOAP11 else "role"
    role = block.get(f"{{{version.namespace}}}{role_attribute}", "").strip()
    return flag in ("1", "true") and role in version.roles_for_us


def new_envelope(version: Version) -> tuple[ET.Element, ET.Element]:
    # Prefixed names written as they are: ElementTree's own prefixes are process-wide.
    root = ET.Element("soap:Envelope", {"xmlns:soap": version.namespace})
    return root, ET.SubElement(root, "soap:Body")


def response_document(
    version: Version, slug: str, jobs: list[dict], result: list[soap_types.Node] | None
) -> bytes:
    root, body = new_envelope(version)
    answer = ET.SubElement(body, "tns:submitResponse", {"xmlns:tns": namespace_for(slug)})
    nodes = soap_types.job_nodes(result)
    for job in jobs:
        element = ET.SubElement(answer, "tns:job")
        soap_types.write(element, nodes, soap_types.job_values(job), "tns:")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def fault_document(
    version: Version, slug: str, status: int, error: dict, fault_code: str | None = None
) -> bytes:
    """SOAP 1.1 faultcode/faultstring/detail or SOAP 1.2 Code/Reason/Detail; our code is in
    the detail's <error> (and, in 1.2, the Subcode)."""
    root, body = new_envelope(version)
    fault = ET.SubElement(body, "soap:Fault")
    code = fault_code or (version.sender_fault if status < 500 else version.receiver_fault)
    namespace = namespace_for(slug)
    detail = xml_text(error.get("detail", ""))
    if version is SOAP11:
        ET.SubElement(fault, "faultcode").text = f"soap:{code}"
        ET.SubElement(fault, "faultstring").text = detail
        holder = ET.SubElement(fault, "detail")
    else:
        code_element = ET.SubElement(fault, "soap:Code")
        ET.SubElement(code_element, "soap:Value").text = f"soap:{code}"
        subcode = ET.SubElement(code_element, "soap:Subcode")
        value = ET.SubElement(subcode, "soap:Value", {"xmlns:tns": namespace})
        value.text = f"tns:{error.get('code', 'invalid_request')}"
        reason = ET.SubElement(fault, "soap:Reason")
        ET.SubElement(reason, "soap:Text", {"xml:lang": "en"}).text = detail
        holder = ET.SubElement(fault, "soap:Detail")
    element = ET.SubElement(holder, "tns:error", {"xmlns:tns": namespace})
    soap_types.write(element, soap_types.ERROR_NODES, error, "tns:")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


class SoapRenderer(BaseRenderer):
    format = "soap"
    charset = "utf-8"

    def __init__(self, version: Version = SOAP11) -> None:
        self.version = version
        self.media_type = version.media_type

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        response, view = renderer_context["response"], renderer_context["view"]
        slug = view.kwargs.get("slug", "")
        if response.status_code >= 400:
            fault_code = getattr(response, "soap_fault_code", None)
            return fault_document(self.version, slug, response.status_code, data, fault_code)
        jobs = data["jobs"]
        result = None
        if any(job.get("result") is not None for job in jobs):
            result = soap_types.result_nodes(renderer_context["request"].auth.connector)
        return response_document(self.version, slug, jobs, result)
