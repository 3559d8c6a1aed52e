"""The contract every kind keeps (sources, sinks, AI providers): its settings, declared once.

A kind lists its settings as `Setting`s. From that one declaration come the checks the admin and
`import_config` run (unknown names, required ones, types, choices, ranges), the defaults, the
export, which settings name a credential (resolved to secrets by `connectors.credentials`), and
the admin's form. A kind adds only what a declaration cannot say, in its `check` hook.
"""

from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

# What a setting holds; the admin's form chooses its widget from it.
TEXT, INTEGER, NUMBER, BOOLEAN = "text", "integer", "number", "boolean"
URL, PATH, TEXT_LIST, MAPPING = "url", "path", "text list", "mapping"
CREDENTIAL = "credential"  # the name of a Credential; its value is a secret, used only at run time
URL_SCHEMES = ("http", "https")


class SettingError(ValueError):
    """A setting's value cannot work; `setting` names it so a form can show the error beside it
    (the message names it too, for where it stands alone: an import report, a log)."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting
        self.message = message


@dataclass(frozen=True)
class Setting:
    name: str
    type: str = TEXT
    required: bool = False
    default: Any = None
    help: str = ""
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    credential_kinds: tuple[str, ...] = ()  # CREDENTIAL: the Credential kinds that fit it

    @property
    def is_credential(self) -> bool:
        return self.type == CREDENTIAL

    def check(self, value: Any) -> Any:
        """The value if it is one this setting can hold; SettingError saying why not."""
        if not _has_type(self.type, value):
            self.refuse(f"must be {_described(self.type)}")
        if self.choices and value not in self.choices:
            self.refuse(f"must be one of {', '.join(map(str, self.choices))}")
        if self.minimum is not None and value < self.minimum:
            self.refuse(f"must be at least {self.minimum:g}")
        if self.maximum is not None and value > self.maximum:
            self.refuse(f"must be at most {self.maximum:g}")
        if self.type == URL:
            parts = urlsplit(value)
            if parts.scheme not in URL_SCHEMES or not parts.hostname:
                self.refuse("must be an http:// or https:// address")
        return value

    def refuse(self, problem: str):
        raise SettingError(self.name, f"{self.name} {problem}")


def _has_type(kind: str, value: Any) -> bool:
    if kind in (TEXT, URL, PATH, CREDENTIAL):
        return isinstance(value, str)
    if kind == INTEGER:
        return type(value) is int
    if kind == NUMBER:
        return type(value) in (int, float)
    if kind == BOOLEAN:
        return isinstance(value, bool)
    if kind == TEXT_LIST:
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    if kind == MAPPING:
        return isinstance(value, dict) and all(isinstance(key, str) for key in value)
    raise AssertionError(f"unknown setting type {kind!r}")


def _described(kind: str) -> str:
    return {
        INTEGER: "a whole number",
        NUMBER: "a number",
        BOOLEAN: "true or false",
        TEXT_LIST: "a list of texts",
        MAPPING: "a mapping of names to values",
        CREDENTIAL: "the name of a credential",
    }.get(kind, "text")


def is_unset(value: Any) -> bool:
    return value is None or value == ""


class Plugin:
    """What sources, sinks and providers share: a kind, its settings, its checks."""

    kind: ClassVar[str] = ""
    settings: ClassVar[tuple[Setting, ...]] = ()
    # A template with the kind's own tools on its admin form (list tables, send a test).
    form_tools_template: ClassVar[str] = ""

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        """The config with its defaults filled in; SettingError naming what is wrong."""
        if not isinstance(config, dict):
            raise ValueError("must be a JSON object")
        declared = {setting.name: setting for setting in cls.settings}
        unknown = sorted(set(config) - set(declared))
        if unknown:
            known = ", ".join(declared) or "none: this kind takes no settings"
            raise SettingError(unknown[0], f"unknown keys {', '.join(unknown)}; known: {known}")
        missing = [s.name for s in cls.settings if s.required and is_unset(config.get(s.name))]
        if missing:
            raise SettingError(missing[0], f"missing {', '.join(missing)}")
        normalised = {}
        for name, setting in declared.items():
            value = config.get(name)
            if not is_unset(value):
                normalised[name] = setting.check(value)
            elif setting.default is not None:
                normalised[name] = setting.default
        cls.check(normalised)
        return normalised

    @classmethod
    def check(cls, config: dict) -> None:
        """Rules between settings that a declaration cannot state; raise SettingError."""

    @classmethod
    def credential_settings(cls) -> tuple[str, ...]:
        return tuple(setting.name for setting in cls.settings if setting.is_credential)

    @classmethod
    def exported(cls, config: dict) -> dict:
        """The settings that were set, in the order the kind declares them (for export)."""
        return {s.name: config[s.name] for s in cls.settings if config.get(s.name) is not None}
