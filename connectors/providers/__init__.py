"""AI provider kinds. Adding one is adding a module and a line here."""

from connectors.registry import Registry

PROVIDERS = Registry(
    "provider",
    {
        "openai": (
            "connectors.providers.openai.OpenAIProvider",
            "OpenAI-compatible (OpenAI, vLLM, llama.cpp, Ollama's /v1)",
        ),
        "azure_openai": (
            "connectors.providers.azure_openai.AzureOpenAIProvider",
            "Azure OpenAI (a deployment)",
        ),
        "anthropic": ("connectors.providers.anthropic.AnthropicProvider", "Anthropic (Messages)"),
        "gemini": ("connectors.providers.gemini.GeminiProvider", "Google Gemini API"),
        "cohere": ("connectors.providers.cohere.CohereProvider", "Cohere (Chat v2)"),
        "ollama": ("connectors.providers.ollama.OllamaProvider", "Ollama (native /api/chat)"),
        "bedrock": ("connectors.providers.bedrock.BedrockProvider", "Amazon Bedrock (Converse)"),
        "amazon_q": (
            "connectors.providers.amazon_q.AmazonQProvider",
            "Amazon Q Business (ChatSync; text only)",
        ),
        "demo": ("connectors.providers.demo.DemoProvider", "Demo (no AI is called)"),
    },
    default="openai",
)
