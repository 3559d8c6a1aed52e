"""The one contract every kind keeps: settings declared once, checked, defaulted, exported,
credentials resolved in one place, and no shared module that knows a kind by name."""

import ast
from pathlib import Path

import pytest

from connectors import credentials
from connectors.errors import ConfigError
from connectors.models import Credential
from connectors.plugins import (
    BOOLEAN,
    CREDENTIAL,
    INTEGER,
    MAPPING,
    NUMBER,
    PATH,
    TEXT,
    TEXT_LIST,
    URL,
    Plugin,
    Setting,
    SettingError,
)
from connectors.providers import PROVIDERS
from connectors.sinks import SINKS
from connectors.sources import SOURCES

REGISTRIES = (SOURCES, SINKS, PROVIDERS)
ALL_KINDS = [(registry, kind) for registry in REGISTRIES for kind in registry.kinds()]
ROOT = Path(__file__).resolve().parent.parent


class Outbox(Plugin):
    kind = "outbox"
    settings = (
        Setting("url", URL, required=True, help="Where to send."),
        Setting("retries", INTEGER, default=3, minimum=0, maximum=10),
        Setting("mode", choices=("fast", "safe"), default="safe"),
        Setting("token", CREDENTIAL),
        Setting("headers", MAPPING),
    )


@pytest.mark.parametrize(
    ("type_", "good", "bad", "message"),
    [
        (TEXT, "a", 1, "must be text"),
        (INTEGER, 3, "3", "must be a whole number"),
        (INTEGER, 3, True, "must be a whole number"),
        (NUMBER, 2.5, "2.5", "must be a number"),
        (BOOLEAN, False, "no", "must be true or false"),
        (URL, "https://erp.example/in", "ftp://erp", "http:// or https://"),
        (PATH, "/srv/drop", 5, "must be"),
        (TEXT_LIST, ["a", "b"], "a,b", "must be a list of texts"),
        (MAPPING, {"a": 1}, [1], "must be a mapping of names to values"),
        (CREDENTIAL, "erp-token", 7, "must be"),
    ],
)
def test_a_setting_accepts_its_type_and_names_itself_when_it_refuses(type_, good, bad, message):
    setting = Setting("thing", type_)

    assert setting.check(good) == good
    with pytest.raises(SettingError, match=message) as refused:
        setting.check(bad)
    assert refused.value.setting == "thing"
    assert "thing" in str(refused.value)


def test_a_config_gets_its_defaults_and_keeps_what_was_set():
    assert Outbox.validate_config({"url": "https://erp.example/in", "mode": "fast"}) == {
        "url": "https://erp.example/in",
        "retries": 3,
        "mode": "fast",
    }


@pytest.mark.parametrize(
    ("config", "setting", "message"),
    [
        ({}, "url", "missing url"),
        ({"url": ""}, "url", "missing url"),
        (
            {"url": "https://x", "colour": "red"},
            "colour",
            "unknown keys colour; known: url, retries, mode, token, headers",
        ),
        ({"url": "https://x", "retries": 11}, "retries", "at most 10"),
        ({"url": "https://x", "retries": -1}, "retries", "at least 0"),
        ({"url": "https://x", "mode": "slow"}, "mode", "must be one of fast, safe"),
    ],
)
def test_a_bad_config_is_refused_naming_the_setting(config, setting, message):
    with pytest.raises(SettingError, match=message) as refused:
        Outbox.validate_config(config)

    assert refused.value.setting == setting


def test_the_export_keeps_set_settings_in_declared_order():
    config = {"headers": {"X-Trace": "1"}, "url": "https://x", "token": "t", "mode": None}

    assert list(Outbox.exported(config)) == ["url", "token", "headers"]


@pytest.mark.django_db
def test_credentials_are_resolved_in_one_place_and_a_missing_one_is_named():
    stored = Credential(name="erp-token", kind=Credential.Kind.BEARER)
    stored.set_value("s3cret")
    stored.save()

    assert Outbox.credential_settings() == ("token",)
    assert credentials.secrets_for(Outbox, {"url": "https://x", "token": "erp-token"}) == {
        "token": "s3cret"
    }
    assert credentials.missing(Outbox, {"token": "gone"}) == {"token": "gone"}
    assert credentials.missing(Outbox, {"token": "gone"}, known={"gone"}) == {}
    with pytest.raises(ConfigError, match="token: no credential named 'gone'"):
        credentials.secrets_for(Outbox, {"token": "gone"})


@pytest.mark.parametrize(("registry", "kind"), ALL_KINDS, ids=lambda v: getattr(v, "what", v))
def test_every_registered_kind_keeps_the_contract(registry, kind):
    plugin = registry.get(kind)

    assert plugin.kind == kind
    assert issubclass(plugin, Plugin)
    names = [setting.name for setting in plugin.settings]
    assert len(names) == len(set(names)), "a setting is declared twice"
    for setting in plugin.settings:
        if setting.default is not None:
            assert setting.check(setting.default) == setting.default, setting.name


def kind_names_compared_in(path: Path, kinds: set[str]) -> list[str]:
    """Kind names a module tests for (`kind == "db_poll"`, `kind in ("amqp", ...)`, kind="x")."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        constants = []
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                is_collection = isinstance(side, ast.Tuple | ast.List | ast.Set)
                constants += side.elts if is_collection else [side]
        elif isinstance(node, ast.keyword) and node.arg and node.arg.endswith("kind"):
            constants.append(node.value)
        found += [
            f"{path.relative_to(ROOT)}:{c.lineno} {c.value!r}"
            for c in constants
            if isinstance(c, ast.Constant) and c.value in kinds
        ]
    return found


def test_no_shared_module_knows_a_kind_by_name():
    kinds = {kind for registry in REGISTRIES for kind in registry.kinds()}
    plugin_packages = [ROOT / "connectors" / name for name in ("sources", "sinks", "providers")]
    shared = [
        path
        for folder in (ROOT / "connectors", ROOT / "console")
        for path in folder.rglob("*.py")
        if "migrations" not in path.parts and not any(p in path.parents for p in plugin_packages)
    ]

    assert len(shared) > 20  # the scan found the modules
    assert [hit for path in shared for hit in kind_names_compared_in(path, kinds)] == []


def test_no_plugin_imports_another_plugin():
    imports = []
    for package in ("sources", "sinks", "providers"):
        for path in (ROOT / "connectors" / package).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    imports.append((package, path.stem, node.module))
    # A kind's module is one a registry names; a package's helpers shared by some of its kinds
    # (providers/aws.py for bedrock and amazon_q) are no kind and may be imported like base.
    kind_modules = {
        path.rsplit(".", 1)[0] for registry in REGISTRIES for path, _ in registry._kinds.values()
    }
    crossing = [
        f"{package}/{module}.py imports {target}"
        for package, module, target in imports
        if target.startswith(("connectors.sources.", "connectors.sinks.", "connectors.providers."))
        and (target in kind_modules or not target.startswith(f"connectors.{package}."))
    ]

    assert imports  # the scan read the plugins
    assert crossing == []
