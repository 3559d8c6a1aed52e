"""Validation of what callers send, and the job representation they read back."""

from django.urls import reverse
from rest_framework import serializers

from connectors.models import Job


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


class JobRefSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = ["id", "status", "url"]

    def get_url(self, job: Job) -> str:
        return reverse("api:job-detail", kwargs={"job_id": job.id})


class JobSerializer(serializers.ModelSerializer):
    connector = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    error = serializers.SerializerMethodField()
    timings = serializers.SerializerMethodField()
    tokens = serializers.SerializerMethodField()

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
            "created_at",
            "started_at",
            "finished_at",
            "next_attempt_at",
        ]

    def get_error(self, job: Job) -> dict | None:
        if not job.error_code:
            return None
        return {"code": job.error_code, "message": job.error_message}

    def get_timings(self, job: Job) -> dict:
        return {"queue_wait_ms": job.queue_wait_ms, "ai_ms": job.ai_ms, "write_ms": job.write_ms}

    def get_tokens(self, job: Job) -> dict:
        return {"input": job.tokens_in, "output": job.tokens_out}
