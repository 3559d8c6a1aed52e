"""Azure OpenAI: chat completions on a deployment, `api-version` in the query, `api-key` header.

The provider's `model` is the deployment's name (Azure routes by deployment, not by model name);
the answer names the model behind it. Content-filter refusals (HTTP 400 `content_filter`, or
`finish_reason: content_filter`) are permanent and say which categories were filtered. A 429
carries `retry-after-ms`, which is honoured to the millisecond.
"""

import httpx

from connectors.errors import ProviderError
from connectors.plugins import MAPPING, URL, Setting
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
    )

    def headers(self) -> dict[str, str]:
        return {"api-key": self._secret} if self._secret else {}

    def completions_url(self) -> str:
        return f"{self.base_url}/openai/deployments/{self.config.model}/chat/completions"

    def query(self) -> dict[str, str]:
        return {"api-version": self.setting("api_version")}

    def named_failure(self, response: httpx.Response, error: ProviderError) -> ProviderError:
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
