"""Local AWS services: Bedrock Runtime (Converse) and Amazon Q Business (ChatSync, GetApplication).

Each checks every request's SigV4 signature the way AWS does: it parses the Authorization
header, rebuilds the canonical request from what arrived (method, raw path and query, the signed
headers, the body's bytes) and recomputes the signature with botocore and the secret key it
knows. Request bodies are checked against the members botocore's own service model documents.
"""

import datetime
import hmac
import re

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.fixtures_http import ProviderServer, Request, words

ACCESS_KEY_ID = "AKIDCANARYEXAMPLE01"
AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[A-Z0-9]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/"
    r"(?P<service>[a-z0-9-]+)/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), "
    r"Signature=(?P<signature>[0-9a-f]{64})"
)
_models = {}


def body_members(service: str, operation: str) -> set[str]:
    """The members of an operation's input that travel in the JSON body (botocore's model)."""
    if (service, operation) not in _models:
        model = botocore.session.get_session().get_service_model(service)
        shape = model.operation_model(operation).input_shape
        _models[service, operation] = {
            name
            for name, member in shape.members.items()
            if member.serialization.get("location") is None
        }
    return _models[service, operation]


class AwsServer(ProviderServer):
    """A REST-JSON AWS service: SigV4 checked, errors typed by `x-amzn-ErrorType`."""

    service = ""  # the signing name
    region = "us-east-1"
    ERROR_TYPES: dict[int, str] = {}

    def __init__(self, secret: str, session_token: str = "") -> None:
        super().__init__(secret)
        self.session_token = session_token
        self.failure = ("", "")  # why the last signature was refused: (type, message)

    def error(self, status: int, message: str) -> dict:
        return {"message": message}

    def typed(self, status: int, kind: str, message: str) -> tuple[int, object, dict]:
        return status, {"message": message}, {"x-amzn-ErrorType": f"{kind}:http://internal/"}

    def scripted(self, request: Request, step) -> tuple[int, object, dict]:
        if isinstance(step, tuple) and step[0] == "status":
            kind = step[3] if len(step) > 3 else self.ERROR_TYPES.get(step[1], "InternalFailure")
            status, body, extra = self.typed(step[1], kind, f"scripted {step[1]}")
            return status, body, {**extra, **(step[2] if len(step) > 2 else {})}
        if isinstance(step, tuple) and step[0] == "error":  # ("error", status, type, message)
            return self.typed(step[1], step[2], step[3])
        if isinstance(step, tuple) and step[0] == "echo_key":  # a careless proxy, not AWS
            message = f"Incorrect API key provided: {self.key}"
            return self.typed(403, "UnrecognizedClientException", message)
        return super().scripted(request, step)

    # --- SigV4 --------------------------------------------------------------------------

    def check(self, request: Request) -> list[str]:
        found = AUTHORIZATION.fullmatch(request.headers.get("authorization", ""))
        if found is None:
            return ["Authorization must be an AWS4-HMAC-SHA256 signature"]
        signed = found["signed"].split(";")
        problems = [
            f"{name} must be signed" for name in ("host", "x-amz-date") if name not in signed
        ]
        problems += [
            f"signed header {name} was not sent" for name in signed if name not in request.headers
        ]
        if (found["region"], found["service"]) != (self.region, self.service):
            problems.append(f"the scope must be {self.region}/{self.service}")
        stamp = request.headers.get("x-amz-date", "")
        try:
            when = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
        except ValueError:
            return [*problems, "X-Amz-Date must be a basic ISO 8601 time"]
        if abs((datetime.datetime.now(datetime.UTC) - when).total_seconds()) > 300:
            problems.append("X-Amz-Date is more than 5 minutes away")
        if found["date"] != stamp[:8]:
            problems.append("the credential scope's date is not X-Amz-Date's")
        if "x-amz-security-token" in request.headers and "x-amz-security-token" not in signed:
            problems.append("X-Amz-Security-Token must be signed")
        return problems + self.operation_problems(request)

    def is_authorised(self, request: Request) -> bool:
        found = AUTHORIZATION.fullmatch(request.headers["authorization"])
        if found["key"] != ACCESS_KEY_ID:
            self.failure = (
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
            return False
        token = request.headers.get("x-amz-security-token", "")
        if token != self.session_token:
            self.failure = (
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
            return False
        headers = {name: request.headers[name] for name in found["signed"].split(";")}
        rebuilt = AWSRequest(
            method=request.method,
            url=f"http://{request.headers['host']}{request.raw_path}",
            data=request.raw_body,
            headers=headers,
        )
        rebuilt.context["timestamp"] = request.headers["x-amz-date"]
        signer = SigV4Auth(
            Credentials(found["key"], self.key, token or None), self.service, self.region
        )
        expected = signer.signature(
            signer.string_to_sign(rebuilt, signer.canonical_request(rebuilt)), rebuilt
        )
        if not hmac.compare_digest(expected, found["signature"]):
            self.failure = (
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method.",
            )
            return False
        return True

    def unauthorised(self, request: Request) -> tuple[int, object, dict]:
        return self.typed(403, *self.failure)

    def sent_key(self, request: Request) -> str:
        return ACCESS_KEY_ID

    def operation_problems(self, request: Request) -> list[str]:
        raise NotImplementedError


def content_problems(content, where: str) -> list[str]:
    if not isinstance(content, list) or not content:
        return [f"{where} must be a non-empty list of content blocks"]
    problems = []
    for block in content:
        if not isinstance(block, dict) or len(block) != 1:
            problems.append(f"{where}: a content block is a union: exactly one member")
        elif "text" in block and (not isinstance(block["text"], str) or not block["text"]):
            problems.append(f"{where}: text must be a non-empty string")
    return problems


class BedrockServer(AwsServer):
    """Bedrock Runtime's Converse: POST /model/{modelId}/converse."""

    service = "bedrock"
    ERROR_TYPES = {
        400: "ValidationException",
        403: "AccessDeniedException",
        404: "ResourceNotFoundException",
        408: "ModelTimeoutException",
        424: "ModelErrorException",
        429: "ThrottlingException",
        500: "InternalServerException",
        503: "ServiceUnavailableException",
    }
    INFERENCE_FIELDS = {"maxTokens", "temperature", "topP", "stopSequences"}

    def __init__(self, secret: str, session_token: str = "") -> None:
        super().__init__(secret, session_token)
        self.models = {"anthropic.claude-test-v1:0"}

    def model_of(self, request: Request) -> str:
        import urllib.parse

        path = request.raw_path.split("?", 1)[0]
        return urllib.parse.unquote(path.removeprefix("/model/").removesuffix("/converse"))

    def operation_problems(self, request: Request) -> list[str]:
        path = request.raw_path.split("?", 1)[0]
        if request.method != "POST" or not re.fullmatch(r"/model/[^/]+/converse", path):
            return ["no such endpoint"]
        if request.headers.get("content-type") != "application/json":
            return ["Content-Type must be application/json"]
        body = request.body
        problems = self.body_problems(body, body_members("bedrock-runtime", "Converse"))
        if not isinstance(body, dict):
            return problems
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return [*problems, "messages must be a non-empty list"]
        for message in messages:
            if message.get("role") not in ("user", "assistant"):
                problems.append("a message's role must be user or assistant")
            problems += content_problems(message.get("content"), "messages[].content")
        inference = body.get("inferenceConfig", {})
        problems += [
            f"inferenceConfig: {p}" for p in self.unknown_fields(inference, self.INFERENCE_FIELDS)
        ]
        if "maxTokens" in inference and (
            type(inference["maxTokens"]) is not int or inference["maxTokens"] < 1
        ):
            problems.append("inferenceConfig.maxTokens must be a positive integer")
        tools = body.get("toolConfig")
        if tools is not None:
            problems += self.tool_problems(tools)
        return problems

    @staticmethod
    def tool_problems(config) -> list[str]:
        problems = []
        names = set()
        for tool in config.get("tools") or [None]:
            spec = tool.get("toolSpec") if isinstance(tool, dict) else None
            schema = ((spec or {}).get("inputSchema") or {}).get("json")
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                problems.append("a tool needs a toolSpec with a name")
            elif not isinstance(schema, dict) or schema.get("type") != "object":
                problems.append("a toolSpec's inputSchema.json must be an object schema")
            else:
                names.add(spec["name"])
        choice = config.get("toolChoice")
        if choice is not None and (len(choice) != 1 or not set(choice) <= {"auto", "any", "tool"}):
            problems.append("toolChoice is a union of auto, any and tool")
        elif choice and "tool" in choice and choice["tool"].get("name") not in names:
            problems.append("toolChoice names no tool of the request")
        return problems

    def route(self, request: Request, step) -> tuple[int, object, dict]:
        if self.model_of(request) not in self.models:
            return self.typed(
                400, "ValidationException", "The provided model identifier is invalid."
            )
        body = request.body
        prompt = self.prompt_of(body)
        reason = step[1] if isinstance(step, tuple) and step[0] == "stop" else None
        text = step[2] if reason and len(step) > 2 else None
        text = step if isinstance(step, str) else text
        text = self.responder(prompt) if text is None else text
        limit = body.get("inferenceConfig", {}).get("maxTokens")
        choice = (body.get("toolConfig") or {}).get("toolChoice") or {}
        if reason in ("guardrail_intervened", "content_filtered"):
            content = [{"text": "Sorry, the model cannot answer this question."}]
        elif "tool" in choice and reason is None:
            import json

            try:
                tool_input = json.loads(text)
            except ValueError:
                tool_input = {}
            tool_use = {
                "toolUseId": "tooluse_01",
                "name": choice["tool"]["name"],
                "input": tool_input,
            }
            content = [{"toolUse": tool_use}]
            reason = "tool_use"
        else:
            if isinstance(limit, int) and words(text) > limit:
                text, reason = " ".join(text.split()[:limit]), "max_tokens"
            content = [{"text": text}]
        usage = {"inputTokens": words(prompt), "outputTokens": words(text)}
        answer = {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": reason or "end_turn",
            "usage": {**usage, "totalTokens": sum(usage.values())},
            "metrics": {"latencyMs": 12},
        }
        return 200, answer, {}

    @staticmethod
    def prompt_of(body: dict) -> str:
        return " ".join(block.get("text", "") for block in body["messages"][-1]["content"])

    def prompts(self) -> list[str]:
        return [self.prompt_of(r.body) for r in self.requests if r.path.endswith("/converse")]


class AmazonQServer(AwsServer):
    """Amazon Q Business: ChatSync (POST /applications/{id}/conversations?sync) and
    GetApplication (GET /applications/{id})."""

    service = "qbusiness"
    APPLICATION = "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111"
    ERROR_TYPES = {
        400: "ValidationException",
        403: "AccessDeniedException",
        404: "ResourceNotFoundException",
        409: "ConflictException",
        424: "ExternalResourceException",
        429: "ThrottlingException",
        500: "InternalServerException",
    }

    def __init__(self, secret: str, session_token: str = "") -> None:
        super().__init__(secret, session_token)
        self.applications = {self.APPLICATION: "HR answers"}

    def operation_problems(self, request: Request) -> list[str]:
        path, _, query = request.raw_path.partition("?")
        if request.method == "GET" and re.fullmatch(r"/applications/[^/]+", path):
            return []
        if request.method != "POST" or not re.fullmatch(r"/applications/[^/]+/conversations", path):
            return ["no such endpoint"]
        if "sync" not in query.split("&"):
            return ["ChatSync is POST …/conversations?sync"]
        body = request.body
        problems = self.body_problems(body, body_members("qbusiness", "ChatSync"))
        if isinstance(body, dict) and body.get("chatMode") not in (
            None,
            "RETRIEVAL_MODE",
            "CREATOR_MODE",
            "PLUGIN_MODE",
        ):
            problems.append("chatMode must be RETRIEVAL_MODE, CREATOR_MODE or PLUGIN_MODE")
        if isinstance(body, dict) and not isinstance(body.get("userMessage"), str):
            problems.append("userMessage is expected")
        return problems

    def route(self, request: Request, step) -> tuple[int, object, dict]:
        application = request.path.split("/")[2]
        if application not in self.applications:
            return self.typed(
                404, "ResourceNotFoundException", f"Application {application} not found"
            )
        if request.method == "GET":
            about = {
                "applicationId": application,
                "displayName": self.applications[application],
                "status": "ACTIVE",
                "identityType": "AWS_IAM_IDP_OIDC",
            }
            return 200, about, {}
        text = step if isinstance(step, str) else self.responder(request.body["userMessage"])
        answer = {
            "conversationId": "conv-1",
            "systemMessage": text,
            "systemMessageId": "msg-2",
            "userMessageId": "msg-1",
            "sourceAttributions": [],
            "failedAttachments": [],
        }
        return 200, answer, {}

    def prompts(self) -> list[str]:
        return [r.body["userMessage"] for r in self.requests if r.method == "POST"]


@pytest.fixture
def bedrock_server():
    from tests.conftest import CANARY_SECRET
    from tests.fixtures_http import serve

    yield from serve(BedrockServer(CANARY_SECRET))


@pytest.fixture
def amazon_q_server():
    from tests.conftest import CANARY_SECRET
    from tests.fixtures_http import serve

    yield from serve(AmazonQServer(CANARY_SECRET))


@pytest.fixture
def aws_credential(db):
    """A credential of kind AWS access key whose secret access key is the canary."""
    from connectors.models import Credential
    from tests.conftest import CANARY_SECRET

    credential = Credential(name="aws-key", kind=Credential.Kind.AWS_ACCESS_KEY)
    credential.set_value(f"{ACCESS_KEY_ID}:{CANARY_SECRET}")
    credential.save()
    return credential
