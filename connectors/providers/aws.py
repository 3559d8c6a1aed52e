"""What the AWS kinds (bedrock, amazon_q) share: the access key, SigV4 signing, AWS error types.

Not a kind itself. The credential (kind `aws_access_key`) holds the access key id, the secret
access key and, for temporary credentials, the session token: as `ID:SECRET[:TOKEN]` or as the
JSON that `aws sts assume-role` prints (`AccessKeyId`, `SecretAccessKey`, `SessionToken`).
Requests are signed with botocore's SigV4 signer (no boto3 client: httpx sends them, through
the one outbound client factory). AWS names its errors by type (`x-amzn-ErrorType`, or the
body's `__type`): the type, not only the status, says whether a retry can help.
"""

import json
import re
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from connectors import http
from connectors.errors import ConfigError, ProviderError
from connectors.plugins import Setting, SettingError
from connectors.providers.base import MODEL_NOT_FOUND, Provider, error_body, named_error

# Error types a retry can help with; every other type is permanent, whatever its status.
RETRYABLE_TYPES = {
    "ThrottlingException",
    "ServiceUnavailableException",
    "InternalServerException",
    "InternalFailure",
    "ModelTimeoutException",
    "ModelNotReadyException",
    "ModelErrorException",  # the model failed on this request; AWS documents a retry
    "ExternalResourceException",
    "RequestTimeout",
    "RequestTimeoutException",
}
CREDENTIAL_TYPES = {
    "UnrecognizedClientException": "the access key id is not known to AWS",
    "InvalidSignatureException": "the signature does not match (check the secret access key)",
    "SignatureDoesNotMatch": "the signature does not match (check the secret access key)",
    "ExpiredTokenException": "the session token has expired (store fresh credentials)",
    "IncompleteSignatureException": "the request's signature is incomplete",
    "MissingAuthenticationTokenException": "no credential was sent",
}
REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")


def region_setting(help_text: str) -> Setting:
    return Setting("region", default="us-east-1", help=help_text)


@dataclass(frozen=True)
class AccessKey:
    access_key_id: str
    secret_access_key: str
    session_token: str = ""

    def __repr__(self) -> str:  # never the secret, even in a traceback
        return f"AccessKey({self.access_key_id!r})"


def parse_access_key(value: str | None) -> AccessKey:
    """The access key a credential holds; ConfigError (quoting none of it) if it is not one."""
    if not value:
        raise ConfigError("an AWS provider needs a credential of kind AWS access key")
    text = value.strip()
    if text.startswith("{"):
        try:
            found = json.loads(text)
        except ValueError:
            found = None
        found = found.get("Credentials", found) if isinstance(found, dict) else {}
        parts = [
            str(found.get(name) or found.get(other) or "")
            for name, other in (
                ("AccessKeyId", "access_key_id"),
                ("SecretAccessKey", "secret_access_key"),
                ("SessionToken", "session_token"),
            )
        ]
    else:
        parts = ([*text.split(":"), ""])[:3] if text.count(":") in (1, 2) else ["", "", ""]
    if not parts[0] or not parts[1]:
        raise ConfigError(
            "the credential is not an AWS access key: store ACCESS_KEY_ID:SECRET_ACCESS_KEY"
            "[:SESSION_TOKEN] or the JSON with AccessKeyId, SecretAccessKey and SessionToken"
        )
    return AccessKey(*parts)


def sign(
    key: AccessKey, service: str, region: str, method: str, url: str, body: bytes, headers: dict
) -> dict[str, str]:
    """The headers to send: `headers` plus X-Amz-Date, X-Amz-Security-Token and Authorization."""
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    credentials = Credentials(key.access_key_id, key.secret_access_key, key.session_token or None)
    SigV4Auth(credentials, service, region).add_auth(request)
    return dict(request.headers.items())


def error_type(response: httpx.Response, body: dict) -> str:
    """`ThrottlingException` from `x-amzn-ErrorType: ThrottlingException:http://…` or the body's
    `__type` (`com.amazon.coral.service#UnrecognizedClientException`)."""
    raw = response.headers.get("x-amzn-ErrorType") or str(body.get("__type") or "")
    return raw.split(":", 1)[0].rsplit("#", 1)[-1].strip()


class AwsProvider(Provider):
    """A kind that speaks an AWS REST-JSON service, signed with SigV4 as `signing_name`."""

    signing_name = ""
    service_label = "AWS"

    def __init__(self, config, secret, *, client=None) -> None:
        super().__init__(config, secret, client=client)
        self._key: AccessKey | None = None

    @property
    def access_key(self) -> AccessKey:
        if self._key is None:
            self._key = parse_access_key(self._secret)
        return self._key

    @property
    def region(self) -> str:
        return self.setting("region")

    @property
    def secrets(self) -> tuple[str | None, ...]:
        try:
            key = self.access_key
        except ConfigError:
            return (self._secret,)
        return (self._secret, key.secret_access_key, key.session_token)

    def exchange(self, method: str, url: str, *, body=None, params=None, headers=None):
        """One signed exchange: the body is serialised once, so the bytes signed are the bytes
        sent."""
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params)
        content = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        plain = {"Content-Type": "application/json", "Accept": "application/json"}
        if body is None:
            plain.pop("Content-Type")
        signed = sign(self.access_key, self.signing_name, self.region, method, url, content, plain)
        try:
            return self.client.request(method, url, content=content or None, headers=signed)
        except httpx.HTTPError as error:
            raise http.transport_failure(
                error, what="provider", error_class=ProviderError
            ) from None

    @classmethod
    def check(cls, config: dict) -> None:
        super().check(config)
        if not REGION.fullmatch(config.get("region") or ""):
            raise SettingError("region", "region must be an AWS region such as eu-central-1")

    def named_failure(self, response: httpx.Response, error: ProviderError) -> ProviderError:
        body = error_body(response)
        kind = error_type(response, body)
        message = self.scrub(str(body.get("message") or body.get("Message") or "")[:300])
        status = response.status_code
        said = f"{self.service_label} answered HTTP {status} {kind or 'error'}" + (
            f": {message}" if message else ""
        )
        if kind in CREDENTIAL_TYPES:
            return named_error(error.code, f"{said} ({CREDENTIAL_TYPES[kind]})")
        if kind == "ResourceNotFoundException":
            return named_error(MODEL_NOT_FOUND, f"{said} (model {self.config.model!r})")
        if kind:
            return self.named_type(kind, said, error)
        return error

    def named_type(self, kind: str, said: str, error: ProviderError) -> ProviderError:
        """A kind names more of its own types first (a context too long), then calls this."""
        return named_error(
            error.code, said, permanent=kind not in RETRYABLE_TYPES, retry_after=error.retry_after
        )
