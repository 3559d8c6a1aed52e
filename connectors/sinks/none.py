from connectors.sinks.base import Delivery, Sink, WriteOutcome


class NoSink(Sink):
    """Nothing is written back: the caller reads the result from the job API."""

    kind = "none"

    def write(self, delivery: Delivery) -> WriteOutcome:
        return WriteOutcome(target="job API", status="stored")

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        if config:
            raise ValueError("the 'none' sink takes no configuration")
        return {}
