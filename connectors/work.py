"""The values that travel between intake, the pipeline, the sinks and the job lifecycle.

Plain frozen dataclasses: a step takes some and returns one; nothing is mutated in place.
"""

from dataclasses import dataclass, field
from typing import Any

from connectors.errors import PipelineError


@dataclass(frozen=True)
class Submission:
    """A record as a source hands it over, with what makes it unique and where to answer."""

    record: Any
    idempotency_key: str = ""
    source_reference: str = ""
    source_metadata: dict = field(default_factory=dict)
    source_file_id: int | None = None
    fingerprint: str = ""  # set by callers whose key may be reused for another record by mistake


@dataclass(frozen=True)
class WorkItem:
    """A claimed job as the pipeline needs it (the token map decrypted)."""

    job_id: str
    attempt: int
    source_reference: str
    prompt: str
    tokens: dict[str, str]
    previous_result: dict | None  # the AI already answered on an earlier attempt
    source_metadata: dict = field(default_factory=dict)
    is_last_attempt: bool = False
    record: dict = field(default_factory=dict)  # the mapped, redacted input (review conditions)


@dataclass(frozen=True)
class Answer:
    """The exchange with the AI: what it said (after at most one repair) and what it cost.
    `error` is set when no valid answer came; the rest is kept all the same (tokens were spent)."""

    text: str = ""
    provider: str = ""  # the name of the provider that answered (the primary or a fallback)
    model: str = ""
    output: Any = None  # parsed and validated
    repair_prompt: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_cached: int = 0  # the part of tokens_in read from a prompt cache (priced apart)
    stop_reason: str = ""  # the provider's, for the last completion
    ms: int | None = None
    error: PipelineError | None = None


@dataclass(frozen=True)
class Delivery:
    """One job's result on its way to the legacy system."""

    job_id: str
    connector: str
    source_reference: str
    result: dict
    attempt: int
    source_metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class WriteOutcome:
    """What a sink reports after writing."""

    target: str
    status: str
    detail: str = ""


@dataclass(frozen=True)
class WriteBack:
    """The exchange with the sink: its outcome or its error, and how long it took."""

    written: WriteOutcome | None = None
    error: PipelineError | None = None
    ms: int | None = None


@dataclass(frozen=True)
class Outcome:
    """What one attempt of one job came to; recorded by lifecycle.finish_many."""

    job_id: str
    item: WorkItem | None = None
    answer: Answer | None = None
    result: dict | None = None  # mapped, before token restore (what the job row keeps)
    token_report: dict = field(default_factory=dict)
    answer_pii: dict = field(default_factory=dict)  # types and counts the output guard found
    delivery: Delivery | None = None
    write_back: WriteBack | None = None
    error: PipelineError | None = None
    traceback: str = ""
    held: str = ""  # the review rule that holds the answer: nothing is written back yet

    @property
    def is_ready_to_write(self) -> bool:
        return self.error is None and not self.held
