from connectors.sinks.base import Sink
from connectors.work import Delivery, WriteOutcome


class NoSink(Sink):
    """Nothing is written back: the caller reads the result from the job API."""

    kind = "none"

    def write(self, delivery: Delivery) -> WriteOutcome:
        return WriteOutcome(target="job API", status="stored")
