"""Local HTTP servers outside our walls: AI providers (OpenAI-compatible, Anthropic, Gemini,
Cohere, Ollama, Azure OpenAI, a llama.cpp-like server), a legacy callback receiver and an OAuth2
token endpoint.

All are real servers on 127.0.0.1 speaking the real wire format; tests script their answers.
"""

import contextlib
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class _Server:
    """A ThreadingHTTPServer in a background thread, with a scripted list of one-shot steps."""

    path = ""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.steps: list = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                outer.handle(self, None)

            def do_OPTIONS(self) -> None:
                outer.handle(self, None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                outer.handle(self, self.rfile.read(length))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def script(self, steps: list) -> None:
        with self.lock:
            self.steps.extend(steps)

    def next_step(self):
        with self.lock:
            return self.steps.pop(0) if self.steps else None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def send(handler, status: int, body: bytes, headers: dict | None = None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)


class OpenAIServer(_Server):
    """Speaks POST /v1/chat/completions and GET /v1/models."""

    def __init__(self) -> None:
        super().__init__()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.requests: list[tuple[str, dict, dict | None]] = []
        self.default_content = '{"decision": "approve"}'
        self.responder = lambda body: self.default_content

    def reply(self, content: str) -> None:
        self.default_content = content

    def handle(self, handler, raw: bytes | None) -> None:
        headers = {name.lower(): value for name, value in handler.headers.items()}
        body = json.loads(raw) if raw else None
        with self.lock:
            self.requests.append((handler.path, headers, body))
        if handler.command == "GET":
            models = {"object": "list", "data": [{"id": "gpt-test", "object": "model"}]}
            return self.send(handler, 200, json.dumps(models).encode())
        step = self.next_step()
        if isinstance(step, tuple) and step[0] == "status":
            error = {"error": {"message": f"scripted {step[1]}", "type": "server_error"}}
            extra = step[2] if len(step) > 2 else {}
            return self.send(handler, step[1], json.dumps(error).encode(), extra)
        if isinstance(step, tuple) and step[0] == "echo_key":  # what OpenAI really answers
            key = headers.get("authorization", "").removeprefix("Bearer ")
            error = {"error": {"message": f"Incorrect API key provided: {key}.", "type": "auth"}}
            return self.send(handler, 401, json.dumps(error).encode())
        if isinstance(step, tuple) and step[0] == "malformed":
            return self.send(handler, 200, b"<html>this is not json")
        if isinstance(step, tuple) and step[0] == "slow":
            time.sleep(step[1])
            step = step[2]
        content = step if isinstance(step, str) else self.responder(body)
        prompt_words = sum(len(m.get("content", "").split()) for m in body.get("messages", []))
        answer = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_words,
                "completion_tokens": len(content.split()),
                "total_tokens": prompt_words + len(content.split()),
            },
        }
        # The client may have timed out first, as a test intended.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send(handler, 200, json.dumps(answer).encode())


class CallbackServer(_Server):
    """A legacy system's callback receiver: records what it got, answers scripted statuses."""

    def __init__(self) -> None:
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}/ai-callback"
        self.received: list[tuple[dict, bytes, dict | None]] = []

    def handle(self, handler, raw: bytes | None) -> None:
        headers = {name.lower(): value for name, value in handler.headers.items()}
        try:
            parsed = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            parsed = None
        with self.lock:
            self.received.append((headers, raw or b"", parsed))
        status = self.next_step() or 200
        self.send(handler, status, b"{}")

    def verify(self, secret: str, index: int) -> bool:
        headers, raw, _ = self.received[index]
        try:
            Webhook(secret).verify(raw, headers)
        except WebhookVerificationError:
            return False
        return True


class TokenServer(_Server):
    """An authorization server's OAuth2 token endpoint (client credentials grant)."""

    def __init__(self) -> None:
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}/oauth2/token"
        self.requests: list[dict] = []
        self.issued = 0

    def handle(self, handler, raw: bytes | None) -> None:
        with self.lock:
            self.requests.append(dict(urllib.parse.parse_qsl((raw or b"").decode())))
        step = self.next_step()
        if step is not None:  # (status, body)
            return self.send(handler, step[0], json.dumps(step[1]).encode())
        with self.lock:
            self.issued += 1
            token = {"access_token": f"access-{self.issued}", "token_type": "Bearer"}
        self.send(handler, 200, json.dumps({**token, "expires_in": 3600}).encode())


@pytest.fixture
def token_server():
    server = TokenServer()
    yield server
    server.close()


@pytest.fixture
def openai_server():
    server = OpenAIServer()
    yield server
    server.close()


@pytest.fixture
def callback_server():
    server = CallbackServer()
    yield server
    server.close()


# --- Fake AI providers, one per kind, each speaking its vendor's documented wire format ---------


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict
    headers: dict
    body: object
    raw_path: str = ""  # as sent, with its query (a signature covers it)
    raw_body: bytes = b""


def words(text: str) -> int:
    return len(text.split())


class ProviderServer(_Server):
    """A fake AI provider: records every request and checks it has the documented shape (path,
    headers, body fields). A request that does not is answered 400 and noted in `problems`,
    which its fixture asserts empty, so a test cannot pass on a malformed request.

    Scripted steps answer the next requests in order: a str (the answer's text),
    ("status", code[, headers]) (the vendor's error body for that status), ("body", code, json
    [, headers]), ("stop", reason[, text]) (an answer with that stop/finish reason),
    ("slow", seconds, step), ("malformed",) and ("echo_key",) (a careless server quoting the
    key it refused). Without a step the answer is `responder(prompt)`."""

    def __init__(self, key: str | None = None) -> None:
        super().__init__()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.key = key
        self.requests: list[Request] = []
        self.problems: list[str] = []
        self.default_content = '{"decision": "approve"}'
        self.responder = lambda prompt: self.default_content

    def reply(self, content: str) -> None:
        self.default_content = content

    def handle(self, handler, raw: bytes | None) -> None:
        parts = urllib.parse.urlsplit(handler.path)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        request = Request(
            handler.command,
            parts.path,
            dict(urllib.parse.parse_qsl(parts.query)),
            {name.lower(): value for name, value in handler.headers.items()},
            body,
            handler.path,
            raw or b"",
        )
        with self.lock:
            self.requests.append(request)
        problems = self.check(request)
        if problems:
            with self.lock:
                self.problems.extend(f"{request.method} {request.path}: {p}" for p in problems)
            status, answer, extra = 400, self.error(400, "; ".join(problems)), {}
        elif not self.is_authorised(request):
            status, answer, extra = self.unauthorised(request)
        else:
            step = self.next_step()
            if isinstance(step, tuple) and step[0] == "slow":
                time.sleep(step[1])
                step = step[2]
            status, answer, extra = self.scripted(request, step)
        payload = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a client timed out
            self.send(handler, status, payload, extra)

    def scripted(self, request: Request, step) -> tuple[int, object, dict]:
        if isinstance(step, tuple) and step[0] == "status":
            extra = step[2] if len(step) > 2 else {}
            return step[1], self.error(step[1], f"scripted {step[1]}"), extra
        if isinstance(step, tuple) and step[0] == "body":
            return step[1], step[2], step[3] if len(step) > 3 else {}
        if isinstance(step, tuple) and step[0] == "malformed":
            return 200, b"<html>this is not json", {}
        if isinstance(step, tuple) and step[0] == "echo_key":
            return 401, self.error(401, f"Incorrect API key provided: {self.sent_key(request)}"), {}
        return self.route(request, step)

    # What a vendor's server defines.
    def check(self, request: Request) -> list[str]:
        raise NotImplementedError

    def route(self, request: Request, step) -> tuple[int, object, dict]:
        raise NotImplementedError

    def error(self, status: int, message: str) -> dict:
        raise NotImplementedError

    def sent_key(self, request: Request) -> str:
        raise NotImplementedError

    def is_authorised(self, request: Request) -> bool:
        return self.key is None or self.sent_key(request) == self.key

    def unauthorised(self, request: Request) -> tuple[int, object, dict]:
        return 401, self.error(401, "invalid API key"), {}

    def prompts(self) -> list[str]:
        """The user prompts of the generation requests received, in order."""
        raise NotImplementedError

    @staticmethod
    def unknown_fields(body: dict, known: set[str]) -> list[str]:
        unknown = sorted(set(body) - known)
        return [f"undocumented fields {', '.join(unknown)}"] if unknown else []

    @classmethod
    def body_problems(cls, body, known: set[str], *, needs_model: bool = False) -> list[str]:
        """What every vendor's JSON body shares: an object, documented fields only, a model."""
        if not isinstance(body, dict):
            return ["the body must be a JSON object"]
        problems = cls.unknown_fields(body, known)
        if needs_model and (not isinstance(body.get("model"), str) or not body["model"]):
            problems.append("model is required")
        return problems


def check_messages(messages, roles: set[str]) -> list[str]:
    if not isinstance(messages, list) or not messages:
        return ["messages must be a non-empty list"]
    problems = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in roles:
            problems.append(f"a message needs a role among {sorted(roles)}: {message!r}")
        elif not isinstance(message.get("content"), str | list):
            problems.append("a message's content must be text or a list of blocks")
    return problems


class AnthropicServer(ProviderServer):
    """Anthropic's Messages API (POST /v1/messages) and Models API (GET /v1/models/{id})."""

    VERSION = "2023-06-01"
    FIELDS = {
        "model",
        "messages",
        "max_tokens",
        "system",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "stream",
        "metadata",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
    }
    ERROR_TYPES = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        529: "overloaded_error",
    }

    def __init__(self, key: str | None = None) -> None:
        super().__init__(key)
        self.models = {"claude-test": "Claude Test"}

    def error(self, status: int, message: str) -> dict:
        kind = self.ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def sent_key(self, request: Request) -> str:
        return request.headers.get("x-api-key", "")

    def unauthorised(self, request: Request) -> tuple[int, object, dict]:
        return 401, self.error(401, "invalid x-api-key"), {}

    def check(self, request: Request) -> list[str]:
        problems = []
        if request.headers.get("anthropic-version") != self.VERSION:
            problems.append(f"anthropic-version must be {self.VERSION}")
        if "authorization" in request.headers:
            problems.append("the key goes in x-api-key, not Authorization")
        if request.method == "GET" and request.path.startswith("/v1/models/"):
            return problems
        if (request.method, request.path) != ("POST", "/v1/messages"):
            return [*problems, "no such endpoint"]
        body = request.body
        problems += self.body_problems(body, self.FIELDS, needs_model=True)
        if not isinstance(body, dict):
            return problems
        if type(body.get("max_tokens")) is not int or body["max_tokens"] < 1:
            problems.append("max_tokens is required and must be a positive integer")
        problems += check_messages(body.get("messages"), {"user", "assistant"})
        if body.get("stream"):
            problems.append("stream is not expected")
        tools = body.get("tools") or []
        for tool in tools:
            schema = tool.get("input_schema") if isinstance(tool, dict) else None
            if not isinstance(tool.get("name"), str) or not isinstance(schema, dict):
                problems.append("a tool needs a name and an input_schema")
            elif schema.get("type") != "object":
                problems.append("a tool's input_schema must be of type object")
        choice = body.get("tool_choice")
        if choice is not None:
            names = {tool.get("name") for tool in tools}
            if choice.get("type") not in ("auto", "any", "tool", "none"):
                problems.append("tool_choice.type must be auto, any, tool or none")
            elif choice["type"] == "tool" and choice.get("name") not in names:
                problems.append("tool_choice names no tool of the request")
        return problems

    def route(self, request: Request, step) -> tuple[int, object, dict]:
        if request.method == "GET":
            model = request.path.removeprefix("/v1/models/")
            if model not in self.models:
                return 404, self.error(404, f"model: {model}"), {}
            name = self.models[model]
            about = {"type": "model", "id": model, "display_name": name}
            return 200, {**about, "created_at": "2025-02-19T00:00:00Z"}, {}
        body = request.body
        prompt = self.prompt_of(body)
        reason = step[1] if isinstance(step, tuple) and step[0] == "stop" else None
        text = step[2] if reason and len(step) > 2 else None
        text = step if isinstance(step, str) else text
        text = self.responder(prompt) if text is None else text
        choice = body.get("tool_choice") or {}
        if reason == "refusal":
            content = []
        elif choice.get("type") == "tool":
            try:
                tool_input = json.loads(text) if reason is None else {}
            except ValueError:
                tool_input = {}
            content = [
                {"type": "tool_use", "id": "toolu_01", "name": choice["name"], "input": tool_input}
            ]
            reason = reason or "tool_use"
        else:
            content = [{"type": "text", "text": text}]
        answer = {
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": reason or "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": words(prompt), "output_tokens": words(text)},
        }
        return 200, answer, {}

    @staticmethod
    def prompt_of(body: dict) -> str:
        content = body["messages"][-1]["content"]
        return content if isinstance(content, str) else json.dumps(content)

    def prompts(self) -> list[str]:
        return [self.prompt_of(r.body) for r in self.requests if r.path == "/v1/messages"]


GEMINI_STATUSES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
GEMINI_SCHEMA_FIELDS = {
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
}
GEMINI_TYPES = {"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"}


def gemini_schema_problems(schema, where: str = "responseSchema") -> list[str]:
    """What Gemini's Schema (an OpenAPI 3.0 subset) would refuse in `schema`."""
    if not isinstance(schema, dict):
        return [f"{where} must be an object"]
    problems = [
        f"{where}.{key} is not a Schema field" for key in schema if key not in GEMINI_SCHEMA_FIELDS
    ]
    if "type" in schema and schema["type"] not in GEMINI_TYPES:
        problems.append(f"{where}.type {schema['type']!r} is not a Gemini type")
    if "enum" in schema and not all(isinstance(value, str) for value in schema["enum"]):
        problems.append(f"{where}.enum must hold strings")
    properties = schema.get("properties", {})
    for name, sub in properties.items():
        problems += gemini_schema_problems(sub, f"{where}.properties.{name}")
    for name in [*schema.get("required", []), *schema.get("propertyOrdering", [])]:
        if name not in properties:
            problems.append(f"{where} names {name!r}, which is not among its properties")
    if "items" in schema:
        problems += gemini_schema_problems(schema["items"], f"{where}.items")
    for index, sub in enumerate(schema.get("anyOf", [])):
        problems += gemini_schema_problems(sub, f"{where}.anyOf[{index}]")
    return problems


class GeminiServer(ProviderServer):
    """The Gemini API: POST /v1beta/models/{model}:generateContent and GET /v1beta/models/{model}.

    Extra steps: ("blocked", reason) (the prompt is blocked: promptFeedback.blockReason),
    ("rate_limited", "7s") (a 429 with a RetryInfo detail)."""

    FIELDS = {
        "contents",
        "tools",
        "toolConfig",
        "safetySettings",
        "systemInstruction",
        "generationConfig",
        "cachedContent",
    }
    GENERATION_FIELDS = {
        "stopSequences",
        "responseMimeType",
        "responseSchema",
        "responseJsonSchema",
        "candidateCount",
        "maxOutputTokens",
        "temperature",
        "topP",
        "topK",
        "seed",
        "presencePenalty",
        "frequencyPenalty",
        "thinkingConfig",
    }
    RATING = {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}

    def __init__(self, key: str | None = None) -> None:
        super().__init__(key)
        self.models = {"gemini-test": ["generateContent", "countTokens"]}

    def error(self, status: int, message: str) -> dict:
        code = GEMINI_STATUSES.get(status, "UNKNOWN")
        return {"error": {"code": status, "message": message, "status": code}}

    def sent_key(self, request: Request) -> str:
        return request.headers.get("x-goog-api-key", "")

    def unauthorised(self, request: Request) -> tuple[int, object, dict]:
        answer = self.error(400, "API key not valid. Please pass a valid API key.")
        answer["error"]["details"] = [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
        ]
        return 400, answer, {}

    def model_of(self, path: str) -> str:
        return path.removeprefix("/v1beta/models/").removesuffix(":generateContent")

    def check(self, request: Request) -> list[str]:
        problems = ["the key goes in x-goog-api-key, not the URL"] if "key" in request.query else []
        is_generate = request.path.endswith(":generateContent")
        if not request.path.startswith("/v1beta/models/"):
            return [*problems, "no such endpoint"]
        if request.method == "GET" and not is_generate:
            return problems
        if request.method != "POST" or not is_generate:
            return [*problems, "no such endpoint"]
        body = request.body
        problems += self.body_problems(body, self.FIELDS)
        if not isinstance(body, dict):
            return problems
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            problems.append("contents must be a non-empty list")
        for content in contents or []:
            parts = content.get("parts") if isinstance(content, dict) else None
            if content.get("role", "user") not in ("user", "model"):
                problems.append("a content's role must be user or model")
            if not isinstance(parts, list) or not all("text" in part for part in parts):
                problems.append("a content needs parts with text")
        generation = body.get("generationConfig", {})
        problems += [
            f"generationConfig.{p}" for p in self.unknown_fields(generation, self.GENERATION_FIELDS)
        ]
        if "responseSchema" in generation:
            if generation.get("responseMimeType") != "application/json":
                problems.append("responseSchema needs responseMimeType application/json")
            problems += gemini_schema_problems(generation["responseSchema"])
        return problems

    def route(self, request: Request, step) -> tuple[int, object, dict]:
        model = self.model_of(request.path)
        if model not in self.models:
            message = f"models/{model} is not found for API version v1beta"
            return 404, self.error(404, message), {}
        if request.method == "GET":
            return 200, self.model_info(model), {}
        if isinstance(step, tuple) and step[0] == "rate_limited":
            answer = self.error(429, "You exceeded your current quota.")
            answer["error"]["details"] = [
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": step[1]}
            ]
            return 429, answer, {}
        prompt = self.prompt_of(request.body)
        usage = {"promptTokenCount": words(prompt), "totalTokenCount": words(prompt)}
        if isinstance(step, tuple) and step[0] == "blocked":
            feedback = {"blockReason": step[1], "safetyRatings": [self.RATING]}
            return (
                200,
                {"promptFeedback": feedback, "usageMetadata": usage, "modelVersion": model},
                {},
            )
        reason = step[1] if isinstance(step, tuple) and step[0] == "stop" else "STOP"
        text = step if isinstance(step, str) else None
        if isinstance(step, tuple) and step[0] == "stop" and len(step) > 2:
            text = step[2]
        text = self.responder(prompt) if text is None else text
        candidate = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        if reason == "SAFETY":
            candidate = {"index": 0, "safetyRatings": [self.RATING]}
        candidate["finishReason"] = reason
        usage = {
            "promptTokenCount": words(prompt),
            "candidatesTokenCount": words(text),
            "totalTokenCount": words(prompt) + words(text),
        }
        answer = {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": f"{model}-001",
            "responseId": "resp-1",
        }
        return 200, answer, {}

    def model_info(self, model: str) -> dict:
        return {
            "name": f"models/{model}",
            "version": "001",
            "displayName": "Gemini Test",
            "inputTokenLimit": 1048576,
            "outputTokenLimit": 8192,
            "supportedGenerationMethods": self.models[model],
        }

    @staticmethod
    def prompt_of(body: dict) -> str:
        return " ".join(part["text"] for part in body["contents"][-1]["parts"])

    def prompts(self) -> list[str]:
        return [
            self.prompt_of(r.body) for r in self.requests if r.path.endswith(":generateContent")
        ]


COHERE_UNSUPPORTED = {
    "anyOf",
    "allOf",
    "oneOf",
    "not",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "uniqueItems",
    "additionalProperties",
}


def cohere_schema_problems(schema, where: str = "json_schema") -> list[str]:
    """What Cohere's structured outputs refuse (docs.cohere.com, "Structured Outputs")."""
    if not isinstance(schema, dict):
        return [f"{where} must be an object"]
    problems = [f"{where}.{key} is not supported" for key in schema if key in COHERE_UNSUPPORTED]
    if schema.get("format") not in (None, "date-time", "uuid", "date", "time"):
        problems.append(f"{where}.format {schema['format']} is not supported")
    if schema.get("type") == "object" and schema.get("properties") and not schema.get("required"):
        problems.append(f"{where} is an object without a required field")
    for name, sub in (schema.get("properties") or {}).items():
        problems += cohere_schema_problems(sub, f"{where}.properties.{name}")
    if isinstance(schema.get("items"), dict):
        problems += cohere_schema_problems(schema["items"], f"{where}.items")
    return problems


class CohereServer(ProviderServer):
    """Cohere's Chat API v2 (POST /v2/chat) and Models API (GET /v1/models/{model})."""

    FIELDS = {
        "model",
        "messages",
        "stream",
        "tools",
        "strict_tools",
        "documents",
        "citation_options",
        "response_format",
        "safety_mode",
        "max_tokens",
        "stop_sequences",
        "temperature",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "k",
        "p",
        "logprobs",
        "tool_choice",
        "thinking",
        "priority",
    }
    SYSTEM_TOKENS = 200  # Cohere adds its own preamble: `tokens` counts it, billed_units not

    def __init__(self, key: str | None = None) -> None:
        super().__init__(key)
        self.models = {"command-test": ["chat", "generate"]}

    def error(self, status: int, message: str) -> dict:
        return {"id": "err-1", "message": message}

    def sent_key(self, request: Request) -> str:
        return request.headers.get("authorization", "").removeprefix("Bearer ")

    def unauthorised(self, request: Request) -> tuple[int, object, dict]:
        return 401, self.error(401, "invalid api token"), {}

    def check(self, request: Request) -> list[str]:
        authorization = request.headers.get("authorization", "")
        problems = [] if authorization.startswith("Bearer ") else ["a bearer key is required"]
        if request.method == "GET" and request.path.startswith("/v1/models/"):
            return problems
        if (request.method, request.path) != ("POST", "/v2/chat"):
            return [*problems, "no such endpoint"]
        body = request.body
        problems += self.body_problems(body, self.FIELDS, needs_model=True)
        if not isinstance(body, dict):
            return problems
        problems += check_messages(body.get("messages"), {"user", "assistant", "system", "tool"})
        if body.get("stream") is not False:
            problems.append("this endpoint answers stream: false requests")
        response_format = body.get("response_format")
        if response_format is not None:
            kind = response_format.get("type")
            if kind not in ("text", "json_object"):
                problems.append("response_format.type must be text or json_object")
            schema = response_format.get("json_schema")
            if schema is not None and kind != "json_object":
                problems.append("json_schema needs type json_object")
            if schema is not None and schema.get("type") != "object":
                problems.append("the json_schema's top level must be an object")
            if schema is not None:
                problems += cohere_schema_problems(schema)
        return problems

    def route(self, request: Request, step) -> tuple[int, object, dict]:
        if request.method == "GET":
            model = request.path.removeprefix("/v1/models/")
            if model not in self.models:
                return 404, self.error(404, f"model '{model}' not found"), {}
            endpoints = self.models[model]
            return 200, {"name": model, "endpoints": endpoints, "context_length": 256000}, {}
        prompt = self.prompt_of(request.body)
        if request.body["model"] not in self.models:
            return 404, self.error(404, f"model '{request.body['model']}' not found"), {}
        reason = step[1] if isinstance(step, tuple) and step[0] == "stop" else "COMPLETE"
        text = step if isinstance(step, str) else None
        if isinstance(step, tuple) and step[0] == "stop" and len(step) > 2:
            text = step[2]
        text = self.responder(prompt) if text is None else text
        billed = {"input_tokens": words(prompt), "output_tokens": words(text)}
        tokens = {**billed, "input_tokens": words(prompt) + self.SYSTEM_TOKENS}
        answer = {
            "id": "chat-1",
            "finish_reason": reason,
            "message": {"role": "assistant", "content": [{"type": "text", "text": text}]},
            "usage": {"billed_units": billed, "tokens": tokens},
        }
        return 200, answer, {}

    @staticmethod
    def prompt_of(body: dict) -> str:
        return body["messages"][-1]["content"]

    def prompts(self) -> list[str]:
        return [self.prompt_of(r.body) for r in self.requests if r.path == "/v2/chat"]


class OllamaServer(ProviderServer):
    """Ollama's native API: POST /api/chat and POST /api/show. An answer longer than
    options.num_predict words is cut there with done_reason "length", as Ollama does."""

    FIELDS = {"model", "messages", "tools", "format", "options", "stream", "keep_alive", "think"}

    def __init__(self, key: str | None = None) -> None:
        super().__init__(key)
        self.models = {"llama-test:latest"}

    def error(self, status: int, message: str) -> dict:
        return {"error": message}

    def sent_key(self, request: Request) -> str:
        return request.headers.get("authorization", "").removeprefix("Bearer ")

    def unauthorised(self, request: Request) -> tuple[int, object, dict]:
        return 401, self.error(401, "unauthorized"), {}

    def pulled(self, model: str) -> bool:
        return (model if ":" in model else f"{model}:latest") in self.models

    def check(self, request: Request) -> list[str]:
        if request.method != "POST" or request.path not in ("/api/chat", "/api/show"):
            return ["no such endpoint"]
        body = request.body
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return ["the body must be a JSON object naming a model"]
        if request.path == "/api/show":
            return self.unknown_fields(body, {"model", "verbose"})
        problems = self.unknown_fields(body, self.FIELDS)
        problems += check_messages(body.get("messages"), {"system", "user", "assistant", "tool"})
        if body.get("stream") is not False:
            problems.append("stream must be false (Ollama streams by default)")
        if "format" in body and not (body["format"] == "json" or isinstance(body["format"], dict)):
            problems.append('format must be "json" or a JSON schema')
        if not isinstance(body.get("options", {}), dict):
            problems.append("options must be an object")
        return problems

    def route(self, request: Request, step) -> tuple[int, object, dict]:
        body = request.body
        if not self.pulled(body["model"]):
            return 404, self.error(404, f"model '{body['model']}' not found"), {}
        if request.path == "/api/show":
            details = {"family": "llama", "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}
            return 200, {"details": details, "capabilities": ["completion"]}, {}
        prompt = self.prompt_of(body)
        text = step if isinstance(step, str) else self.responder(prompt)
        reason = "stop"
        limit = body.get("options", {}).get("num_predict")
        if isinstance(limit, int) and words(text) > limit:
            text, reason = " ".join(text.split()[:limit]), "length"
        answer = {
            "model": body["model"],
            "created_at": "2026-12-02T10:00:00.000000Z",
            "message": {"role": "assistant", "content": text},
            "done": True,
            "done_reason": reason,
            "total_duration": 5000000,
            "load_duration": 1000000,
            "prompt_eval_count": words(prompt),
            "prompt_eval_duration": 1000000,
            "eval_count": words(text),
            "eval_duration": 3000000,
        }
        return 200, answer, {}

    @staticmethod
    def prompt_of(body: dict) -> str:
        return body["messages"][-1]["content"]

    def prompts(self) -> list[str]:
        return [self.prompt_of(r.body) for r in self.requests if r.path == "/api/chat"]


CHAT_FIELDS = {
    "model",
    "messages",
    "temperature",
    "top_p",
    "n",
    "stream",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "user",
    "response_format",
    "seed",
    "tools",
    "tool_choice",
    "logprobs",
    "top_logprobs",
    "reasoning_effort",
}


def response_format_problems(response_format) -> list[str]:
    if response_format is None:
        return []
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        return ["response_format.type must be text, json_object or json_schema"]
    if kind == "json_schema":
        schema = response_format.get("json_schema") or {}
        if not isinstance(schema.get("name"), str) or not isinstance(schema.get("schema"), dict):
            return ["response_format.json_schema needs a name and a schema"]
    return []


class AzureOpenAIServer(ProviderServer):
    """Azure OpenAI: POST /openai/deployments/{deployment}/chat/completions?api-version=….

    Extra steps: ("content_filter",) (the prompt is refused, HTTP 400 code content_filter),
    ("stop", "content_filter") (the answer is withheld), ("rate_limited", milliseconds)."""

    API_VERSIONS = {"2024-02-01", "2024-06-01", "2024-10-21", "2024-08-01-preview"}
    SCHEMA_SINCE = "2024-08-01"  # json_schema response_format: 2024-08-01-preview and later
    SAFE = {"hate": {"filtered": False, "severity": "safe"}}

    def __init__(self, key: str | None = None) -> None:
        super().__init__(key)
        self.deployments = {"gpt4o-test": "gpt-4o-2024-08-06"}

    def error(self, status: int, message: str) -> dict:
        return {"error": {"code": str(status), "message": message}}

    def sent_key(self, request: Request) -> str:
        return request.headers.get("api-key", "")

    def unauthorised(self, request: Request) -> tuple[int, object, dict]:
        message = (
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
            "provide a valid key for an active subscription and use a correct regional API "
            "endpoint for your resource."
        )
        return 401, self.error(401, message), {}

    def deployment_of(self, path: str) -> str:
        return path.removeprefix("/openai/deployments/").removesuffix("/chat/completions")

    def check(self, request: Request) -> list[str]:
        problems = [] if "authorization" not in request.headers else ["the key goes in api-key"]
        is_chat = request.path.startswith("/openai/deployments/") and request.path.endswith(
            "/chat/completions"
        )
        if request.method != "POST" or not is_chat:
            return [*problems, "no such endpoint"]
        if request.query.get("api-version") not in self.API_VERSIONS:
            problems.append("api-version must be a known version")
        body = request.body
        problems += self.body_problems(body, CHAT_FIELDS)
        if not isinstance(body, dict):
            return problems
        problems += check_messages(body.get("messages"), {"system", "user", "assistant", "tool"})
        problems += response_format_problems(body.get("response_format"))
        return problems

    def route(self, request: Request, step) -> tuple[int, object, dict]:
        deployment = self.deployment_of(request.path)
        if deployment not in self.deployments:
            message = "The API deployment for this resource does not exist."
            return 404, {"error": {"code": "DeploymentNotFound", "message": message}}, {}
        body, version = request.body, request.query["api-version"]
        if (body.get("response_format") or {}).get("type") == "json_schema" and (
            version < self.SCHEMA_SINCE
        ):
            message = (
                "response_format value as json_schema is enabled only for api versions "
                "2024-08-01-preview and later"
            )
            return 400, {"error": {"code": "BadRequest", "message": message}}, {}
        if step == ("content_filter",):
            return 400, self.content_filter_error(), {}
        if isinstance(step, tuple) and step[0] == "rate_limited":
            message = (
                f"Requests to the ChatCompletions_Create Operation under Azure OpenAI API "
                f"version {version} have exceeded token rate limit. Please retry after 1 second."
            )
            extra = {"Retry-After": "1", "retry-after-ms": str(step[1])}
            return 429, {"error": {"code": "429", "message": message}}, extra
        prompt = body["messages"][-1]["content"]
        reason = step[1] if isinstance(step, tuple) and step[0] == "stop" else "stop"
        text = step if isinstance(step, str) else None
        if isinstance(step, tuple) and step[0] == "stop" and len(step) > 2:
            text = step[2]
        text = self.responder(prompt) if text is None else text
        choice = {
            "index": 0,
            "finish_reason": reason,
            "message": {"role": "assistant", "content": text},
            "content_filter_results": self.SAFE,
        }
        if reason == "content_filter":
            choice["message"]["content"] = None
            choice["content_filter_results"] = {
                "violence": {"filtered": True, "severity": "medium"}
            }
        answer = {
            "id": "chatcmpl-azure",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.deployments[deployment],
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": self.SAFE}],
            "choices": [choice],
            "usage": {
                "prompt_tokens": words(prompt),
                "completion_tokens": words(text or ""),
                "total_tokens": words(prompt) + words(text or ""),
            },
        }
        return 200, answer, {}

    @staticmethod
    def content_filter_error() -> dict:
        message = (
            "The response was filtered due to the prompt triggering Azure OpenAI's content "
            "management policy. Please modify your prompt and retry."
        )
        result = {
            "hate": {"filtered": True, "severity": "high"},
            "violence": {"filtered": False, "severity": "safe"},
        }
        inner = {"code": "ResponsibleAIPolicyViolation", "content_filter_result": result}
        error = {"message": message, "type": None, "param": "prompt", "code": "content_filter"}
        return {"error": {**error, "status": 400, "innererror": inner}}

    def prompts(self) -> list[str]:
        return [r.body["messages"][-1]["content"] for r in self.requests]


class LlamaCppServer(ProviderServer):
    """An OpenAI-compatible server the way llama-cpp-python's is: it lists its one model,
    answers a json_schema response_format with HTTP 500 (only text and json_object are valid
    there), and cuts an answer longer than max_tokens words with finish_reason "length"."""

    def __init__(self, key: str | None = None) -> None:
        super().__init__(key)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.model = "gemma-3-270m"
        self.lists_models = True

    def error(self, status: int, message: str) -> dict:
        return {"error": {"code": status, "message": message, "type": "server_error"}}

    def sent_key(self, request: Request) -> str:
        return request.headers.get("authorization", "").removeprefix("Bearer ")

    def unauthorised(self, request: Request) -> tuple[int, object, dict]:
        answer = {
            "error": {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}
        }
        return 401, answer, {}

    def check(self, request: Request) -> list[str]:
        authorization = request.headers.get("authorization")
        problems = []
        if authorization is not None and not authorization.startswith("Bearer "):
            problems.append("Authorization must be a bearer key")
        if (request.method, request.path) == ("GET", "/v1/models"):
            return problems
        if (request.method, request.path) != ("POST", "/v1/chat/completions"):
            return [*problems, "no such endpoint"]
        body = request.body
        problems += self.body_problems(body, CHAT_FIELDS)
        if not isinstance(body, dict):
            return problems
        problems += check_messages(body.get("messages"), {"system", "user", "assistant"})
        return problems + response_format_problems(body.get("response_format"))

    def route(self, request: Request, step) -> tuple[int, object, dict]:
        if request.method == "GET":
            if not self.lists_models:
                return 404, {"detail": "Not Found"}, {}
            listed = [{"id": self.model, "object": "model", "owned_by": "me", "permissions": []}]
            return 200, {"object": "list", "data": listed}, {}
        body = request.body
        if (body.get("response_format") or {}).get("type") == "json_schema":
            detail = (
                "[{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
                "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}]"
            )
            return 500, self.error(500, detail), {}
        prompt = body["messages"][-1]["content"]
        text = step if isinstance(step, str) else self.responder(prompt)
        reason = "stop"
        limit = body.get("max_tokens")
        if isinstance(limit, int) and words(text) > limit:
            text, reason = " ".join(text.split()[:limit]), "length"
        answer = {
            "id": "chatcmpl-llama",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": reason,
                }
            ],
            "usage": {
                "prompt_tokens": words(prompt),
                "completion_tokens": words(text),
                "total_tokens": words(prompt) + words(text),
            },
        }
        return 200, answer, {}

    def prompts(self) -> list[str]:
        return [r.body["messages"][-1]["content"] for r in self.requests if r.method == "POST"]


def serve(server: ProviderServer):
    yield server
    server.close()
    assert server.problems == [], "the client sent requests the provider would refuse"


@pytest.fixture
def anthropic_server():
    from tests.conftest import CANARY_SECRET

    yield from serve(AnthropicServer(CANARY_SECRET))


@pytest.fixture
def gemini_server():
    from tests.conftest import CANARY_SECRET

    yield from serve(GeminiServer(CANARY_SECRET))


@pytest.fixture
def cohere_server():
    from tests.conftest import CANARY_SECRET

    yield from serve(CohereServer(CANARY_SECRET))


@pytest.fixture
def ollama_server():
    yield from serve(OllamaServer())  # Ollama checks no key


@pytest.fixture
def azure_openai_server():
    from tests.conftest import CANARY_SECRET

    yield from serve(AzureOpenAIServer(CANARY_SECRET))


@pytest.fixture
def llamacpp_server():
    yield from serve(LlamaCppServer())  # like `llama_cpp.server` started without --api-key


@dataclass(frozen=True)
class FakeKind:
    """A provider kind with its fake server, for tests that run every kind the same way."""

    kind: str
    fixture: str  # the server's fixture
    model: str
    settings: dict  # non-default values of the kind's own settings
    retried: tuple  # a step the kind must retry
    refused: tuple  # a step the kind must refuse permanently, as `refused_code`
    refused_code: str
    credential: str = "credential"  # the fixture of the credential the provider uses
    variant: str = ""  # another form of the same kind (gemini on Vertex AI, Azure with Entra ID)

    @property
    def name(self) -> str:
        return f"{self.kind}_{self.variant}" if self.variant else self.kind


FAKE_KINDS = {
    fake.name: fake
    for fake in (
        FakeKind(
            "anthropic",
            "anthropic_server",
            "claude-test",
            {"max_tokens": 512},
            ("status", 529),
            ("stop", "refusal"),
            "content_refused",
        ),
        FakeKind(
            "gemini",
            "gemini_server",
            "gemini-test",
            {},
            ("rate_limited", "0s"),
            ("blocked", "SAFETY"),
            "content_refused",
        ),
        FakeKind(
            "cohere",
            "cohere_server",
            "command-test",
            {},
            ("status", 429, {"Retry-After": "0"}),
            ("stop", "MAX_TOKENS", '{"decision": "appr'),
            "truncated_answer",
        ),
        FakeKind(
            "ollama",
            "ollama_server",
            "llama-test",
            {},
            ("status", 503),
            ("body", 404, {"error": "model 'llama-test' not found"}),
            "model_not_found",
        ),
        FakeKind(
            "azure_openai",
            "azure_openai_server",
            "gpt4o-test",
            {"api_version": "2024-08-01-preview", "structured_output": "json_object"},
            ("rate_limited", 0),
            ("content_filter",),
            "content_refused",
        ),
        FakeKind(
            "bedrock",
            "bedrock_server",
            "anthropic.claude-test-v1:0",
            {"max_tokens": 512},
            ("status", 429),
            ("error", 400, "ValidationException", "Malformed input request, please reformat"),
            "provider_error",
            "aws_credential",
        ),
        FakeKind(
            "gemini",
            "vertex_server",
            "gemini-test",
            {"api": "vertex", "project": "my-project", "location": "us-central1"},
            ("rate_limited", "0s"),
            ("blocked", "SAFETY"),
            "content_refused",
            "service_account_credential",
            "vertex",
        ),
        FakeKind(
            "azure_openai",
            "entra_azure_server",
            "gpt4o-test",
            {
                "auth": "entra_id",
                "client_id": "interlock-app",
                "token_url": "{token_url}",
                "api_version": "2024-08-01-preview",
            },
            ("rate_limited", 0),
            ("content_filter",),
            "content_refused",
            "credential",
            "entra",
        ),
    )
}


@pytest.fixture(params=sorted(FAKE_KINDS))
def fake_kind(request):
    """(FakeKind, its running server) for each provider kind with a fake server."""
    from dataclasses import replace

    fake = FAKE_KINDS[request.param]
    server = request.getfixturevalue(fake.fixture)
    tokens = getattr(server, "tokens", None)  # a token endpoint the settings must name
    if tokens is not None and "{token_url}" in fake.settings.values():
        settings = {
            name: tokens.url if value == "{token_url}" else value
            for name, value in fake.settings.items()
        }
        fake = replace(fake, settings=settings)
    return fake, server
