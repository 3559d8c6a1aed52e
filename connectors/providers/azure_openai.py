"""Azure OpenAI: chat completions on a deployment, `api-version` in the query, `api-key` header.

The provider's `model` is the deployment's name (Azure routes by deployment, not by model name);
the answer names the model behind it. Content-filter refusals (HTTP 400 `content_filter`, or
`finish_reason: content_filter`) are permanent and say which categories were filtered. A 429
carries `retry-after-ms`, which is honoured to the millisecond.

With `auth: entra_id` the credential is an app registration's client secret and the call carries
a Microsoft Entra ID bearer token, got by the client-credentials grant (connectors.oauth2) for
the Cognitive Services scope; a 401 forgets the token and the call is retried with a new one.
"""

import re

import httpx

from connectors import oauth2
from connectors.errors import ProviderError
from connectors.plugins import MAPPING, URL, Setting, SettingError
from connectors.providers.base import (
    MODEL_NOT_FOUND,
    ChatCompletionsProvider,
    error_body,
    named_error,
    structured_output_setting,
    with_retry_after,
)

# The newest GA version; it takes a json_schema response_format (2024-08-01-preview and later).
API_VERSION = "2024-10-21"
ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"
TENANT = re.compile(r"[A-Za-z0-9.-]{1,100}")  # a GUID or a domain (contoso.onmicrosoft.com)


class AzureOpenAIProvider(ChatCompletionsProvider):
    kind = "azure_openai"
    sends_model = False
    settings = (
        Setting(
            "base_url",
            URL,
            required=True,
            help="The resource's endpoint, e.g. https://contoso.openai.azure.com",
        ),
        Setting("model", required=True, help="The deployment's name, e.g. gpt-4o-invoices"),
        Setting("parameters", MAPPING, help="Sent with every request, e.g. temperature."),
        Setting(
            "api_version",
            default=API_VERSION,
            help="The api-version query parameter, e.g. 2024-10-21 or 2025-01-01-preview.",
        ),
        structured_output_setting(),
        Setting(
            "auth",
            choices=("api_key", "entra_id"),
            default="api_key",
            help="api_key: the credential is the resource's key; entra_id: it is an app "
            "registration's client secret, exchanged for a Microsoft Entra ID token.",
        ),
        Setting("tenant_id", help="auth: entra_id: the directory (tenant) id or domain."),
        Setting("client_id", help="auth: entra_id: the app registration's client id."),
        Setting(
            "token_url",
            URL,
            help="auth: entra_id: empty: https://login.microsoftonline.com/{tenant_id}/oauth2/"
            "v2.0/token (set it for a sovereign cloud).",
        ),
    )

    @property
    def is_entra(self) -> bool:
        return self.setting("auth") == "entra_id"

    @property
    def client_credentials(self) -> oauth2.ClientCredentials:
        token_url = self.setting("token_url") or (
            f"https://login.microsoftonline.com/{self.setting('tenant_id')}/oauth2/v2.0/token"
        )
        return oauth2.ClientCredentials(
            token_url, self.setting("client_id"), self._secret or "", ENTRA_SCOPE
        )

    def headers(self) -> dict[str, str]:
        if self.is_entra:
            token = oauth2.access_token(
                self.client_credentials, self.client, error_class=ProviderError
            )
            return {"Authorization": f"Bearer {token}"}
        return {"api-key": self._secret} if self._secret else {}

    @classmethod
    def check(cls, config: dict) -> None:
        super().check(config)
        entra = ("tenant_id", "client_id", "token_url")
        if config.get("auth") != "entra_id":
            if any(config.get(name) for name in entra):
                raise SettingError(
                    "auth", "tenant_id, client_id and token_url are for auth: entra_id"
                )
            return
        if not config.get("client_id"):
            raise SettingError("client_id", "auth: entra_id needs client_id")
        if not config.get("token_url") and not TENANT.fullmatch(config.get("tenant_id") or ""):
            raise SettingError("tenant_id", "auth: entra_id needs tenant_id (or token_url)")

    def completions_url(self) -> str:
        return f"{self.base_url}/openai/deployments/{self.config.model}/chat/completions"

    def query(self) -> dict[str, str]:
        return {"api-version": self.setting("api_version")}

    def named_failure(self, response: httpx.Response, error: ProviderError) -> ProviderError:
        if self.is_entra and response.status_code == 401:
            oauth2.forget(self.client_credentials)  # revoked or expired early: fetch a new one
            return ProviderError("Azure refused the Entra ID token; retrying with a new one")
        detail = error_body(response).get("error")
        if isinstance(detail, dict) and detail.get("code") == "DeploymentNotFound":
            return named_error(
                MODEL_NOT_FOUND,
                f"no deployment named {self.config.model!r} at {self.base_url} (or it was "
                "created less than 5 minutes ago)",
            )
        error = super().named_failure(response, error)
        try:
            milliseconds = float(response.headers.get("retry-after-ms", ""))
        except ValueError:
            return error  # Retry-After (whole seconds), read by connectors.http, stands
        return error if error.permanent else with_retry_after(error, milliseconds / 1000)

    def test_connection(self) -> str:
        """Azure lists deployments only through its management API, so a tiny completion on
        the deployment checks the key, the endpoint, the api-version and the deployment."""
        completion = self.complete("Reply with OK.")
        return (
            f"OK: deployment {self.config.model} answered (model {completion.model}, "
            f"api-version {self.setting('api_version')})"
        )
