"""The source interface: where records come from. A source never imports the job layer: the
caller hands it `submit`, which turns Submissions into committed jobs."""

from collections.abc import Callable
from typing import ClassVar

from connectors.plugins import Plugin


class Source(Plugin):
    is_polled: ClassVar[bool] = False  # the scheduler calls poll() every poll interval
    is_consumer: ClassVar[bool] = False  # a long-running consume() loop (message queues)
    # True when saving the connector runs check_on_save against the real system.
    is_checked_on_save: ClassVar[bool] = False

    def __init__(self, connector, config: dict, secrets: dict[str, str]) -> None:
        self.connector = connector
        self.config = config
        self._secrets = secrets

    def poll(self, submit: Callable) -> int:
        """Submit what is waiting; return how many records were submitted."""
        return 0

    def check_on_save(self) -> None:
        """Refuse a config the real system contradicts (a missing table); raise ValueError."""

    def test_connection(self) -> str:
        return "Nothing to test for this source."

    @classmethod
    def intake_requests_per_minute(cls, config: dict) -> int | None:
        """The connector's own intake limit for the HTTP API, if this kind has one."""
        return None

    @classmethod
    def intake_body_settings(cls, config: dict) -> dict:
        """How the HTTP API reads a body for this kind (connectors.api.body_formats.BodyFormat's
        fields); a kind not fed through the API takes JSON only."""
        return {"accepts": ["json"]}

    @classmethod
    def watched_folder(cls, config: dict) -> str | None:
        """A folder whose new files should trigger a poll at once (file-system events)."""
        return None
