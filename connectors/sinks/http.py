"""POST the result to the legacy system's callback URL, signed with Standard Webhooks headers.

The webhook-id is the job id on every attempt, so the receiver can de-duplicate a retried
delivery: at-least-once delivery, exactly-once effect. 409 Conflict means "already have it".
"""

import json
import re
from dataclasses import replace
from datetime import UTC, datetime

import httpx
from standardwebhooks.webhooks import Webhook

from connectors import http, oauth2
from connectors.errors import SinkError
from connectors.plugins import BOOLEAN, CREDENTIAL, MAPPING, NUMBER, URL, Setting, SettingError
from connectors.sinks.base import Sink
from connectors.work import Delivery, WriteOutcome

OAUTH2_KEYS = ("token_url", "client_id", "scope")
# Header names that carry secrets: their values belong in a credential (encrypted, write-only),
# not in the sink config, which the admin shows and the audit log and exports keep.
SECRET_HEADER = re.compile(r"auth|key|token|secret|password|passwd|cookie|session|signature", re.I)


class HttpSink(Sink):
    kind = "http"
    can_restore_tokens = True
    can_send_test_delivery = True
    form_tools_template = "admin/connectors/tools/test_delivery.html"
    settings = (
        Setting("url", URL, required=True, help="The legacy system's callback address."),
        Setting(
            "auth",
            default="bearer",
            choices=("bearer", "basic", "header", "oauth2"),
            help="How the credential is sent.",
        ),
        Setting(
            "credential",
            CREDENTIAL,
            help="Token, user:password or OAuth2 client secret.",
            credential_kinds=("bearer", "basic", "api_key", "oauth2"),
        ),
        Setting("header", help="auth: header: the header that carries the credential."),
        Setting(
            "signing_credential",
            CREDENTIAL,
            help="Signs each delivery (Standard Webhooks) so the receiver can verify it; "
            "without it, deliveries are not signed.",
            credential_kinds=("hmac_secret",),
        ),
        Setting(
            "timeout", NUMBER, default=30, minimum=1, maximum=300, help="Seconds per delivery."
        ),
        Setting("headers", MAPPING, help="Extra plain headers (never secrets)."),
        Setting(
            "report_dead",
            BOOLEAN,
            default=False,
            help="Also POST a job that ends dead ({job_id, status: dead, error}) to the url, "
            "with webhook-id <job id>.dead.",
        ),
        Setting("token_url", URL, help="auth: oauth2: the token endpoint."),
        Setting("client_id", help="auth: oauth2: the client id."),
        Setting("scope", help="auth: oauth2: the scope to ask for."),
    )

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
        auth = self.config.get("auth", "bearer")
        if token and auth == "basic":
            user, _, password = token.partition(":")
            headers["Authorization"] = httpx.BasicAuth(user, password)._auth_header
        elif token and auth == "header":
            headers[self.config["header"]] = token
        elif token and auth == "oauth2":
            access_token = oauth2.access_token(
                self.client_credentials, self.client, error_class=SinkError
            )
            headers["Authorization"] = f"Bearer {access_token}"
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    @property
    def client_credentials(self) -> oauth2.ClientCredentials:
        """auth: oauth2: the credential holds the client secret, the config the rest."""
        return oauth2.ClientCredentials(
            token_url=self.config["token_url"],
            client_id=self.config["client_id"],
            client_secret=self._secrets["credential"],
            scope=self.config.get("scope", ""),
        )

    def report_failure(self, delivery: Delivery, error: str) -> None:
        """A dead job, told to the legacy system once: its own webhook-id (`<job id>.dead`) so
        a receiver de-duplicates it apart from the result it will never get."""
        if not self.config.get("report_dead"):
            return
        body = json.dumps(
            {
                "job_id": delivery.job_id,
                "connector": delivery.connector,
                "source_reference": delivery.source_reference,
                "status": "dead",
                "error": error,
                "attempt": delivery.attempt,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )
        notice = replace(delivery, job_id=f"{delivery.job_id}.dead")
        try:
            response = self.client.post(
                self.config["url"], content=body.encode(), headers=self.headers(notice, body)
            )
        except httpx.HTTPError as error:
            raise http.transport_failure(error, what="callback", error_class=SinkError) from None
        if response.status_code != 409:  # 409: the receiver already has it
            http.classify_response(
                response,
                what="callback",
                error_class=SinkError,
                secrets=tuple(self._secrets.values()),
            )

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
        if response.status_code == 401 and self.config.get("auth") == "oauth2":
            oauth2.forget(self.client_credentials)  # revoked or expired early: fetch a new one
            raise SinkError("callback refused the access token; retrying with a new one")
        http.classify_response(
            response, what="callback", error_class=SinkError, secrets=tuple(self._secrets.values())
        )
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
    def save_warnings(cls, config: dict) -> list[str]:
        """A callback on a private network saves, then every delivery is refused: say so now."""
        warnings = []
        for name in ("url", "token_url"):
            address = config.get(name) and http.blocked_address(config[name])
            if address:
                network = f"{address}/{128 if ':' in address else 32}"
                warnings.append(
                    f"Private address: {name} {httpx.URL(config[name]).host} resolves to "
                    f"{address}, so every delivery will be refused when jobs run. Allow it with "
                    f"OUTBOUND_ALLOWED_NETWORKS (e.g. {network}) if it is intended."
                )
        return warnings

    @classmethod
    def describe(cls, config: dict) -> str:
        return "HTTP callback, signed" if config.get("signing_credential") else "HTTP callback"

    @classmethod
    def check(cls, config: dict) -> None:
        auth = config["auth"]
        if (auth == "header") != bool(config.get("header")):
            raise SettingError(
                "header", "auth: header needs header (its name, e.g. X-Api-Key), and only it"
            )
        if auth == "header" and not re.fullmatch(r"[A-Za-z0-9-]{1,100}", config["header"]):
            raise SettingError("header", "header must be a header name such as X-Api-Key")
        if auth == "oauth2":
            missing = [key for key in ("token_url", "client_id", "credential") if key not in config]
            if missing:
                raise SettingError(
                    missing[0],
                    f"auth: oauth2 needs {', '.join(missing)} (the credential holds the client "
                    "secret)",
                )
        elif set(config) & set(OAUTH2_KEYS):
            raise SettingError("auth", "token_url, client_id and scope are for auth: oauth2")
        headers = config.get("headers", {})
        if not all(isinstance(value, str) for value in headers.values()):
            raise SettingError("headers", "headers must map names to strings")
        secret_looking = sorted(name for name in headers if SECRET_HEADER.search(name))
        if secret_looking:
            raise SettingError(
                "headers",
                f"{', '.join(secret_looking)} would keep a secret in plain text: put it in a "
                "credential and use auth: header with header: <name> (or bearer/basic/oauth2)",
            )
