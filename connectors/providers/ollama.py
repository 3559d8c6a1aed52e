"""Ollama's native API: POST /api/chat with `stream: false`, for models on your own hardware.

A JSON connector's schema goes in `format` (Ollama constrains the output to it). Tokens are
`prompt_eval_count` and `eval_count`; `done_reason: length` is a truncated answer. Ollama checks
no credential itself; one set on the provider is sent as a bearer token, for a proxy in front of
it or Ollama's hosted API. The `openai` kind still works for Ollama's /v1 compatibility API.
"""

import httpx

from connectors.errors import ProviderError
from connectors.plugins import MAPPING, URL, Setting
from connectors.providers.base import (
    MODEL_NOT_FOUND,
    Completion,
    Provider,
    error_body,
    named_error,
    truncated,
)


class OllamaProvider(Provider):
    kind = "ollama"
    reserved_parameters = frozenset({"model", "messages", "stream", "format"})
    settings = (
        Setting(
            "base_url",
            URL,
            default="http://localhost:11434",
            help="e.g. http://ollama.internal:11434 (allow it in OUTBOUND_ALLOWED_NETWORKS)",
        ),
        Setting("model", required=True, help="e.g. llama3.2 or qwen2.5:7b"),
        Setting(
            "parameters",
            MAPPING,
            help="Request fields, e.g. options (temperature, num_ctx, num_predict), keep_alive.",
        ),
    )

    def answer_token_limit(self) -> int | None:
        options = self.config.parameters.get("options") or {}
        value = options.get("num_predict") if isinstance(options, dict) else None
        return value if type(value) is int and value > 0 else None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._secret}"} if self._secret else {}

    def complete(self, prompt: str, *, json_schema: dict | None = None) -> Completion:
        body = {
            "model": self.config.model,
            "messages": [{"role": "user", "content": prompt}],
            "stream": False,
            **self.config.parameters,
        }
        if json_schema:
            body["format"] = json_schema
        return self.parse(self.send("POST", self.base_url + "/api/chat", body=body))

    def parse(self, answer: dict) -> Completion:
        reason = str(answer.get("done_reason") or "")
        if reason == "length":
            raise truncated(
                "done_reason length", "raise options.num_predict in the provider's parameters"
            )
        message = answer.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str) or answer.get("done") is not True:
            raise ProviderError("provider sent a malformed answer (no finished message)")
        return Completion(
            text=content,
            tokens_in=int(answer.get("prompt_eval_count") or 0),
            tokens_out=int(answer.get("eval_count") or 0),
            model=str(answer.get("model") or self.config.model),
            stop_reason=reason,
        )

    def named_failure(self, response: httpx.Response, error: ProviderError) -> ProviderError:
        message = self.scrub(str(error_body(response).get("error") or ""))
        if response.status_code == 404 and "not found" in message:
            return named_error(
                MODEL_NOT_FOUND,
                f"Ollama has no model {self.config.model!r} (run: ollama pull "
                f"{self.config.model}): {message}",
            )
        return error

    def test_connection(self) -> str:
        """Showing the model checks the server and that the model is pulled."""
        shown = self.send("POST", self.base_url + "/api/show", body={"model": self.config.model})
        details = shown.get("details") or {}
        sizes = (details.get("parameter_size"), details.get("quantization_level"))
        about = " ".join(str(size) for size in sizes if size)
        capabilities = shown.get("capabilities")
        if isinstance(capabilities, list) and "completion" not in capabilities:
            raise named_error(MODEL_NOT_FOUND, f"model {self.config.model} cannot chat")
        return f"OK: Ollama has model {self.config.model}" + (f" ({about})" if about else "")
