"""AI provider kinds. Adding one is adding a module and a line here."""

from connectors.registry import Registry

PROVIDERS = Registry(
    "provider",
    {
        "openai": (
            "connectors.providers.openai.OpenAIProvider",
            "OpenAI-compatible (OpenAI, Azure OpenAI, Ollama, vLLM, llama.cpp)",
        ),
        "demo": ("connectors.providers.demo.DemoProvider", "Demo (no AI is called)"),
    },
    default="openai",
)
