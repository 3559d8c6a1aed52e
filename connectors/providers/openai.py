"""Any OpenAI-compatible chat-completions API: OpenAI, vLLM, llama.cpp's server, Ollama's /v1.

Servers differ in the structured output they accept, hence the `structured_output` setting; one
that refuses the mode is named (structured_output_unsupported), not retried. Azure OpenAI has a
kind of its own (azure_openai); an *.openai.azure.com base URL here still gets the `api-key`
header, for Azure's OpenAI-compatible /openai/v1 API. Secrets never enter an error message.
"""

from connectors.errors import ProviderError
from connectors.plugins import MAPPING, URL, Setting
from connectors.providers.base import (
    MODEL_NOT_FOUND,
    ChatCompletionsProvider,
    named_error,
    structured_output_setting,
)

LISTED_MODELS_SHOWN = 10


class OpenAIProvider(ChatCompletionsProvider):
    kind = "openai"
    settings = (
        Setting("base_url", URL, required=True, help="e.g. https://api.openai.com/v1"),
        Setting("model", required=True, help="e.g. gpt-4o-mini"),
        Setting("parameters", MAPPING, help="Sent with every request, e.g. temperature."),
        structured_output_setting(),
    )

    def headers(self) -> dict[str, str]:
        if not self._secret:
            return {}
        if ".openai.azure.com" in self.base_url:
            return {"api-key": self._secret}
        return {"Authorization": f"Bearer {self._secret}"}

    def completions_url(self) -> str:
        return self.base_url + "/chat/completions"

    def test_connection(self) -> str:
        """The model list must name the configured model; a server without a list must answer
        a prompt with it."""
        response = self.exchange("GET", self.base_url + "/models")
        if response.status_code == 404:
            completion = self.complete("Reply with OK.")
            return (
                f"OK: the server does not list its models (no /models), but model "
                f"{completion.model} answered a test prompt"
            )
        if not response.is_success:
            raise self.failure(response)
        listed = [str(item.get("id")) for item in self.answer_of(response).get("data") or []]
        if self.config.model not in listed:
            shown = ", ".join(listed[:LISTED_MODELS_SHOWN]) or "none"
            hidden = len(listed) - LISTED_MODELS_SHOWN
            more = f" and {hidden} more" if hidden > 0 else ""
            raise named_error(
                MODEL_NOT_FOUND,
                f"the server does not serve model {self.config.model!r} (it lists {shown}{more})",
            )
        return f"OK: the server lists model {self.config.model}; {self.credential_check()}"

    def credential_check(self) -> str:
        """Whether the credential was what let us in: some local servers check none."""
        if not self._secret:
            return "no credential is configured"
        try:
            anonymous = self.exchange("GET", self.base_url + "/models", headers={})
        except ProviderError:
            return "it accepted the credential"
        if anonymous.is_success:
            return "note: it answered without the credential too, so it checks none"
        return "it accepted the credential"
