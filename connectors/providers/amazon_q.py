"""Amazon Q Business `ChatSync`: POST /applications/{applicationId}/conversations?sync, signed
with SigV4 ("qbusiness").

The provider's `model` is the Q Business application's id. Q answers from the company's indexed
data (RETRIEVAL_MODE) or from its model's own knowledge (CREATOR_MODE); it has no structured
output and reports no token usage (it is billed per user subscription), so a connector whose
output is JSON with a schema is refused on save, and jobs record 0 tokens. Each call starts a
new conversation, which Q keeps in the application's history.
"""

import re

import httpx

from connectors.errors import ProviderError
from connectors.plugins import MAPPING, URL, Setting, SettingError
from connectors.providers.aws import AwsProvider, region_setting
from connectors.providers.base import (
    CONTEXT_TOO_LONG,
    MODEL_NOT_FOUND,
    OUTPUT_MODE_REFUSED,
    Completion,
    named_error,
)

CHAT_MODES = ("RETRIEVAL_MODE", "CREATOR_MODE")
APPLICATION_ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9-]{35}")  # ChatSync's own pattern


class AmazonQProvider(AwsProvider):
    kind = "amazon_q"
    signing_name = "qbusiness"
    service_label = "Amazon Q Business"
    has_json_schema_output = False
    reserved_parameters = frozenset({"userMessage", "chatMode", "conversationId"})
    settings = (
        Setting("base_url", URL, help="Empty: https://qbusiness.{region}.api.aws."),
        Setting("model", required=True, help="The Q Business application's id (a UUID)."),
        Setting(
            "parameters",
            MAPPING,
            help="ChatSync request fields, e.g. attributeFilter, chatModeConfiguration.",
        ),
        region_setting("The application's AWS region, e.g. us-east-1."),
        Setting(
            "chat_mode",
            choices=CHAT_MODES,
            default="RETRIEVAL_MODE",
            help="RETRIEVAL_MODE answers from the application's data sources; CREATOR_MODE "
            "from the model's own knowledge.",
        ),
        Setting(
            "user_id",
            help="Only for applications without identity-aware sessions (created before April "
            "2024): the user the chat is made as.",
        ),
    )

    @property
    def base_url(self) -> str:
        own = (self.config.base_url or "").rstrip("/")
        return own or f"https://qbusiness.{self.region}.api.aws"

    @property
    def application_url(self) -> str:
        return f"{self.base_url}/applications/{self.config.model}"

    def complete(self, prompt: str, *, json_schema: dict | None = None) -> Completion:
        if json_schema:  # refused on save; a connector changed since still must not pass
            raise named_error(
                OUTPUT_MODE_REFUSED,
                "Amazon Q Business has no structured output: use a text connector",
            )
        body = {
            "userMessage": prompt,
            "chatMode": self.setting("chat_mode"),
            **self.config.parameters,
        }
        user = self.setting("user_id")
        params = {"userId": user} if user else None
        answer = self.send(
            "POST", f"{self.application_url}/conversations?sync", body=body, params=params
        )
        text = answer.get("systemMessage")
        if not isinstance(text, str):
            raise ProviderError("provider sent an answer without a systemMessage")
        return Completion(text=text, tokens_in=0, tokens_out=0, model=self.config.model)

    def named_failure(self, response: httpx.Response, error: ProviderError) -> ProviderError:
        error = super().named_failure(response, error)
        if error.code == MODEL_NOT_FOUND:
            return named_error(
                MODEL_NOT_FOUND,
                f"no Q Business application {self.config.model!r} in {self.region}: "
                f"{error.message}",
            )
        if "LicenseNotFoundException" in error.message:
            return named_error(error.code, f"{error.message} (the user needs a Q subscription)")
        if "ValidationException" in error.message and "too long" in error.message.lower():
            return named_error(CONTEXT_TOO_LONG, error.message)
        return error

    @classmethod
    def check(cls, config: dict) -> None:
        super().check(config)
        if not APPLICATION_ID.fullmatch(config["model"]):
            raise SettingError(
                "model", "model must be the Q Business application's id (36 characters)"
            )

    def test_connection(self) -> str:
        """GetApplication checks the key, the region and the application id, and costs no chat."""
        application = self.send("GET", self.application_url)
        status = application.get("status") or "unknown"
        if status != "ACTIVE":
            raise named_error(
                MODEL_NOT_FOUND, f"Q Business application {self.config.model} is {status}"
            )
        name = application.get("displayName") or self.config.model
        return f"OK: the key was accepted and application {name} is ACTIVE in {self.region}"
