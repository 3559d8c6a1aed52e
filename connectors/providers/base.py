"""The provider interface: one prompt in, one completion out; errors are ProviderErrors.

A provider kind's settings are the Provider row's `base_url`, `model` and `parameters`, declared
like any kind's (connectors.plugins) and validated as one config.
"""

from dataclasses import dataclass, field
from typing import ClassVar

import httpx

from connectors import http
from connectors.plugins import Plugin


@dataclass(frozen=True)
class ProviderConfig:
    kind: str
    base_url: str
    model: str
    timeout: float = 60.0
    parameters: dict = field(default_factory=dict)


@dataclass
class Completion:
    text: str
    tokens_in: int
    tokens_out: int
    model: str


class Provider(Plugin):
    calls_ai: ClassVar[bool] = True  # False for the demo provider, which answers by itself

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
