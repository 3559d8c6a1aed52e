"""The demo provider: calls no AI and answers deterministically (for `make run` and benchmarks)."""

import json
import time

from connectors.plugins import MAPPING, URL, Setting
from connectors.providers.base import Completion, Provider


def sample(schema: dict, prompt: str):
    """A value that satisfies simple JSON Schemas, derived from the prompt so it is stable."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: sample(sub, prompt) for name, sub in properties.items()}
    return {
        "string": f"demo answer: {prompt[:40]}",
        "integer": 0,
        "number": 0,
        "boolean": True,
        "array": [],
        "null": None,
    }.get(kind, "")


class DemoProvider(Provider):
    kind = "demo"
    calls_ai = False
    settings = (
        Setting("base_url", URL, help="Not used."),
        Setting("model", help="Not used."),
        Setting("parameters", MAPPING, help="latency_ms imitates a real AI's latency."),
    )

    def complete(self, prompt: str, *, json_schema: dict | None = None) -> Completion:
        # `latency_ms` in the provider's parameters imitates a real AI's latency (benchmarks).
        time.sleep(float(self.config.parameters.get("latency_ms", 0)) / 1000)
        if json_schema:
            text = json.dumps(sample({"type": "object", **json_schema}, prompt))
        else:
            text = "Demo answer (no AI was called): " + prompt[:80]
        return Completion(
            text=text,
            tokens_in=len(prompt.split()),
            tokens_out=len(text.split()),
            model="demo",
        )

    def test_connection(self) -> str:
        return "Demo provider: no AI is called."
