"""The provider interface: one prompt in, one completion out; errors are ProviderErrors."""

from dataclasses import dataclass, field

import httpx

from connectors import http


@dataclass(frozen=True)
class ProviderSettings:
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
    raw: dict | None = None


class Provider:
    kind = ""
    is_demo = False

    def __init__(
        self, settings: ProviderSettings, secret: str | None, *, client: httpx.Client | None = None
    ) -> None:
        self.settings = settings
        self._secret = secret
        self._client = client

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = http.build_client(timeout=self.settings.timeout)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def complete(self, prompt: str, *, json_schema: dict | None = None) -> Completion:
        raise NotImplementedError

    def test_connection(self) -> str:
        raise NotImplementedError

    @classmethod
    def validate_config(cls, base_url: str, model: str, parameters: dict) -> None:
        """Raise ValueError when the settings cannot work."""
