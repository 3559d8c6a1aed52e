"""Google's Gemini API: POST /v1beta/models/{model}:generateContent with `x-goog-api-key`.

A JSON connector asks for `responseMimeType: application/json` with a `responseSchema`, which
takes a subset of OpenAPI 3.0 rather than JSON Schema: the schema is converted (upper-case types,
`nullable` for `["string", "null"]`, string enums, `$ref`s inlined) and what the subset cannot
say is dropped; Interlock still validates the answer against the full schema. A blocked prompt
(`promptFeedback.blockReason`) or answer (`finishReason: SAFETY`, …) is permanent and named. A
429's `RetryInfo.retryDelay` is honoured.

With `api: vertex` the same call goes to Vertex AI (`{location}-aiplatform.googleapis.com`,
`/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent`)
with a bearer token that a service account's key (the credential, Google's JSON key file) gets
from Google's token endpoint by the JWT bearer grant (RFC 7523, connectors.oauth2).
"""

import functools
import re

import httpx

from connectors import oauth2
from connectors.errors import ConfigError, ProviderError
from connectors.plugins import MAPPING, URL, Setting, SettingError
from connectors.providers.base import (
    CONTEXT_TOO_LONG,
    MODEL_NOT_FOUND,
    REFUSED,
    Completion,
    Provider,
    error_body,
    named_error,
    truncated,
    with_retry_after,
)

TYPES = {
    "string": "STRING",
    "number": "NUMBER",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
    "array": "ARRAY",
    "object": "OBJECT",
}
# JSON Schema keywords that mean the same in Gemini's Schema and are copied as they are.
COPIED = (
    "description",
    "title",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minProperties",
    "maxProperties",
    "pattern",
)
FORMATS = {"date-time", "float", "double", "int32", "int64"}
MAX_REF_DEPTH = 8
# Why the answer is withheld: permanent, since asking again sends the same prompt.
BLOCKING_FINISH_REASONS = {
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "LANGUAGE",
}
RESERVED_GENERATION_CONFIG = {"responseMimeType", "responseSchema", "responseJsonSchema"}
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
PROJECT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
LOCATION = re.compile(r"global|[a-z]+-[a-z]+\d+")


def gemini_schema(schema: dict) -> dict:
    """The JSON Schema as Gemini's responseSchema (an OpenAPI 3.0 Schema subset)."""
    definitions = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    return _converted(schema, definitions, 0)


def _converted(schema, definitions: dict, depth: int) -> dict:
    if not isinstance(schema, dict):
        return {"type": "STRING"}
    reference = schema.get("$ref")
    if isinstance(reference, str):
        name = reference.rsplit("/", 1)[-1]
        if depth >= MAX_REF_DEPTH or name not in definitions:
            return {"type": "STRING"}  # a recursive or outside schema cannot be expressed
        return _converted(definitions[name], definitions, depth + 1)
    result: dict = {key: schema[key] for key in COPIED if key in schema}
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
    if "null" in kinds:
        result["nullable"] = True
        kinds.remove("null")
    values = schema.get("enum", [schema["const"]] if "const" in schema else None)
    if isinstance(values, list):
        if None in values:
            result["nullable"] = True
        values = [value for value in values if value is not None]
        if values and all(isinstance(value, str) for value in values):
            kinds, result["format"], result["enum"] = ["string"], "enum", values
        elif values and not kinds:  # numbers or booleans: keep their type, drop the list
            kinds = [_json_type(values[0])]
    alternatives = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(alternatives, list):
        options = [option for option in alternatives if option != {"type": "null"}]
        if len(options) < len(alternatives):
            result["nullable"] = True
        result["anyOf"] = [_converted(option, definitions, depth) for option in options]
    if "properties" in schema and isinstance(schema["properties"], dict):
        kinds = kinds or ["object"]
        properties = schema["properties"]
        result["properties"] = {
            name: _converted(sub, definitions, depth) for name, sub in properties.items()
        }
        result["propertyOrdering"] = list(properties)  # Gemini otherwise sorts them
        required = [name for name in schema.get("required") or [] if name in properties]
        if required:
            result["required"] = required
    if isinstance(schema.get("items"), dict):
        kinds = kinds or ["array"]
        result["items"] = _converted(schema["items"], definitions, depth)
    if schema.get("format") in FORMATS and "enum" not in result:
        result["format"] = schema["format"]
    kinds = [kind for kind in kinds if kind in TYPES]
    if len(kinds) > 1:
        result["anyOf"] = [{"type": TYPES[kind]} for kind in kinds]
    elif kinds:
        result["type"] = TYPES[kinds[0]]
    elif "anyOf" not in result:
        result["type"] = "STRING"  # any value: a string satisfies the original schema too
    if result.get("type") == "ARRAY" and "items" not in result:
        result["items"] = {"type": "STRING"}
    return result


def _json_type(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "integer" if isinstance(value, int) else "number"


def retry_delay_seconds(body: dict) -> float | None:
    """Seconds from a google.rpc.RetryInfo detail ("37s", "1.5s")."""
    details = (body.get("error") or {}).get("details") or []
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and detail.get("@type") == RETRY_INFO:
            found = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(detail.get("retryDelay") or ""))
            if found:
                return float(found.group(1))
    return None


def blocked_categories(ratings) -> str:
    found = [
        f"{rating.get('category')}: {rating.get('probability')}"
        for rating in ratings or []
        if isinstance(rating, dict) and rating.get("blocked")
    ]
    return f"; {', '.join(found)}" if found else ""


class GeminiProvider(Provider):
    kind = "gemini"
    reserved_parameters = frozenset({"contents"})
    settings = (
        Setting(
            "base_url",
            URL,
            default="https://generativelanguage.googleapis.com",
            help="Empty: Google's Gemini API.",
        ),
        Setting("model", required=True, help="e.g. gemini-2.5-flash"),
        Setting(
            "parameters",
            MAPPING,
            help="Request fields, e.g. generationConfig (temperature, maxOutputTokens), "
            "safetySettings, systemInstruction.",
        ),
        Setting(
            "api",
            choices=("gemini", "vertex"),
            default="gemini",
            help="gemini: the Gemini API with an API key; vertex: Vertex AI with a service "
            "account key (the credential), project and location.",
        ),
        Setting("project", help="api: vertex: the Google Cloud project id."),
        Setting("location", help="api: vertex: e.g. us-central1, europe-west4 or global."),
    )

    @property
    def model(self) -> str:
        return self.config.model.removeprefix("models/")

    def answer_token_limit(self) -> int | None:
        generation = self.config.parameters.get("generationConfig") or {}
        value = generation.get("maxOutputTokens") if isinstance(generation, dict) else None
        return value if type(value) is int and value > 0 else None

    @property
    def is_vertex(self) -> bool:
        return self.setting("api") == "vertex"

    @property
    def base_url(self) -> str:
        if not self.is_vertex or self.config.base_url:
            return super().base_url
        location = self.setting("location")
        host = "aiplatform.googleapis.com"
        return f"https://{host}" if location == "global" else f"https://{location}-{host}"

    @property
    def model_url(self) -> str:
        if not self.is_vertex:
            return f"{self.base_url}/v1beta/models/{self.model}"
        project, location = self.setting("project"), self.setting("location")
        return (
            f"{self.base_url}/v1/projects/{project}/locations/{location}/publishers/google/"
            f"models/{self.model}"
        )

    @functools.cached_property
    def service_account(self) -> oauth2.ServiceAccount:
        """Parsed once per client: loading an RSA key costs milliseconds, each call would pay."""
        return oauth2.ServiceAccount.from_json(self._secret, CLOUD_PLATFORM)

    @property
    def secrets(self) -> tuple[str | None, ...]:
        if not self.is_vertex:
            return (self._secret,)
        try:
            return (self._secret, self.service_account.private_key)
        except ConfigError:
            return (self._secret,)

    def headers(self) -> dict[str, str]:
        if self.is_vertex:
            token = oauth2.access_token(
                self.service_account, self.client, error_class=ProviderError
            )
            return {"Authorization": f"Bearer {token}"}
        return {"x-goog-api-key": self._secret} if self._secret else {}

    def complete(self, prompt: str, *, json_schema: dict | None = None) -> Completion:
        parameters = dict(self.config.parameters)
        generation = dict(parameters.pop("generationConfig", None) or {})
        if json_schema:
            generation["responseMimeType"] = "application/json"
            generation["responseSchema"] = gemini_schema(json_schema)
        body = {"contents": [{"role": "user", "parts": [{"text": prompt}]}], **parameters}
        if generation:
            body["generationConfig"] = generation
        return self.parse(self.send("POST", f"{self.model_url}:generateContent", body=body))

    def parse(self, answer: dict) -> Completion:
        feedback = answer.get("promptFeedback") or {}
        if feedback.get("blockReason"):
            raise named_error(
                REFUSED,
                f"Gemini blocked the prompt (blockReason {feedback['blockReason']}"
                f"{blocked_categories(feedback.get('safetyRatings'))})",
            )
        candidates = answer.get("candidates")
        if not isinstance(candidates, list) or not candidates:
            raise ProviderError("provider sent a malformed answer (no candidates)")
        candidate = candidates[0] if isinstance(candidates[0], dict) else {}
        reason = str(candidate.get("finishReason") or "")
        if reason in BLOCKING_FINISH_REASONS:
            raise named_error(
                REFUSED,
                f"Gemini withheld the answer (finishReason {reason}"
                f"{blocked_categories(candidate.get('safetyRatings'))})",
            )
        if reason == "MAX_TOKENS":
            raise truncated(
                "finishReason MAX_TOKENS",
                "raise generationConfig.maxOutputTokens in the provider's parameters",
            )
        parts = (candidate.get("content") or {}).get("parts") or []
        text = "".join(
            str(part.get("text") or "")
            for part in parts
            if isinstance(part, dict) and not part.get("thought")
        )
        usage = answer.get("usageMetadata") or {}
        return Completion(
            text=text,
            tokens_in=int(usage.get("promptTokenCount") or 0),
            # Thinking tokens are billed as output.
            tokens_out=int(usage.get("candidatesTokenCount") or 0)
            + int(usage.get("thoughtsTokenCount") or 0),
            model=str(answer.get("modelVersion") or self.model),
            stop_reason=reason,
            tokens_cached=int(usage.get("cachedContentTokenCount") or 0),
        )

    def named_failure(self, response: httpx.Response, error: ProviderError) -> ProviderError:
        if self.is_vertex and response.status_code == 401:
            oauth2.forget(self.service_account)  # revoked or expired early: fetch a new one
            return ProviderError("Vertex AI refused the access token; retrying with a new one")
        body = error_body(response)
        detail = body.get("error") if isinstance(body.get("error"), dict) else {}
        status, message = detail.get("status"), self.scrub(str(detail.get("message") or ""))
        if status == "NOT_FOUND":
            return named_error(MODEL_NOT_FOUND, f"Gemini has no model {self.model!r}: {message}")
        if status == "INVALID_ARGUMENT" and "exceeds the maximum number of tokens" in message:
            return named_error(CONTEXT_TOO_LONG, f"the prompt is too long for the model: {message}")
        delay = retry_delay_seconds(body)
        if delay is not None and not error.permanent:
            return with_retry_after(error, delay)
        return error

    def test_connection(self) -> str:
        """Getting the model checks the key and the model, and that it can generateContent.
        Vertex AI: countTokens on the model checks the token, the project's access and the
        model, and costs nothing."""
        if self.is_vertex:
            body = {"contents": [{"role": "user", "parts": [{"text": "Reply with OK."}]}]}
            counted = self.send("POST", f"{self.model_url}:countTokens", body=body)
            return (
                f"OK: the service account got a token and model {self.model} answered in "
                f"project {self.setting('project')}, {self.setting('location')} "
                f"({counted.get('totalTokens')} tokens counted)"
            )
        model = self.send("GET", f"{self.model_url}")
        if "generateContent" not in (model.get("supportedGenerationMethods") or []):
            raise named_error(MODEL_NOT_FOUND, f"model {self.model} cannot generateContent")
        name = model.get("displayName") or model.get("name")
        limit = model.get("inputTokenLimit")
        return f"OK: the key was accepted and model {self.model} ({name}) can generateContent" + (
            f" ({limit} input tokens)" if limit else ""
        )

    @classmethod
    def check(cls, config: dict) -> None:
        super().check(config)
        if config.get("api") == "vertex":
            if not PROJECT.fullmatch(config.get("project") or ""):
                raise SettingError(
                    "project", "api: vertex needs project, a Google Cloud project id"
                )
            if not LOCATION.fullmatch(config.get("location") or ""):
                raise SettingError(
                    "location", "api: vertex needs location, e.g. us-central1 or global"
                )
        elif config.get("project") or config.get("location"):
            raise SettingError("api", "project and location are for api: vertex")
        generation = (config.get("parameters") or {}).get("generationConfig")
        if generation is None:
            return
        if not isinstance(generation, dict):
            raise SettingError("parameters", "parameters' generationConfig must be a mapping")
        reserved = sorted(RESERVED_GENERATION_CONFIG & set(generation))
        if reserved:
            raise SettingError(
                "parameters",
                f"parameters' generationConfig cannot set {', '.join(reserved)} (a JSON "
                "connector's schema sets them)",
            )
