"""The one error family of the pipeline.

Every step raises a PipelineError (or a subclass). `permanent` decides whether the job is retried:
network errors, timeouts, 429 and 5xx are transient; 4xx, bad data and schema violations are not.
"""


class PipelineError(Exception):
    """A step of the pipeline failed; `permanent` says whether retrying can help."""

    code = "pipeline_error"
    permanent = False
    counts_as_attempt = True  # False for a wait that is nobody's failure (a budget's period)

    def __init__(
        self,
        message: str,
        *,
        permanent: bool | None = None,
        retry_after: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if permanent is not None:
            self.permanent = permanent
        if code is not None:
            self.code = code
        self.retry_after = retry_after


class ConfigError(PipelineError):
    """The connector's configuration cannot work (an operator must fix it)."""

    code = "config_error"
    permanent = True


class MappingError(PipelineError):
    """A record lacks a required field or a path cannot be followed."""

    code = "mapping_error"
    permanent = True

    def __init__(self, message: str, *, field: str | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.field = field


class UnstorableValue(PipelineError):
    """A record holds a value no job row can hold (NUL, unpaired surrogate, non-finite number)."""

    code = "invalid_value"
    permanent = True


class RedactionError(PipelineError):
    """A detector failed: the record is refused rather than sent unredacted."""

    code = "redaction_failed"
    permanent = True


class ProviderError(PipelineError):
    """The AI provider could not answer."""

    code = "provider_error"


class OutputError(PipelineError):
    """The AI answer is not valid for the connector's output format or schema."""

    code = "invalid_output"
    permanent = True


class SinkError(PipelineError):
    """The write-back to the legacy system failed."""

    code = "sink_error"


class DecryptionError(PipelineError):
    """A stored secret cannot be decrypted with any key in FIELD_ENCRYPTION_KEYS; retrying
    cannot help until an operator puts the key back."""

    code = "decryption_failed"
    permanent = True
