"""The sink interface: deliver one job's mapped result to the legacy system."""

from typing import ClassVar

import httpx

from connectors.errors import PipelineError
from connectors.plugins import Plugin
from connectors.work import Delivery, WriteOutcome


class Sink(Plugin):
    # True when results go to the legacy system inside our walls, so placeholders are restored.
    # False when the caller reads the job API: the stored, redacted result is what it gets.
    can_restore_tokens: ClassVar[bool] = False
    # True when write_many is cheaper than several writes (one transaction for a burst).
    writes_in_batches: ClassVar[bool] = False
    # True when a marked test result can be written without harm (the admin's test delivery).
    can_send_test_delivery: ClassVar[bool] = False

    def __init__(
        self, config: dict, secrets: dict[str, str], *, client: httpx.Client | None = None
    ) -> None:
        self.config = config
        self._secrets = secrets
        self._client = client

    def write(self, delivery: Delivery) -> WriteOutcome:
        raise NotImplementedError

    def write_many(self, deliveries: list[Delivery]) -> dict[str, WriteOutcome | PipelineError]:
        """Write several results; per job id, its outcome or its error."""
        written: dict = {}
        for delivery in deliveries:
            try:
                written[delivery.job_id] = self.write(delivery)
            except PipelineError as error:
                written[delivery.job_id] = error
        return written

    def report_failure(self, delivery: Delivery, error: str) -> None:
        """The job ends without a result: tell the legacy side (a status column, a reply…)."""

    @classmethod
    def effective_config(cls, sink_config: dict, source_config: dict) -> dict:
        """The config the sink runs with; a sink may inherit settings from its source."""
        return sink_config

    @classmethod
    def save_warnings(cls, config: dict) -> list[str]:
        """What will go wrong when jobs run, though the config is valid (shown on save)."""
        return []

    @classmethod
    def describe(cls, config: dict) -> str:
        """A short description of this sink as configured (the connector list shows it)."""
        return cls.kind

    @classmethod
    def check_outputs(cls, config: dict, outputs: set[str]) -> None:
        """Refuse output mappings this sink must not write (raise ValueError)."""

    def test_connection(self) -> str:
        return "Nothing to test for this sink."

    def close(self) -> None:
        """Release connections at the end of a batch."""
        if self._client is not None:
            self._client.close()
