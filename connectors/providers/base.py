"""The provider interface: one prompt in, one completion out; errors are ProviderErrors.

A provider kind's settings are the Provider row's `base_url`, `model` and `parameters` plus the
kind's own (the row's `settings`: `max_tokens`, `api_version`, `structured_output`, …), declared
like any kind's (connectors.plugins) and validated as one config.

What several kinds share lives here, because no kind imports another: sending a request and
naming its failure, the JSON Schema instructions for a prompt, trimming a schema to the keywords
a provider accepts, and the OpenAI chat-completions format (the openai and azure_openai kinds).
"""

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

from connectors import http, prompts
from connectors.errors import ProviderError
from connectors.plugins import Plugin, Setting, SettingError, is_unset

# Settings that are the Provider row's own fields; every other setting lives in its `settings`.
ROW_SETTINGS = ("base_url", "model", "parameters")

# Named failures, so an operator can tell them apart on a job page (error_code).
TRUNCATED = "truncated_answer"  # cut off at the token limit: permanent until max_tokens is raised
REFUSED = "content_refused"  # a content filter, safety block or model refusal
CONTEXT_TOO_LONG = "context_too_long"
OUTPUT_MODE_REFUSED = "structured_output_unsupported"
MODEL_NOT_FOUND = "model_not_found"

STRUCTURED_OUTPUT_MODES = ("json_schema", "json_object", "prompt")


@dataclass(frozen=True)
class ProviderConfig:
    kind: str
    base_url: str
    model: str
    timeout: float = 60.0
    parameters: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)


@dataclass
class Completion:
    text: str
    tokens_in: int
    tokens_out: int
    model: str
    stop_reason: str = ""  # the provider's own word for why it stopped: end_turn, STOP, length
    tokens_cached: int = 0  # the part of tokens_in read from the provider's prompt cache


def named_error(code: str, message: str, *, permanent: bool = True, retry_after=None):
    return ProviderError(message, permanent=permanent, code=code, retry_after=retry_after)


def with_retry_after(error: ProviderError, seconds: float) -> ProviderError:
    """The same error with the provider's own retry hint (capped as Retry-After is)."""
    return named_error(
        error.code,
        error.message,
        permanent=error.permanent,
        retry_after=min(max(seconds, 0.0), 3600.0),
    )


def truncated(stop_reason: str, remedy: str) -> ProviderError:
    """An answer cut off by the token limit: a half JSON object or a half placeholder (`<SS`)
    must not pass for an answer, and asking again with the same limit cuts it again."""
    return named_error(
        TRUNCATED, f"the answer was cut off at the token limit ({stop_reason}); {remedy}"
    )


def schema_instructions(prompt: str, schema: dict) -> str:
    """The prompt with the JSON Schema appended, for providers asked without a schema feature."""
    return (
        f"{prompt}\n\nAnswer with only a JSON object that satisfies this JSON Schema:\n"
        f"{json.dumps(schema, ensure_ascii=False)}"
    )


def object_schema(schema: dict) -> dict:
    """Tool inputs and most structured-output features take an object at the top."""
    return {"type": "object", **schema} if "type" not in schema else schema


def reduced_schema(schema: Any, keywords: frozenset[str]) -> Any:
    """The schema with only `keywords` kept, at every level. What a provider cannot enforce,
    Interlock still validates against the full schema (and asks for one repair)."""
    if not isinstance(schema, dict):
        return schema
    reduced = {}
    for key, value in schema.items():
        if key not in keywords:
            continue
        if key == "properties" and isinstance(value, dict):
            value = {name: reduced_schema(sub, keywords) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            value = reduced_schema(value, keywords)
        elif key in ("anyOf", "oneOf", "allOf") and isinstance(value, list):
            value = [reduced_schema(sub, keywords) for sub in value]
        reduced[key] = value
    return reduced


def error_body(response: httpx.Response) -> dict:
    """The JSON object of an error answer, or {} for one that is not JSON."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class Provider(Plugin):
    calls_ai: ClassVar[bool] = True  # False for the demo provider, which answers by itself
    # False for a kind that cannot be asked for JSON against a schema: such connectors are
    # refused on save.
    has_json_schema_output: ClassVar[bool] = True
    # Request fields the kind writes itself, which `parameters` therefore cannot set.
    reserved_parameters: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self, config: ProviderConfig, secret: str | None, *, client: httpx.Client | None = None
    ) -> None:
        self.config = config
        self._secret = secret
        self._client = client

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = http.build_client(timeout=self.config.timeout)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def complete(self, prompt: str, *, json_schema: dict | None = None) -> Completion:
        raise NotImplementedError

    def test_connection(self) -> str:
        raise NotImplementedError

    def answer_token_limit(self) -> int | None:
        """The most tokens an answer may have, as this provider is set (budgets reserve it);
        None when nothing limits it. Kinds whose limit lives elsewhere say where."""
        for name in ("max_completion_tokens", "max_tokens"):
            value = self.config.parameters.get(name)
            if type(value) is int and value > 0:
                return value
        return None

    # --- Settings ------------------------------------------------------------------------

    @classmethod
    def declared(cls, name: str) -> Setting:
        return next(setting for setting in cls.settings if setting.name == name)

    @classmethod
    def kind_settings(cls) -> tuple[Setting, ...]:
        """The settings kept in the row's `settings`, beyond base_url, model and parameters."""
        return tuple(setting for setting in cls.settings if setting.name not in ROW_SETTINGS)

    @classmethod
    def validate_provider(cls, base_url: str, model: str, parameters, settings) -> dict:
        """The whole config with defaults filled in; SettingError naming the setting at fault."""
        if not isinstance(settings, dict):
            raise SettingError("settings", "settings must be a JSON object")
        own = sorted(set(settings) & set(ROW_SETTINGS))
        if own:
            raise SettingError("settings", f"settings cannot hold {', '.join(own)}: set the field")
        known = {setting.name for setting in cls.kind_settings()}
        unknown = sorted(set(settings) - known)
        if unknown:
            names = ", ".join(sorted(known)) or "none: this kind has no settings of its own"
            raise SettingError("settings", f"unknown settings {', '.join(unknown)}; known: {names}")
        config = {"base_url": base_url, "model": model, "parameters": parameters, **settings}
        return cls.validate_config(config)

    def setting(self, name: str) -> Any:
        """A kind setting from the row's `settings`, or its declared default."""
        value = self.config.settings.get(name)
        return self.declared(name).default if is_unset(value) else value

    @property
    def base_url(self) -> str:
        """The row's base URL, or the kind's default (the vendor's public API)."""
        return (self.config.base_url or self.declared("base_url").default or "").rstrip("/")

    @classmethod
    def check(cls, config: dict) -> None:
        reserved = sorted(cls.reserved_parameters & set(config.get("parameters") or {}))
        if reserved:
            raise SettingError("parameters", f"parameters cannot set {', '.join(reserved)}")

    # --- Requests ------------------------------------------------------------------------

    @property
    def secrets(self) -> tuple[str | None, ...]:
        return (self._secret,)

    def scrub(self, text: str) -> str:
        return http.scrub(text, self.secrets)

    def headers(self) -> dict[str, str]:
        """The kind's authentication (and version) headers."""
        return {}

    def exchange(self, method: str, url: str, *, body=None, params=None, headers=None):
        """One HTTP exchange, whatever its status; a transport failure is a ProviderError."""
        try:
            return self.client.request(
                method,
                url,
                json=body,
                params=params,
                headers=self.headers() if headers is None else headers,
            )
        except httpx.HTTPError as error:
            raise http.transport_failure(
                error, what="provider", error_class=ProviderError
            ) from None

    def send(self, method: str, url: str, *, body=None, params=None) -> dict:
        """The JSON object of a 2xx answer; else the failure, named where the kind can."""
        response = self.exchange(method, url, body=body, params=params)
        if not response.is_success:
            raise self.failure(response)
        return self.answer_of(response)

    def failure(self, response: httpx.Response) -> ProviderError:
        """A non-2xx answer as a ProviderError: transient for 408/429/5xx, permanent otherwise
        (connectors.http), then refined by what the kind's error body says."""
        try:
            http.classify_response(
                response, what="provider", error_class=ProviderError, secrets=self.secrets
            )
        except ProviderError as error:
            return self.named_failure(response, error)
        raise ValueError(f"HTTP {response.status_code} is not a failure")

    def named_failure(self, response: httpx.Response, error: ProviderError) -> ProviderError:
        """Kinds name what their error bodies say (a content filter, a context too long)."""
        return error

    def answer_of(self, response: httpx.Response) -> dict:
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ProviderError("provider sent a malformed answer (not a JSON object)")
        return answer


# --- The OpenAI chat-completions format (openai, azure_openai) ---------------------------------


def structured_output_setting(default: str = "json_schema") -> Setting:
    return Setting(
        "structured_output",
        choices=STRUCTURED_OUTPUT_MODES,
        default=default,
        help="How a JSON connector's schema is sent: json_schema (response_format with the "
        "schema), json_object (JSON mode, the schema in the prompt) or prompt (the schema in "
        "the prompt only; for servers that refuse response_format).",
    )


class ChatCompletionsProvider(Provider):
    """The chat-completions wire format; a kind says where it lives and how to authenticate."""

    reserved_parameters = frozenset({"model", "messages", "response_format", "stream"})
    sends_model = True  # Azure names the model by its deployment URL instead

    def completions_url(self) -> str:
        raise NotImplementedError

    def query(self) -> dict[str, str]:
        return {}

    def complete(self, prompt: str, *, json_schema: dict | None = None) -> Completion:
        mode = self.setting("structured_output") if json_schema else None
        body = self.request_body(prompt, json_schema, mode)
        response = self.exchange("POST", self.completions_url(), body=body, params=self.query())
        if not response.is_success:
            raise self.chat_failure(response, mode)
        return self.parse(self.answer_of(response))

    def request_body(self, prompt: str, json_schema: dict | None, mode: str | None) -> dict:
        if json_schema and mode != "json_schema":
            prompt = schema_instructions(prompt, json_schema)
        body = {"model": self.config.model} if self.sends_model else {}
        body |= {"messages": [{"role": "user", "content": prompt}], **self.config.parameters}
        if mode == "json_schema":
            body["response_format"] = prompts.json_schema_response_format(json_schema)
        elif mode == "json_object":
            body["response_format"] = {"type": "json_object"}
        return body

    def chat_failure(self, response: httpx.Response, mode: str | None) -> ProviderError:
        error = self.failure(response)
        # llama.cpp's server answers 500 "Input should be 'text' or 'json_object'" to a
        # json_schema response_format: retrying cannot help, changing the setting can.
        refuses_mode = (
            mode in ("json_schema", "json_object")
            and error.code == "provider_error"
            and response.status_code not in (408, 429)
            and "response_format" in response.text
        )
        if not refuses_mode:
            return error
        other = " or ".join(choice for choice in STRUCTURED_OUTPUT_MODES if choice != mode)
        return named_error(
            OUTPUT_MODE_REFUSED,
            f"the server refused structured output {mode} ({error.message}); set the "
            f"provider's structured_output setting to {other}",
        )

    def named_failure(self, response: httpx.Response, error: ProviderError) -> ProviderError:
        detail = error_body(response).get("error")
        detail = detail if isinstance(detail, dict) else {}
        code, message = detail.get("code"), self.scrub(str(detail.get("message") or ""))
        if code == "content_filter":
            inner = detail.get("innererror") or {}
            found = filtered_categories(inner.get("content_filter_result"))
            return named_error(REFUSED, f"the content filter refused the prompt{found}: {message}")
        if code == "context_length_exceeded":
            return named_error(CONTEXT_TOO_LONG, f"the prompt is too long for the model: {message}")
        return error

    def parse(self, answer: dict) -> Completion:
        try:
            choice = answer["choices"][0]
            message = choice["message"]
        except (KeyError, IndexError, TypeError):
            raise ProviderError(
                "provider sent a malformed answer (no choices[0].message.content)"
            ) from None
        reason = str(choice.get("finish_reason") or "")
        if reason == "content_filter":
            found = filtered_categories(choice.get("content_filter_results"))
            raise named_error(REFUSED, f"the content filter withheld the answer{found}")
        if isinstance(message, dict) and message.get("refusal"):
            refusal = self.scrub(str(message["refusal"]))[:200]
            raise named_error(REFUSED, f"the model refused to answer: {refusal}")
        if reason == "length":
            raise truncated(
                "finish_reason length",
                "raise max_tokens (or max_completion_tokens) in the provider's parameters",
            )
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise ProviderError("provider sent an answer without text content")
        usage = answer.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        return Completion(
            text=content,
            tokens_in=int(usage.get("prompt_tokens") or 0),
            tokens_out=int(usage.get("completion_tokens") or 0),
            model=str(answer.get("model") or self.config.model),
            stop_reason=reason,
            tokens_cached=int(details.get("cached_tokens") or 0)
            if isinstance(details, dict)
            else 0,
        )


def filtered_categories(results) -> str:
    """' (hate: high, jailbreak)' from Azure's content_filter_result(s), or ''."""
    if not isinstance(results, dict):
        return ""
    found = []
    for category, result in results.items():
        if isinstance(result, dict) and result.get("filtered"):
            severity = result.get("severity")
            found.append(f"{category}: {severity}" if severity else category)
    return f" ({', '.join(found)})" if found else ""
