"""The only module that touches keys: field encryption (MultiFernet) and the keyed hashes."""

import hashlib
import hmac
import json
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

from connectors.errors import DecryptionError


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def _current() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    """Encrypt under the first key of FIELD_ENCRYPTION_KEYS."""
    return _current().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _current().decrypt(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError(
            "a stored secret cannot be decrypted: its key is missing from FIELD_ENCRYPTION_KEYS"
        ) from None


def rotate(token: str) -> str:
    """Re-encrypt a token under the first key (it may have been made with any listed key)."""
    try:
        return _current().rotate(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError(
            "a stored secret cannot be re-encrypted: its key is missing from FIELD_ENCRYPTION_KEYS"
        ) from None


def audit_mac(message: bytes) -> str:
    """HMAC-SHA256 of an audit event; the key lives outside the database."""
    return hmac.new(settings.AUDIT_HMAC_KEY.encode(), message, hashlib.sha256).hexdigest()


def redaction_hash_key() -> bytes:
    return settings.REDACTION_HMAC_KEY.encode()


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def record_fingerprint(record) -> str:
    """A keyed hash of a raw record (canonical JSON): equal records, equal fingerprints, and
    the PII in it cannot be recovered by hashing guesses without the key."""
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    message = b"idempotency\x00" + canonical.encode()
    return hmac.new(redaction_hash_key(), message, hashlib.sha256).hexdigest()
