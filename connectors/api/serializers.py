"""Validation of what callers send, and the job representation they read back."""

import uuid

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from connectors.models import Job, Provider


class IntakeQuerySerializer(serializers.Serializer):
    wait = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=30,
        default=0,
        help_text="Seconds to wait for the job to finish (at most 30).",
    )


class IdempotencyKeySerializer(serializers.Serializer):
    key = serializers.RegexField(
        r"\A[\x21-\x7e]{1,200}\Z", required=False, allow_blank=True, trim_whitespace=False
    )


URL_PLACEHOLDER = uuid.UUID(int=0)


class JobRefSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = ["id", "status", "url"]
        read_only_fields = fields  # a representation: every field is always there

    def to_representation(self, job: Job) -> dict:
        """What the fields give, built directly: a 1,000-record answer is 1,000 of these."""
        return {"id": str(job.id), "status": job.status, "url": self.get_url(job)}

    def get_url(self, job: Job) -> str:
        # Reversed once per answer (many=True shares this child), not for each of 1,000 jobs;
        # per answer, since the script prefix may differ between requests.
        if not hasattr(self, "url_pattern"):
            self.url_pattern = reverse("api:job-detail", kwargs={"job_id": URL_PLACEHOLDER})
        return self.url_pattern.replace(str(URL_PLACEHOLDER), str(job.id))


class JobSerializer(serializers.ModelSerializer):
    connector = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    error = serializers.SerializerMethodField()
    timings = serializers.SerializerMethodField()
    tokens = serializers.SerializerMethodField()
    cost = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "connector",
            "status",
            "attempts",
            "idempotency_key",
            "source_reference",
            "result",
            "write_outcome",
            "error",
            "timings",
            "tokens",
            "cost",
            "created_at",
            "started_at",
            "finished_at",
            "next_attempt_at",
        ]
        read_only_fields = fields  # a representation: every field is always there

    @extend_schema_field(
        {
            "type": "object",
            "nullable": True,
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            "required": ["code", "message"],
            "description": "Why the last attempt failed; null when it did not.",
        }
    )
    def get_error(self, job: Job) -> dict | None:
        if not job.error_code:
            return None
        return {"code": job.error_code, "message": job.error_message}

    @extend_schema_field(
        {
            "type": "object",
            "properties": {
                name: {"type": "integer", "nullable": True}
                for name in ("queue_wait_ms", "ai_ms", "write_ms")
            },
            "required": ["queue_wait_ms", "ai_ms", "write_ms"],
        }
    )
    def get_timings(self, job: Job) -> dict:
        return {"queue_wait_ms": job.queue_wait_ms, "ai_ms": job.ai_ms, "write_ms": job.write_ms}

    @extend_schema_field(
        {
            "type": "object",
            "properties": {"input": {"type": "integer"}, "output": {"type": "integer"}},
            "required": ["input", "output"],
        }
    )
    def get_tokens(self, job: Job) -> dict:
        return {"input": job.tokens_in, "output": job.tokens_out}

    @extend_schema_field(
        {
            "type": "object",
            "properties": {
                "amount": {"type": "string", "description": "A decimal, e.g. 0.001250"},
                "currency": {"type": "string", "description": "ISO 4217, e.g. USD"},
            },
            "required": ["amount", "currency"],
            "description": "What the job's AI calls cost, at the answering provider's prices.",
        }
    )
    def get_cost(self, job: Job) -> dict:
        provider = job.connector.provider
        if job.provider_name and job.provider_name != provider.name:
            provider = Provider.objects.filter(name=job.provider_name).first() or provider
        return {"amount": f"{job.cost:.6f}", "currency": provider.currency}
