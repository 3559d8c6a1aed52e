"""Local HTTP servers outside our walls: an OpenAI-compatible API and a legacy callback receiver.

Both are real servers on 127.0.0.1 speaking the real wire format; tests script their answers.
"""

import contextlib
import json
import threading
import time
import urllib.parse
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
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
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
