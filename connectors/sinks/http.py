"""POST the result to the legacy system's callback URL, signed with Standard Webhooks headers.

The webhook-id is the job id on every attempt, so the receiver can de-duplicate a retried
delivery: at-least-once delivery, exactly-once effect. 409 Conflict means "already have it".
"""

import json
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
from standardwebhooks.webhooks import Webhook

from connectors import http
from connectors.errors import SinkError
from connectors.sinks.base import Delivery, Sink, WriteOutcome

KNOWN_KEYS = {"url", "credential", "auth", "signing_credential", "timeout", "headers"}


class HttpSink(Sink):
    kind = "http"
    can_restore_tokens = True
    credential_fields = ("credential", "signing_credential")

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = http.build_client(timeout=float(self.config.get("timeout", 30)))
        return self._client

    def headers(self, delivery: Delivery, body: str) -> dict[str, str]:
        now = datetime.now(tz=UTC)
        headers = {
            **self.config.get("headers", {}),
            "Content-Type": "application/json",
            "Idempotency-Key": delivery.job_id,
            "webhook-id": delivery.job_id,
            "webhook-timestamp": str(int(now.timestamp())),
        }
        signing_secret = self._secrets.get("signing_credential")
        if signing_secret:
            headers["webhook-signature"] = Webhook(signing_secret).sign(delivery.job_id, now, body)
        token = self._secrets.get("credential")
        if token and self.config.get("auth") == "basic":
            user, _, password = token.partition(":")
            headers["Authorization"] = httpx.BasicAuth(user, password)._auth_header
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def write(self, delivery: Delivery) -> WriteOutcome:
        url = self.config["url"]
        body = json.dumps(
            {
                "job_id": delivery.job_id,
                "connector": delivery.connector,
                "source_reference": delivery.source_reference,
                "result": delivery.result,
                "attempt": delivery.attempt,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )
        try:
            response = self.client.post(
                url, content=body.encode(), headers=self.headers(delivery, body)
            )
        except httpx.HTTPError as error:
            raise http.transport_failure(error, what="callback", error_class=SinkError) from None
        if response.status_code == 409:
            return WriteOutcome(target=url, status="409", detail="already written")
        http.classify_response(response, what="callback", error_class=SinkError)
        return WriteOutcome(target=url, status=str(response.status_code))

    def test_connection(self) -> str:
        """A cheap authenticated OPTIONS request: reachable, TLS fine, credential accepted?"""
        url = self.config["url"]
        headers = {k: v for k, v in self.headers(self.probe, "").items() if k == "Authorization"}
        try:
            response = self.client.request("OPTIONS", url, headers=headers)
        except httpx.HTTPError as error:
            raise SinkError(f"callback: {http.describe_transport_error(error)}") from None
        if response.status_code in (401, 403):
            raise SinkError(
                f"callback answered HTTP {response.status_code}: the credential was refused"
            )
        if response.status_code == 404:
            raise SinkError("callback answered HTTP 404: check the URL's path")
        if response.status_code >= 500:
            raise SinkError(
                f"callback answered HTTP {response.status_code}: the receiver is failing"
            )
        return f"OK: {url} answered HTTP {response.status_code}"

    probe = Delivery(
        job_id="connection-test", connector="", source_reference="", result={}, attempt=0
    )

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        unknown = set(config) - KNOWN_KEYS
        if unknown:
            raise ValueError(
                f"unknown keys {', '.join(sorted(unknown))}; known: {', '.join(sorted(KNOWN_KEYS))}"
            )
        url = config.get("url")
        if not url:
            raise ValueError("the http sink needs a url")
        parts = urlsplit(str(url))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the url must be an http:// or https:// address")
        if config.get("auth", "bearer") not in ("bearer", "basic"):
            raise ValueError("auth must be 'bearer' or 'basic'")
        timeout = config.get("timeout", 30)
        if not isinstance(timeout, int | float) or not 1 <= timeout <= 300:
            raise ValueError("timeout must be a number of seconds between 1 and 300")
        headers = config.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ValueError("headers must map names to strings")
        if {name.lower() for name in headers} & {"authorization", "webhook-signature"}:
            raise ValueError("set authentication with a credential, not in headers")
        return config
