"""The domain: credentials, providers, connectors and their rules, API keys, jobs, audit events."""

import secrets
import uuid
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from connectors import crypto, mapping

# Kinds come from the registries, imported late: the plugins sit above the models.


def _providers():
    from connectors.providers import PROVIDERS

    return PROVIDERS


def _sources():
    from connectors.sources import SOURCES

    return SOURCES


def _sinks():
    from connectors.sinks import SINKS

    return SINKS


def _provider_kinds():
    return _providers().choices()


def _source_kinds():
    return _sources().choices()


def _sink_kinds():
    return _sinks().choices()


def _default_provider_kind():
    return _providers().default


def _default_source_kind():
    return _sources().default


def _default_sink_kind():
    return _sinks().default


class Credential(models.Model):
    """A secret, encrypted at rest; decrypted only in the worker at the moment of use."""

    class Kind(models.TextChoices):
        API_KEY = "api_key", "API key"
        BEARER = "bearer", "Bearer token"
        BASIC = "basic", "Basic auth (user:password)"
        OAUTH2 = "oauth2", "OAuth2 client credentials"
        HMAC = "hmac_secret", "HMAC signing secret"
        DATABASE = "database_url", "Database URL / password"
        AWS_ACCESS_KEY = "aws_access_key", "AWS access key (id:secret[:session token])"
        SERVICE_ACCOUNT = "service_account", "Google service account key (JSON)"

    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.API_KEY)
    encrypted_value = models.TextField(editable=False)
    fingerprint = models.CharField(max_length=8, editable=False, help_text="Last four characters.")
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def set_value(self, value: str) -> None:
        if self.encrypted_value:
            self.rotated_at = timezone.now()
        self.encrypted_value = crypto.encrypt(value)
        self.fingerprint = "…" + value[-4:] if len(value) >= 8 else "…"

    def reveal(self) -> str:
        """Decrypt; call only where the secret is used, never to display it."""
        return crypto.decrypt(self.encrypted_value)

    def mark_used(self) -> None:
        Credential.objects.filter(pk=self.pk).update(last_used_at=timezone.now())


class Provider(models.Model):
    """An AI endpoint."""

    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=30, choices=_provider_kinds, default=_default_provider_kind)
    base_url = models.URLField(blank=True, help_text="e.g. https://api.openai.com/v1")
    model = models.CharField(max_length=200, blank=True)
    credential = models.ForeignKey(
        Credential, null=True, blank=True, on_delete=models.PROTECT, related_name="providers"
    )
    timeout_seconds = models.FloatField(
        default=60.0, validators=[MinValueValidator(1), MaxValueValidator(600)]
    )
    max_concurrency = models.PositiveIntegerField(
        default=4, validators=[MinValueValidator(1), MaxValueValidator(256)]
    )
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="The provider's tokens-per-minute limit, shared by every worker: a call "
        "counts its worst case (prompt and max_tokens) and waits for the next minute when it "
        "does not fit.",
    )
    parameters = models.JSONField(default=dict, blank=True, help_text="Default request parameters.")
    settings = models.JSONField(
        default=dict,
        blank=True,
        help_text="The kind's own settings (max_tokens, api_version, structured_output, …); "
        "empty: each one's default.",
    )
    # Prices per million tokens, as vendors publish them; cached input is what a prompt-cache
    # hit costs (empty: the input price).
    price_per_1m_input = models.DecimalField(max_digits=12, decimal_places=4, default=Decimal(0))
    price_per_1m_output = models.DecimalField(max_digits=12, decimal_places=4, default=Decimal(0))
    price_per_1m_cached_input = models.DecimalField(
        max_digits=12, decimal_places=4, null=True, blank=True
    )
    currency = models.CharField(max_length=3, default="USD", help_text="ISO 4217, e.g. USD, EUR.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        providers = _providers()
        calls_ai = self.kind not in providers or providers.get(self.kind).calls_ai
        return f"{self.name} ({self.kind}, {self.model if calls_ai else 'no AI is called'})"

    def cost(self, tokens_in: int, tokens_out: int, tokens_cached: int = 0) -> Decimal:
        """What the tokens cost; `tokens_cached` is the part of tokens_in read from a cache."""
        cached = min(tokens_cached, tokens_in)
        cached_price = self.price_per_1m_cached_input
        cached_price = self.price_per_1m_input if cached_price is None else cached_price
        total = (
            self.price_per_1m_input * (tokens_in - cached)
            + cached_price * cached
            + self.price_per_1m_output * tokens_out
        )
        return (total / Decimal(1_000_000)).quantize(Decimal("0.000001"))


def validate_record_path(value: str) -> None:
    try:
        mapping.parse_path(value)
    except ValueError as error:
        raise ValidationError(str(error)) from error


class Connector(models.Model):
    """One legacy-to-AI path: source, mapping, redaction, prompt, provider, output, sink."""

    class OutputFormat(models.TextChoices):
        TEXT = "text", "Text"
        JSON = "json", "JSON (validated against a JSON Schema)"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    is_enabled = models.BooleanField("enabled", default=True)
    source_kind = models.CharField(
        max_length=30, choices=_source_kinds, default=_default_source_kind
    )
    source_config = models.JSONField(default=dict, blank=True)
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="connectors")
    fallback_providers = models.JSONField(
        default=list,
        blank=True,
        help_text="Providers to try in this order when the provider's error is retryable (down, "
        '429, 5xx, timeout), as names (["backup"]); never on a permanent error.',
    )
    prompt_template = models.TextField(help_text="Django template syntax over the mapped fields.")
    output_format = models.CharField(
        max_length=10, choices=OutputFormat.choices, default=OutputFormat.TEXT
    )
    output_schema = models.JSONField(null=True, blank=True)

    class AnswerPII(models.TextChoices):
        REDACT = "redact", "Redact it in the answer before the write-back"
        FAIL = "fail", "Fail the job (pii_in_answer) for a person to look at"

    answer_pii = models.CharField(
        "PII in the answer",
        max_length=10,
        choices=AnswerPII.choices,
        default=AnswerPII.REDACT,
        help_text="What to do with PII the AI wrote that was not in the prompt it was sent "
        "(an invented SSN, a card number, an e-mail address), found by this connector's "
        "detectors.",
    )
    sink_kind = models.CharField(max_length=30, choices=_sink_kinds, default=_default_sink_kind)
    sink_config = models.JSONField(default=dict, blank=True)
    max_attempts = models.PositiveIntegerField(
        default=5, validators=[MinValueValidator(1), MaxValueValidator(50)]
    )
    batch_size = models.PositiveIntegerField(
        default=100,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="Records per worker job; AI calls run concurrently inside it, up to the "
        "provider's concurrency. Keep it at least 8 times that concurrency (see README, Speed).",
    )
    poll_interval_seconds = models.PositiveIntegerField(default=60)
    source_reference_field = models.CharField(
        "source reference field",
        max_length=200,
        blank=True,
        validators=[validate_record_path],
        help_text="A path in each record (claim.id, id, lines[0].number) whose value becomes the "
        "job's source reference, searchable in the job list; redacted like the input. Empty, or "
        "absent from a record: the source's own (webhook id, file name and row, table and key).",
    )
    retention_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Blank payloads of jobs older than this; empty keeps them."
    )
    phone_regions = models.JSONField(
        default=list,
        blank=True,
        help_text="Regions whose phone numbers the phone detector expects, as ISO codes "
        '(["DE", "FR"]); empty: REDACTION_PHONE_REGIONS.',
    )
    id_countries = models.JSONField(
        default=list,
        blank=True,
        help_text="Countries whose national IDs the national_id detector looks for (US, GB, DE, "
        "FR, ES, IT, NL); empty: REDACTION_ID_COUNTRIES.",
    )

    class ReviewPolicy(models.TextChoices):
        NEVER = "never", "Never: write every valid answer back"
        ALWAYS = "always", "Always: a person approves every answer"
        CONDITION = "condition", "When the condition holds"

    class DeadlineAction(models.TextChoices):
        ALERT = "alert", "Keep waiting and alert"
        REJECT = "reject", "Reject"
        APPROVE = "approve", "Approve as it is"

    review_policy = models.CharField(
        max_length=10, choices=ReviewPolicy.choices, default=ReviewPolicy.NEVER
    )
    review_condition = models.TextField(
        blank=True,
        help_text='Holds the answer for review when true, e.g. decision == "reject" or '
        'record["amount"] > 10000 or confidence < 0.8 or reason == null (see README, Reviews).',
    )
    review_four_eyes = models.BooleanField(
        "four eyes",
        default=False,
        help_text="Two different people must approve before the answer is written back.",
    )
    review_deadline_hours = models.PositiveIntegerField(
        "review deadline (hours)",
        default=72,
        validators=[MinValueValidator(1), MaxValueValidator(24 * 365)],
        help_text="How long a held answer may wait for a decision.",
    )
    review_deadline_action = models.CharField(
        "after the deadline",
        max_length=10,
        choices=DeadlineAction.choices,
        default=DeadlineAction.ALERT,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from connectors import validation

        self.fallback_providers = self.fallback_providers or []
        primary = self.provider.name if self.provider_id else ""
        known = set(Provider.objects.values_list("name", flat=True))
        validation.check_fallback_providers(self.fallback_providers, primary, known)
        if self.provider_id:
            kinds = [
                self.provider.kind,
                *Provider.objects.filter(name__in=self.fallback_providers).values_list(
                    "kind", flat=True
                ),
            ]
            validation.check_output_support(self.output_format, self.output_schema, kinds)


class FieldMapping(models.Model):
    class Direction(models.TextChoices):
        INPUT = "input", "Input (legacy record → prompt fields)"
        OUTPUT = "output", "Output (AI answer → legacy fields)"

    connector = models.ForeignKey(Connector, on_delete=models.CASCADE, related_name="mappings")
    direction = models.CharField(max_length=10, choices=Direction.choices)
    source_path = models.CharField("from", max_length=300, help_text="e.g. customer.address.zip")
    target_name = models.CharField("to", max_length=100)
    transform = models.CharField(
        max_length=200, blank=True, help_text="e.g. strip|lower|truncate:200|default:n/a"
    )
    is_required = models.BooleanField("required", default=False)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["connector", "direction", "position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["connector", "direction", "target_name"], name="unique_mapping_target"
            )
        ]

    def __str__(self) -> str:
        return f"{self.source_path} → {self.target_name}"


class RedactionRule(models.Model):
    """Applied in order to the mapped input fields before anything is stored or sent."""

    class Action(models.TextChoices):
        MASK = "mask", "Mask"
        HASH = "hash", "Keyed hash (HMAC)"
        DROP = "drop", "Drop"
        TOKENIZE = "tokenize", "Tokenize and restore in the answer"

    connector = models.ForeignKey(
        Connector,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="redaction_rules",
        help_text="Empty: applies to every connector.",
    )
    name = models.CharField(max_length=100, blank=True)
    detector = models.CharField(
        max_length=30,
        help_text="ssn, national_id, credit_card, email, phone, iban, ipv4, ipv6, date_of_birth, "
        "person, address; regex, field",
    )
    pattern = models.CharField(max_length=500, blank=True, help_text="For the regex detector.")
    field_name = models.CharField(max_length=100, blank=True, help_text="For the field detector.")
    action = models.CharField(max_length=10, choices=Action.choices, default=Action.MASK)
    position = models.PositiveIntegerField(default=0)
    is_enabled = models.BooleanField("enabled", default=True)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.name or f"{self.detector} → {self.action}"


class ApiKey(models.Model):
    """A key a legacy system uses to call a connector's webhook; only its hash is stored."""

    PREFIX = "ilk_"

    connector = models.ForeignKey(Connector, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, editable=False, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    encrypted_signing_secret = models.TextField(blank=True, editable=False)
    allowed_networks = models.JSONField(
        default=list, blank=True, help_text="CIDRs allowed to use this key; empty allows any."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.connector.slug})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def has_signing_secret(self) -> bool:
        return bool(self.encrypted_signing_secret)

    @classmethod
    def issue(
        cls, connector: Connector, *, name: str = "", with_signing_secret: bool = False
    ) -> tuple["ApiKey", str, str | None]:
        """Create a key; the plain key (and signing secret) are returned once and never stored."""
        plain = cls.PREFIX + secrets.token_urlsafe(32)
        signing_secret = None
        key = cls(
            connector=connector, name=name, prefix=plain[:12], key_hash=crypto.sha256_hex(plain)
        )
        if with_signing_secret:
            import base64

            signing_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
            key.encrypted_signing_secret = crypto.encrypt(signing_secret)
        key.save()
        return key, plain, signing_secret

    def signing_secret(self) -> str | None:
        if not self.encrypted_signing_secret:
            return None
        return crypto.decrypt(self.encrypted_signing_secret)


class WebhookReceipt(models.Model):
    """A (key, webhook-id) seen once: the unique constraint is the replay guard."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="receipts")
    webhook_id = models.CharField(max_length=255)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_key", "webhook_id"], name="unique_webhook_id")
        ]

    def __str__(self) -> str:
        return self.webhook_id


class SourceFile(models.Model):
    """A dropped file: claimed into processing/, read as rows, written to outbox/ when all end."""

    class Status(models.TextChoices):
        READING = "reading", "Reading rows"
        RUNNING = "running", "Rows submitted, jobs running"
        DONE = "done", "Output written"
        FAILED = "failed", "Could not be read"
        DUPLICATE = "duplicate", "Duplicate of an earlier file"

    connector = models.ForeignKey(Connector, on_delete=models.PROTECT, related_name="files")
    name = models.CharField(max_length=255)
    sha256 = models.CharField("SHA-256", max_length=64)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.READING)
    size_bytes = models.BigIntegerField(default=0, help_text="Size when claimed; read up to it.")
    rows_total = models.PositiveIntegerField(default=0)
    rows_rejected = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text="The first 100 row errors.")
    output_name = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["connector", "sha256"], name="unique_source_file")
        ]

    def __str__(self) -> str:
        return f"{self.connector.slug}/{self.name}"


class JobQuerySet(models.QuerySet):
    """The questions the worker and the reconciler ask of the job table."""

    def claimable(self, now):
        """Jobs a worker may start now."""
        return self.filter(
            Q(status__in=[Job.Status.PENDING, Job.Status.QUEUED])
            | Q(status=Job.Status.FAILED, next_attempt_at__lte=now)
            | Q(status=Job.Status.FAILED, next_attempt_at__isnull=True)
        )

    def due(self, now):
        """Jobs to put on the queue: pending past the grace on-commit enqueue needs, or failed
        and due for their retry."""
        grace = now - timedelta(seconds=settings.JOB_PENDING_GRACE_SECONDS)
        return self.filter(
            Q(status=Job.Status.PENDING, created_at__lt=grace)
            | Q(status=Job.Status.FAILED, next_attempt_at__lte=now)
            | Q(status=Job.Status.FAILED, next_attempt_at__isnull=True)
        )

    def queued_before(self, now):
        """Queued long enough that their RQ job should have started (else it may be lost)."""
        cutoff = now - timedelta(seconds=settings.JOB_STALE_QUEUED_SECONDS)
        return self.filter(status=Job.Status.QUEUED, enqueued_at__lt=cutoff)

    def lease_expired(self, now):
        """Running jobs whose worker stopped renewing the lease: it died."""
        return self.filter(status=Job.Status.RUNNING, lease_expires_at__lt=now)


class Job(models.Model):
    """One record's journey. Stores only redacted data; the token map is encrypted."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed (will retry)"
        DEAD = "dead", "Dead (retries exhausted)"
        CANCELLED = "cancelled", "Cancelled"
        AWAITING_REVIEW = "awaiting_review", "Awaiting review"
        REJECTED = "rejected", "Rejected (by a reviewer)"

    FINISHED = (Status.SUCCEEDED, Status.DEAD, Status.CANCELLED, Status.REJECTED)
    # Ended with nothing written back: the legacy side got (or gets) a failure report.
    ENDED_WITHOUT_RESULT = (Status.DEAD, Status.CANCELLED, Status.REJECTED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    connector = models.ForeignKey(Connector, on_delete=models.PROTECT, related_name="jobs")
    idempotency_key = models.CharField(max_length=255, db_index=True)  # searched across connectors
    record_fingerprint = models.CharField(
        max_length=64,
        blank=True,
        editable=False,
        help_text="Keyed hash of the record sent with an Idempotency-Key: a replay with the "
        "same key but another record is refused, not answered with this job.",
    )
    source_reference = models.CharField(max_length=500, blank=True, db_index=True)
    source_metadata = models.JSONField(
        default=dict, blank=True, help_text="Where to answer: row key, reply-to queue, …"
    )
    source_file = models.ForeignKey(
        SourceFile, null=True, blank=True, on_delete=models.PROTECT, related_name="jobs"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    attempts_before_retry = models.PositiveIntegerField(
        default=0,
        help_text="Attempts made before the last manual retry (each retry gets a full round).",
    )
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    rq_job_id = models.CharField("RQ job id", max_length=100, blank=True)

    input_data = models.JSONField(default=dict, blank=True, help_text="Mapped and redacted.")
    redaction_hits = models.JSONField(default=dict, blank=True)
    encrypted_tokens = models.TextField(blank=True)
    prompt = models.TextField(blank=True)
    repair_prompt = models.TextField(
        blank=True, help_text="Sent when the first answer was invalid."
    )
    provider_name = models.CharField(max_length=100, blank=True)
    model = models.CharField(max_length=200, blank=True)
    stop_reason = models.CharField(max_length=50, blank=True, help_text="The provider's own.")
    ai_output = models.TextField("AI output", blank=True)
    output = models.JSONField(null=True, blank=True, help_text="Parsed and validated.")
    result = models.JSONField(null=True, blank=True, help_text="Mapped, before token restore.")
    token_report = models.JSONField(default=dict, blank=True)
    # PII types the AI wrote that its prompt did not hold, with counts (never the values).
    answer_pii = models.JSONField(default=dict, blank=True)
    write_outcome = models.JSONField(default=dict, blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.TextField(blank=True)
    error_traceback = models.TextField(blank=True)

    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal(0))
    queue_wait_ms = models.PositiveIntegerField("queue wait (ms)", null=True, blank=True)
    ai_ms = models.PositiveIntegerField("AI call (ms)", null=True, blank=True)
    write_ms = models.PositiveIntegerField("write-back (ms)", null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True, db_index=True)  # dashboards
    payload_purged_at = models.DateTimeField(null=True, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["connector", "idempotency_key"], name="unique_job_idempotency_key"
            )
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="job_due_idx"),
            models.Index(fields=["status", "lease_expires_at"], name="job_lease_idx"),
            models.Index(fields=["connector", "status"], name="job_connector_status_idx"),
            # The job list's error code filter lists its choices from this index.
            models.Index(fields=["error_code"], name="job_error_code_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.connector.slug}/{self.id}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def is_last_attempt(self) -> bool:
        """The current attempt is the last of this round (a manual retry starts a new round)."""
        return self.attempts - self.attempts_before_retry >= self.connector.max_attempts


class JobAttempt(models.Model):
    """One try of a job, with its timing split and error: attempts are data."""

    class Outcome(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        LOST = "lost", "Lost (worker died)"
        HELD = "held", "Held for review"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="attempt_rows")
    number = models.PositiveIntegerField()
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.RUNNING)
    worker = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    queue_wait_ms = models.PositiveIntegerField("queue wait (ms)", null=True, blank=True)
    ai_ms = models.PositiveIntegerField("AI call (ms)", null=True, blank=True)
    write_ms = models.PositiveIntegerField("write-back (ms)", null=True, blank=True)
    provider_name = models.CharField(max_length=100, blank=True)
    model = models.CharField(max_length=200, blank=True)
    stop_reason = models.CharField(max_length=50, blank=True)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal(0))
    write_outcome = models.JSONField(default=dict, blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.TextField(blank=True)

    class Meta:
        ordering = ["job", "number"]
        constraints = [
            models.UniqueConstraint(fields=["job", "number"], name="unique_attempt_number")
        ]
        # The dashboard's cost table sums the attempts of its window.
        indexes = [models.Index(fields=["started_at"], name="attempt_started_idx")]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.job_id}"


class Review(models.Model):
    """A job held for a person's decision before its answer is written back; kept as evidence
    after the decision. Decisions are conditional updates (connectors.review)."""

    class Decision(models.TextChoices):
        WAITING = "", "Waiting"
        APPROVED = "approved", "Approved"
        EDITED = "edited", "Edited and approved"
        REJECTED = "rejected", "Rejected"

    job = models.OneToOneField(
        Job, on_delete=models.CASCADE, primary_key=True, related_name="review"
    )
    connector = models.ForeignKey(Connector, on_delete=models.PROTECT, related_name="reviews")
    rule = models.CharField(max_length=500, help_text="Why it was held: the policy that held it.")
    held_at = models.DateTimeField(default=timezone.now)
    deadline = models.DateTimeField()
    held_output = models.JSONField(null=True, blank=True, help_text="The answer as it was held.")
    first_approved_by = models.CharField(max_length=150, blank=True)
    first_approved_at = models.DateTimeField(null=True, blank=True)
    decision = models.CharField(
        max_length=10, choices=Decision.choices, default=Decision.WAITING, blank=True
    )
    decided_by = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)
    failure_reported_at = models.DateTimeField(null=True, blank=True)
    notified_at = models.DateTimeField(null=True, blank=True)
    alerted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["held_at"]
        default_permissions = ("view", "change")  # change = approve, edit and reject
        indexes = [
            models.Index(fields=["decision", "held_at"], name="review_queue_idx"),
            models.Index(fields=["decision", "deadline"], name="review_deadline_idx"),
        ]

    def __str__(self) -> str:
        return f"review of {self.job_id}"

    @property
    def is_waiting(self) -> bool:
        return self.decision == self.Decision.WAITING


class ReviewerToken(models.Model):
    """A reviewer's token for the review API (another tool's queue); only its hash is stored.
    Its power is its user's: what the user may no longer do, the token may not either."""

    PREFIX = "ilr_"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reviewer_tokens"
    )
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, editable=False)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @classmethod
    def issue(cls, user, *, name: str = "") -> tuple["ReviewerToken", str]:
        """Create a token; the plain token is returned once and never stored."""
        plain = cls.PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user, name=name, prefix=plain[:12], token_hash=crypto.sha256_hex(plain)
        )
        return token, plain


class Budget(models.Model):
    """A connector's token and money allowance per day or month (UTC), optionally for the calls
    to one provider. Calls reserve their worst case before they are sent (connectors.budgets)."""

    class Period(models.TextChoices):
        DAY = "day", "Day (UTC)"
        MONTH = "month", "Month (UTC)"

    class WhenExhausted(models.TextChoices):
        WAIT = "wait", "Wait: retry the job when the period rolls over"
        DEAD = "dead", "End the job dead"

    connector = models.ForeignKey(Connector, on_delete=models.CASCADE, related_name="budgets")
    provider = models.ForeignKey(
        Provider,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="budgets",
        help_text="Empty: every call of the connector counts; else only calls to this provider.",
    )
    period = models.CharField(max_length=10, choices=Period.choices, default=Period.DAY)
    max_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    max_cost = models.DecimalField(
        max_digits=14,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="In the provider's currency.",
    )
    when_exhausted = models.CharField(
        max_length=10, choices=WhenExhausted.choices, default=WhenExhausted.WAIT
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["connector", "period", "id"]

    def __str__(self) -> str:
        scope = f" on {self.provider.name}" if self.provider_id else ""
        return f"{self.connector.slug}{scope} per {self.period}"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        if self.max_tokens is None and self.max_cost is None:
            raise ValidationError({"max_tokens": "set max_tokens, max_cost or both"})


class AuditEvent(models.Model):
    """Append-only; each row's HMAC covers its content and the previous row's hash."""

    class ActorType(models.TextChoices):
        USER = "user", "User"
        API_KEY = "api_key", "API key"
        SYSTEM = "system", "System"

    sequence = models.BigIntegerField(unique=True)
    created_at = models.DateTimeField()
    actor_type = models.CharField(max_length=10, choices=ActorType.choices)
    actor = models.CharField(max_length=200)
    action = models.CharField(max_length=60, db_index=True)
    object_type = models.CharField(max_length=60, blank=True)
    object_id = models.CharField(max_length=100, blank=True, db_index=True)
    object_repr = models.CharField(max_length=300, blank=True)
    connector = models.CharField(max_length=100, blank=True, db_index=True)
    changes = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField("IP address", null=True, blank=True)
    previous_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    # A plain SHA-256 chain beside the keyed one, so anyone can recompute it (see audit.py).
    public_hash = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-sequence"]
        # The audit log's object type filter lists its choices from this index.
        indexes = [models.Index(fields=["object_type"], name="audit_object_type_idx")]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.action} {self.object_repr}"


class AuditChainHead(models.Model):
    """A single row locked while appending, so concurrent writers extend the chain in turn."""

    sequence = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)
    public_hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"audit head #{self.sequence}"


class AuditCheckpoint(models.Model):
    """The chain head signed with AUDIT_SIGNING_KEY; each names the previous one's digest."""

    sequence = models.BigIntegerField(db_index=True)
    statement = models.TextField(help_text="The signed JSON, byte for byte.")
    signature = models.CharField(max_length=100)
    digest = models.CharField(max_length=64, unique=True)
    # Unique: two schedulers signing at once cannot fork the checkpoint chain.
    previous_digest = models.CharField(max_length=64, unique=True)
    key_id = models.CharField(max_length=16)
    public_key = models.CharField(max_length=64)
    signed_at = models.DateTimeField()
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"checkpoint #{self.sequence} ({self.digest[:12]})"
