"""The source interface: where records come from. A source never imports the job layer: the
caller hands it `submit`, which turns Submissions into committed jobs."""

from collections.abc import Callable


class Source:
    kind = ""
    is_polled = False  # the scheduler calls poll() every poll interval
    is_consumer = False  # a long-running consume() loop (message queues)
    credential_fields: tuple[str, ...] = ()

    def __init__(self, connector, config: dict, secrets: dict[str, str]) -> None:
        self.connector = connector
        self.config = config
        self._secrets = secrets

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        """Return the normalised config; raise ValueError saying what is wrong."""
        return config

    def poll(self, submit: Callable) -> int:
        """Submit what is waiting; return how many records were submitted."""
        return 0

    def test_connection(self) -> str:
        return "Nothing to test for this source."


def check_keys(config: dict, required: set[str], optional: set[str]) -> None:
    unknown = set(config) - required - optional
    if unknown:
        known = ", ".join(sorted(required | optional))
        raise ValueError(f"unknown keys {', '.join(sorted(unknown))}; known: {known}")
    missing = [key for key in sorted(required) if not config.get(key)]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
