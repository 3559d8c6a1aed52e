"""Any OpenAI-compatible chat-completions API: OpenAI, Azure OpenAI, Ollama, vLLM, llama.cpp.

Azure OpenAI authenticates with an `api-key` header instead of a bearer token; it is recognised
by its host name (*.openai.azure.com). Secrets never enter an error message.
"""

import json

import httpx

from connectors import http, prompts
from connectors.errors import ProviderError
from connectors.plugins import MAPPING, URL, Setting, SettingError
from connectors.providers.base import Completion, Provider

RESERVED_PARAMETERS = {"model", "messages", "response_format"}


class OpenAIProvider(Provider):
    kind = "openai"
    settings = (
        Setting("base_url", URL, required=True, help="e.g. https://api.openai.com/v1"),
        Setting("model", required=True, help="e.g. gpt-4o-mini"),
        Setting("parameters", MAPPING, help="Sent with every request, e.g. temperature."),
    )

    @property
    def base_url(self) -> str:
        return self.config.base_url.rstrip("/")

    def headers(self) -> dict[str, str]:
        if not self._secret:
            return {}
        if ".openai.azure.com" in self.base_url:
            return {"api-key": self._secret}
        return {"Authorization": f"Bearer {self._secret}"}

    def complete(self, prompt: str, *, json_schema: dict | None = None) -> Completion:
        body = {
            "model": self.config.model,
            "messages": [{"role": "user", "content": prompt}],
            **self.config.parameters,
        }
        if json_schema:
            body["response_format"] = prompts.json_schema_response_format(json_schema)
        response = self.post("/chat/completions", body)
        return self.parse(response)

    def post(self, path: str, body: dict) -> httpx.Response:
        try:
            response = self.client.post(self.base_url + path, json=body, headers=self.headers())
        except httpx.HTTPError as error:
            raise http.transport_failure(
                error, what="provider", error_class=ProviderError
            ) from None
        http.classify_response(
            response, what="provider", error_class=ProviderError, secrets=(self._secret,)
        )
        return response

    def parse(self, response: httpx.Response) -> Completion:
        try:
            answer = response.json()
            content = answer["choices"][0]["message"]["content"]
        except (json.JSONDecodeError, KeyError, IndexError, TypeError):
            raise ProviderError(
                "provider sent a malformed answer (no choices[0].message.content)"
            ) from None
        if not isinstance(content, str):
            raise ProviderError("provider sent an answer without text content")
        usage = answer.get("usage") or {}
        return Completion(
            text=content,
            tokens_in=int(usage.get("prompt_tokens") or 0),
            tokens_out=int(usage.get("completion_tokens") or 0),
            model=str(answer.get("model") or self.config.model),
        )

    def test_connection(self) -> str:
        try:
            response = self.client.get(self.base_url + "/models", headers=self.headers())
        except httpx.HTTPError as error:
            raise http.transport_failure(
                error, what="provider", error_class=ProviderError
            ) from None
        if response.status_code == 404:  # some compatible servers have no /models
            completion = self.complete("Reply with OK.")
            return f"OK: model {completion.model} answered"
        http.classify_response(
            response, what="provider", error_class=ProviderError, secrets=(self._secret,)
        )
        return f"OK: the endpoint answered and accepted the credential (model {self.config.model})"

    @classmethod
    def check(cls, config: dict) -> None:
        reserved = sorted(RESERVED_PARAMETERS & set(config.get("parameters", {})))
        if reserved:
            raise SettingError("parameters", f"parameters cannot set {', '.join(reserved)}")
