"""Cohere's Chat API v2: POST /v2/chat with a bearer key.

A JSON connector sends `response_format: {type: json_object, json_schema: …}`; Cohere refuses
some JSON Schema features (anyOf, numeric and length ranges, additionalProperties, …), so the
schema it gets keeps only what it documents, and Interlock validates the answer against the full
one. Tokens come from `usage.billed_units` (what is billed), else `usage.tokens`.
"""

import httpx

from connectors.errors import ProviderError
from connectors.plugins import MAPPING, URL, Setting
from connectors.providers.base import (
    CONTEXT_TOO_LONG,
    MODEL_NOT_FOUND,
    Completion,
    Provider,
    error_body,
    named_error,
    object_schema,
    reduced_schema,
    truncated,
)

# What Cohere's structured outputs accept (docs.cohere.com, "Structured Outputs").
SCHEMA_KEYWORDS = frozenset(
    {"type", "properties", "required", "items", "enum", "const", "description", "title"}
)
RETRIED_FINISH_REASONS = {"ERROR", "TIMEOUT"}
CANCELLED = 499  # Cohere's "request cancelled", which its documentation says to retry


class CohereProvider(Provider):
    kind = "cohere"
    reserved_parameters = frozenset({"model", "messages", "response_format", "stream"})
    settings = (
        Setting("base_url", URL, default="https://api.cohere.com", help="Empty: Cohere's."),
        Setting("model", required=True, help="e.g. command-a-03-2025"),
        Setting("parameters", MAPPING, help="Sent with every request, e.g. temperature."),
    )

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
            body["response_format"] = {
                "type": "json_object",
                "json_schema": reduced_schema(object_schema(json_schema), SCHEMA_KEYWORDS),
            }
        return self.parse(self.send("POST", self.base_url + "/v2/chat", body=body))

    def parse(self, answer: dict) -> Completion:
        reason = str(answer.get("finish_reason") or "")
        if reason == "MAX_TOKENS":
            raise truncated(
                "finish_reason MAX_TOKENS", "raise max_tokens in the provider's parameters"
            )
        if reason in RETRIED_FINISH_REASONS:
            raise ProviderError(f"Cohere could not finish the answer (finish_reason {reason})")
        message = answer.get("message")
        blocks = message.get("content") if isinstance(message, dict) else None
        if not isinstance(blocks, list):
            raise ProviderError("provider sent a malformed answer (no message.content)")
        text = "".join(
            str(block.get("text") or "")
            for block in blocks
            if isinstance(block, dict) and block.get("type") == "text"
        )
        usage = answer.get("usage") or {}
        counted = usage.get("billed_units") or usage.get("tokens") or {}
        return Completion(
            text=text,
            tokens_in=int(counted.get("input_tokens") or 0),
            tokens_out=int(counted.get("output_tokens") or 0),
            model=self.config.model,  # the answer does not name it
            stop_reason=reason,
        )

    def named_failure(self, response: httpx.Response, error: ProviderError) -> ProviderError:
        message = self.scrub(str(error_body(response).get("message") or ""))
        if response.status_code == CANCELLED:
            return named_error(error.code, error.message, permanent=False)
        if response.status_code == 404 and "not found" in message:
            return named_error(MODEL_NOT_FOUND, f"Cohere has no model {self.config.model!r}")
        # "too many tokens: max tokens must be …" is about the max_tokens parameter instead.
        if message.startswith("too many tokens") and "max tokens" not in message:
            return named_error(CONTEXT_TOO_LONG, f"the prompt is too long for the model: {message}")
        return error

    def test_connection(self) -> str:
        """Getting the model checks the key and the model, and that it serves chat."""
        model = self.send("GET", f"{self.base_url}/v1/models/{self.config.model}")
        if "chat" not in (model.get("endpoints") or []):
            raise named_error(MODEL_NOT_FOUND, f"model {self.config.model} does not serve chat")
        context = model.get("context_length")
        return f"OK: the key was accepted and model {self.config.model} serves chat" + (
            f" ({context:g} tokens of context)" if isinstance(context, int | float) else ""
        )
