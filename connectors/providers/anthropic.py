"""Anthropic's Messages API: POST /v1/messages with `x-api-key` and `anthropic-version`.

`max_tokens` is required by the API, so it is a setting with a default. A JSON connector's schema
becomes the input schema of one tool the model is made to call (`tool_choice` names it), and the
tool call's input is the answer. `overloaded_error` (HTTP 529) is retried; a `refusal` stop is
permanent and named; a `max_tokens` stop is a truncated answer, not a success.
"""

import json

import httpx

from connectors.errors import ProviderError
from connectors.plugins import INTEGER, MAPPING, URL, Setting
from connectors.providers.base import (
    CONTEXT_TOO_LONG,
    MODEL_NOT_FOUND,
    REFUSED,
    Completion,
    Provider,
    error_body,
    named_error,
    object_schema,
    truncated,
)

TOOL_NAME = "record_answer"


class AnthropicProvider(Provider):
    kind = "anthropic"
    reserved_parameters = frozenset(
        {"model", "messages", "max_tokens", "tools", "tool_choice", "stream"}
    )
    settings = (
        Setting("base_url", URL, default="https://api.anthropic.com", help="Empty: Anthropic's."),
        Setting("model", required=True, help="e.g. claude-sonnet-4-5 or claude-3-5-haiku-latest"),
        Setting("parameters", MAPPING, help="Sent with every request, e.g. temperature, system."),
        Setting(
            "max_tokens",
            INTEGER,
            default=1024,
            minimum=1,
            maximum=128000,
            help="The most tokens an answer may have (the API requires it); an answer that "
            "reaches it fails as truncated_answer.",
        ),
        Setting("anthropic_version", default="2023-06-01", help="The anthropic-version header."),
    )

    def answer_token_limit(self) -> int | None:
        return self.setting("max_tokens")

    def headers(self) -> dict[str, str]:
        headers = {"anthropic-version": self.setting("anthropic_version")}
        if self._secret:
            headers["x-api-key"] = self._secret
        return headers

    def complete(self, prompt: str, *, json_schema: dict | None = None) -> Completion:
        body = {
            "model": self.config.model,
            "max_tokens": self.setting("max_tokens"),
            "messages": [{"role": "user", "content": prompt}],
            **self.config.parameters,
        }
        if json_schema:
            body["tools"] = [
                {
                    "name": TOOL_NAME,
                    "description": "Record the answer as a JSON object that matches the schema.",
                    "input_schema": object_schema(json_schema),
                }
            ]
            body["tool_choice"] = {"type": "tool", "name": TOOL_NAME}
        return self.parse(self.send("POST", self.base_url + "/v1/messages", body=body), json_schema)

    def parse(self, answer: dict, json_schema: dict | None) -> Completion:
        stop_reason = str(answer.get("stop_reason") or "")
        if stop_reason == "refusal":
            raise named_error(REFUSED, "the model declined to answer (stop_reason refusal)")
        if stop_reason == "max_tokens":
            raise truncated(
                "stop_reason max_tokens",
                f"raise the provider's max_tokens setting (now {self.setting('max_tokens')})",
            )
        blocks = answer.get("content")
        if not isinstance(blocks, list):
            raise ProviderError("provider sent a malformed answer (no content blocks)")
        tool_inputs = [
            block.get("input")
            for block in blocks
            if isinstance(block, dict) and block.get("type") == "tool_use"
        ]
        if json_schema and tool_inputs and isinstance(tool_inputs[0], dict):
            text = json.dumps(tool_inputs[0], ensure_ascii=False)
        else:
            text = "".join(
                str(block.get("text") or "")
                for block in blocks
                if isinstance(block, dict) and block.get("type") == "text"
            )
        usage = answer.get("usage") or {}
        # Cache reads and writes are input too (Interlock sends no cache_control, so they are 0).
        tokens_in = sum(
            int(usage.get(name) or 0)
            for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        return Completion(
            text=text,
            tokens_in=tokens_in,
            tokens_out=int(usage.get("output_tokens") or 0),
            model=str(answer.get("model") or self.config.model),
            stop_reason=stop_reason,
            tokens_cached=int(usage.get("cache_read_input_tokens") or 0),
        )

    def named_failure(self, response: httpx.Response, error: ProviderError) -> ProviderError:
        detail = error_body(response).get("error")
        detail = detail if isinstance(detail, dict) else {}
        kind, message = detail.get("type"), self.scrub(str(detail.get("message") or ""))
        if kind == "overloaded_error":
            return named_error(
                error.code,
                f"Anthropic is overloaded (HTTP {response.status_code} overloaded_error): "
                f"{message}",
                permanent=False,
                retry_after=error.retry_after,
            )
        if kind == "invalid_request_error" and "prompt is too long" in message:
            return named_error(CONTEXT_TOO_LONG, f"the prompt is too long for the model: {message}")
        if kind == "not_found_error":
            return named_error(
                MODEL_NOT_FOUND, f"Anthropic has no model {self.config.model!r}: {message}"
            )
        return error

    def test_connection(self) -> str:
        """Getting the model checks the key, the version header and the model in one call."""
        model = self.send("GET", f"{self.base_url}/v1/models/{self.config.model}")
        name = model.get("display_name") or model.get("id")
        return f"OK: the key was accepted and model {model.get('id')} ({name}) exists"
