"""Amazon Bedrock's Converse API: POST /model/{modelId}/converse, signed with SigV4 ("bedrock").

One request format for every model Bedrock hosts (Claude, Llama, Mistral, Nova, …). A JSON
connector's schema becomes the input schema of one tool the model is made to call
(`toolConfig.toolChoice.tool`), and the tool call's input is the answer. `max_tokens` goes in
`inferenceConfig.maxTokens`, so a `max_tokens` stop is a truncated answer, not a success;
`guardrail_intervened` and `content_filtered` are refusals; `ThrottlingException` and the other
transient types are retried, `ValidationException` is not.
"""

import json
from urllib.parse import quote

from connectors.errors import ProviderError
from connectors.plugins import INTEGER, MAPPING, URL, Setting
from connectors.providers.aws import AwsProvider, region_setting
from connectors.providers.base import (
    CONTEXT_TOO_LONG,
    MODEL_NOT_FOUND,
    REFUSED,
    Completion,
    named_error,
    object_schema,
    truncated,
)

TOOL_NAME = "record_answer"
REFUSING_STOPS = {"guardrail_intervened", "content_filtered"}
TOO_LONG = ("too long", "too many input tokens", "context window", "maximum context length")


class BedrockProvider(AwsProvider):
    kind = "bedrock"
    signing_name = "bedrock"
    service_label = "Bedrock"
    reserved_parameters = frozenset({"modelId", "messages", "toolConfig"})
    settings = (
        Setting(
            "base_url",
            URL,
            help="Empty: https://bedrock-runtime.{region}.amazonaws.com (a VPC endpoint's "
            "address otherwise).",
        ),
        Setting(
            "model",
            required=True,
            help="A model id or inference profile, e.g. anthropic.claude-3-5-haiku-20241022-v1:0 "
            "or us.amazon.nova-lite-v1:0",
        ),
        Setting(
            "parameters",
            MAPPING,
            help="Converse request fields, e.g. inferenceConfig (temperature, topP), system, "
            "guardrailConfig, additionalModelRequestFields.",
        ),
        region_setting("The AWS region, e.g. us-east-1 or eu-central-1."),
        Setting(
            "max_tokens",
            INTEGER,
            default=1024,
            minimum=1,
            maximum=128000,
            help="inferenceConfig.maxTokens; an answer that reaches it fails as truncated_answer.",
        ),
    )

    def answer_token_limit(self) -> int | None:
        return self.setting("max_tokens")

    @property
    def base_url(self) -> str:
        own = (self.config.base_url or "").rstrip("/")
        return own or f"https://bedrock-runtime.{self.region}.amazonaws.com"

    def converse_url(self) -> str:
        return f"{self.base_url}/model/{quote(self.config.model, safe='')}/converse"

    def request_body(self, prompt: str, json_schema: dict | None, max_tokens: int) -> dict:
        parameters = dict(self.config.parameters)
        inference = {**(parameters.pop("inferenceConfig", None) or {}), "maxTokens": max_tokens}
        body = {
            "messages": [{"role": "user", "content": [{"text": prompt}]}],
            "inferenceConfig": inference,
            **parameters,
        }
        if json_schema:
            spec = {
                "name": TOOL_NAME,
                "description": "Record the answer as a JSON object that matches the schema.",
                "inputSchema": {"json": object_schema(json_schema)},
            }
            body["toolConfig"] = {
                "tools": [{"toolSpec": spec}],
                "toolChoice": {"tool": {"name": TOOL_NAME}},
            }
        return body

    def complete(self, prompt: str, *, json_schema: dict | None = None) -> Completion:
        body = self.request_body(prompt, json_schema, self.setting("max_tokens"))
        return self.parse(self.send("POST", self.converse_url(), body=body), json_schema)

    def parse(self, answer: dict, json_schema: dict | None, *, cut_is_fine=False) -> Completion:
        stop_reason = str(answer.get("stopReason") or "")
        if stop_reason in REFUSING_STOPS:
            raise named_error(REFUSED, f"Bedrock withheld the answer (stopReason {stop_reason})")
        if stop_reason == "model_context_window_exceeded":
            raise named_error(CONTEXT_TOO_LONG, "the prompt is too long for the model's context")
        if stop_reason == "max_tokens" and not cut_is_fine:
            raise truncated(
                "stopReason max_tokens",
                f"raise the provider's max_tokens setting (now {self.setting('max_tokens')})",
            )
        message = (answer.get("output") or {}).get("message")
        blocks = message.get("content") if isinstance(message, dict) else None
        if not isinstance(blocks, list):
            raise ProviderError("provider sent a malformed answer (no output.message.content)")
        tool_inputs = [
            block["toolUse"].get("input")
            for block in blocks
            if isinstance(block, dict) and isinstance(block.get("toolUse"), dict)
        ]
        if json_schema and tool_inputs and isinstance(tool_inputs[0], dict):
            text = json.dumps(tool_inputs[0], ensure_ascii=False)
        else:
            text = "".join(
                str(block.get("text") or "")
                for block in blocks
                if isinstance(block, dict) and "text" in block
            )
        usage = answer.get("usage") or {}
        # Cache reads and writes are input tokens too (Interlock sends no cachePoint: 0).
        tokens_in = sum(
            int(usage.get(name) or 0)
            for name in ("inputTokens", "cacheReadInputTokens", "cacheWriteInputTokens")
        )
        return Completion(
            text=text,
            tokens_in=tokens_in,
            tokens_out=int(usage.get("outputTokens") or 0),
            model=self.config.model,
            stop_reason=stop_reason,
            tokens_cached=int(usage.get("cacheReadInputTokens") or 0),
        )

    def named_type(self, kind: str, said: str, error: ProviderError) -> ProviderError:
        lowered = said.lower()
        if kind == "ValidationException" and any(words in lowered for words in TOO_LONG):
            return named_error(CONTEXT_TOO_LONG, f"the prompt is too long for the model: {said}")
        if kind == "ValidationException" and "model identifier is invalid" in lowered:
            return named_error(MODEL_NOT_FOUND, f"{said} (model {self.config.model!r})")
        return super().named_type(kind, said, error)

    def test_connection(self) -> str:
        """A three-token Converse call checks the key, the region, the model id (or inference
        profile) and the model access grant in one request; GetFoundationModel would not know
        inference profiles and needs another permission."""
        body = self.request_body("Reply with OK.", None, 3)
        completion = self.parse(
            self.send("POST", self.converse_url(), body=body), None, cut_is_fine=True
        )
        return (
            f"OK: the key was accepted and model {self.config.model} answered in {self.region} "
            f"({completion.tokens_in + completion.tokens_out} tokens)"
        )
