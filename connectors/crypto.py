"""The only module that touches keys: field encryption (MultiFernet), the keyed hashes and the
audit checkpoints' signing key (Ed25519)."""

import base64
import hashlib
import hmac
import json
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
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


@cache
def _signing_key(encoded: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(encoded))


def signing_public_key() -> str:
    """The public half of AUDIT_SIGNING_KEY (raw 32 bytes, base64): what auditors verify with."""
    public = _signing_key(settings.AUDIT_SIGNING_KEY).public_key()
    return base64.b64encode(public.public_bytes_raw()).decode()


def key_id(public_key: str) -> str:
    """A public key's short name: the first 16 hex digits of the SHA-256 of its raw bytes."""
    return hashlib.sha256(base64.b64decode(public_key)).hexdigest()[:16]


def sign(message: bytes) -> str:
    """An Ed25519 signature (base64) of message with AUDIT_SIGNING_KEY."""
    return base64.b64encode(_signing_key(settings.AUDIT_SIGNING_KEY).sign(message)).decode()
