import codecs

from connectors.plugins import BOOLEAN, INTEGER, TEXT, TEXT_LIST, Setting, SettingError
from connectors.sources.base import Source

BODY_TYPES = ("json", "xml", "csv", "form", "soap")
# Applied when a setting is not set; not stored, so a connector's saved config stays as it was.
BODY_DEFAULTS = {
    "accepts": ["json"],
    "record_element": "",
    "delimiter": ",",
    "encoding": "utf-8",
    "header": True,
}


class WebhookSource(Source):
    """Records are pushed by the legacy system to the HTTP API; nothing to poll."""

    kind = "webhook"
    settings = (
        Setting(
            "requests_per_minute",
            INTEGER,
            minimum=1,
            help="Intake limit for all of this connector's API keys together; "
            "empty: INTAKE_REQUESTS_PER_MINUTE.",
        ),
        Setting(
            "accepts",
            TEXT_LIST,
            help=f"Body types the intake accepts, among {', '.join(BODY_TYPES)}; "
            "anything else is refused with 415. Empty: json.",
        ),
        Setting(
            "record_element",
            TEXT,
            help="XML and SOAP: the element that holds one record (every one in the body is a "
            "record); empty: the root element (SOAP: the Body's first element) is the record.",
        ),
        Setting("delimiter", TEXT, help="CSV: the field delimiter; empty: a comma."),
        Setting("encoding", TEXT, help="CSV: the body's encoding; empty: utf-8."),
        Setting("header", BOOLEAN, help="CSV: the first row names the fields; empty: true."),
    )

    @classmethod
    def check(cls, config: dict) -> None:
        accepts = config.get("accepts")
        if accepts is not None:
            if not accepts:
                raise SettingError("accepts", "accepts must name at least one body type")
            if unknown := [item for item in accepts if item not in BODY_TYPES]:
                raise SettingError(
                    "accepts",
                    f"accepts: unknown body type {unknown[0]!r}; known: {', '.join(BODY_TYPES)}",
                )
        delimiter = config.get("delimiter")
        if delimiter is not None and len(delimiter) != 1:
            raise SettingError("delimiter", "delimiter must be one character")
        encoding = config.get("encoding")
        if encoding is not None:
            try:
                codecs.lookup(encoding)
            except LookupError:
                raise SettingError("encoding", f"encoding {encoding!r} is unknown") from None
        element = config.get("record_element")
        if element is not None and not element.replace("-", "_").replace(".", "_").isidentifier():
            raise SettingError("record_element", "record_element must be an XML element name")

    @classmethod
    def intake_requests_per_minute(cls, config: dict) -> int | None:
        return config.get("requests_per_minute")

    @classmethod
    def intake_body_settings(cls, config: dict) -> dict:
        """How the intake reads a body: the body settings, with their defaults."""
        return {
            name: default if config.get(name) in (None, "") else config[name]
            for name, default in BODY_DEFAULTS.items()
        }
