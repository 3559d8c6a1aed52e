"""Credential references to secrets: the one place a kind's credential settings are resolved.

A config names credentials (`"credential": "erp-token"`); the value is decrypted here, at the
moment of use, and handed to the kind. Nothing else looks credentials up by name.
"""

from connectors.errors import ConfigError
from connectors.models import Credential
from connectors.plugins import Plugin


def reveal(credential: Credential | None) -> str | None:
    """The decrypted value, noted as used; None for no credential."""
    if credential is None:
        return None
    credential.mark_used()
    return credential.reveal()


def missing(kind: type[Plugin], config: dict, known: set[str] | None = None) -> dict[str, str]:
    """Credential settings that name no credential: {setting: name}. `known` adds names that
    are about to exist (a configuration file creates them in the same import)."""
    named = {key: config[key] for key in kind.credential_settings() if config.get(key)}
    existing = set(
        Credential.objects.filter(name__in=named.values()).values_list("name", flat=True)
    )
    existing |= known or set()
    return {key: name for key, name in named.items() if name not in existing}


def secrets_for(kind: type[Plugin], config: dict, *, mark_used: bool = True) -> dict[str, str]:
    """The decrypted values of the credentials a config names, by setting."""
    named = {key: config[key] for key in kind.credential_settings() if config.get(key)}
    found = {c.name: c for c in Credential.objects.filter(name__in=named.values())}
    secrets = {}
    for key, name in named.items():
        if name not in found:
            raise ConfigError(f"{key}: no credential named {name!r}")
        secrets[key] = reveal(found[name]) if mark_used else found[name].reveal()
    return secrets
