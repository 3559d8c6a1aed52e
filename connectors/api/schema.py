"""The OpenAPI description (drf-spectacular): authentication, what each endpoint answers, and
every error with its `code`. Legacy integrators generate clients from it, so it describes the
bodies the API really sends; tests/test_api_schema.py validates real answers against it."""

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_field
from rest_framework import serializers

from connectors.api.serializers import JobRefSerializer, JobSerializer

# Status -> code -> when it is answered. Every error body is an `Error`.
ERRORS: dict[int, dict[str, str]] = {
    400: {
        "empty_body": "the body is empty",
        "malformed_json": "the body is not JSON that a record can hold (syntax, NaN, 1e999)",
        "invalid_body": '"records" is not a non-empty list, the JSON nests deeper than '
        "`limit` levels, the XML is not well formed or has a DTD or entities, a SOAP body is "
        "not an envelope of SOAP 1.1 or 1.2 (a VersionMismatch fault), has an empty Body or a "
        "header block that must be understood (a MustUnderstand fault), the CSV or form "
        "cannot be read, its charset is not the connector's encoding, or a chunked body is not "
        "well formed",
        "invalid_record": "a record is not a JSON object, or a CSV row has the wrong number of "
        "fields or cannot be decoded (`index` names it)",
        "invalid_wait": "`wait` is not a whole number from 0 to 30",
        "invalid_idempotency_key": "Idempotency-Key is not 1 to 200 printable ASCII characters",
        "invalid_webhook_id": "webhook-id is longer than 255 characters or not printable",
    },
    401: {
        "not_authenticated": "no API key was sent",
        "invalid_api_key": "the API key is unknown or revoked",
        "signature_required": "the key has a signing secret and a write (or a read that sends "
        "some signature headers) lacks the Standard Webhooks headers",
        "invalid_signature": "no signature in webhook-signature matches the body",
        "timestamp_out_of_tolerance": "webhook-timestamp is more than 5 minutes off",
    },
    403: {
        "key_not_for_connector": "the key belongs to another connector",
        "network_not_allowed": "the key may not be used from this address",
    },
    404: {
        "connector_not_found": "no connector has this slug",
        "job_not_found": "no job with this id belongs to the key's connector",
        "not_found": "no such endpoint (a job id that is not a UUID, too)",
    },
    409: {
        "idempotency_key_reused": "the Idempotency-Key was used before for a different record",
        "webhook_replayed": "this webhook-id was already received with this key",
    },
    413: {
        "body_too_large": "the body is longer than `limit` bytes",
        "batch_too_large": "more than `limit` records in one request",
    },
    415: {
        "unsupported_media_type": "the connector does not accept the body's Content-Type, or "
        "SOAP (`accepted` lists the media types it does)",
    },
    422: {
        "missing_field": "a record lacks a required field, or a field cannot be converted "
        "(`field` and `index` name it)",
        "invalid_value": "a value no database can store (a NUL character, an unpaired surrogate)",
        "redaction_failed": "redaction could not make the record safe, so it was refused",
        "config_error": "the connector's prompt template does not compile",
    },
    429: {"rate_limited": "the connector's requests per minute are used up (see Retry-After)"},
    503: {
        "connector_disabled": "the connector is disabled (see Retry-After)",
        "database_unavailable": "the database is unreachable (see Retry-After)",
    },
}
# The review API's own refusals (connectors/api/reviews.py, connectors.review.REFUSALS).
REVIEW_ERRORS: dict[int, dict[str, str]] = {
    400: {
        "invalid_query": "`limit` is not a whole number from 1 to 500",
        "invalid_decision": "the body is not a decision (approve, edit or reject; `field`)",
        "reason_required": "a rejection has no reason",
        "invalid_answer": "the edited answer does not match the connector's schema or output "
        "mapping (`field` is answer)",
    },
    401: {
        "invalid_reviewer_token": "the reviewer token is unknown or revoked, or its user is "
        "inactive",
        "not_a_reviewer_token": "a connector's intake key was sent instead of a reviewer token",
    },
    403: {"not_a_reviewer": "the token's user may not read the queue or decide"},
    404: {"review_not_found": "no held job has this id"},
    409: {
        "already_decided": "the job was decided already (by another reviewer, or its deadline)",
        "review_changed": "someone approved or edited it since it was read: look again",
        "second_approver_required": "four eyes: the same person cannot approve twice",
    },
}
REVIEW_CODES = {code for meanings in REVIEW_ERRORS.values() for code in meanings}
for _status, _meanings in REVIEW_ERRORS.items():
    ERRORS.setdefault(_status, {}).update(_meanings)
ALL_CODES = {code for meanings in ERRORS.values() for code in meanings}


class ErrorSerializer(serializers.Serializer):
    """Every refusal: a stable `code`, a human `detail`, and what was wrong when it applies."""

    code = serializers.ChoiceField(choices=sorted(ALL_CODES))
    detail = serializers.CharField()
    field = serializers.CharField(required=False, help_text="The record's field that was wrong.")
    index = serializers.IntegerField(required=False, help_text="The record's place in a batch.")
    limit = serializers.IntegerField(required=False, help_text="The limit that was exceeded.")
    retry_after = serializers.IntegerField(required=False, help_text="Seconds; as Retry-After.")
    accepted = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="The media types accepted."
    )


class IntakeAcceptedSerializer(serializers.Serializer):
    jobs = JobRefSerializer(many=True, help_text="One job per record, in the records' order.")


class IntakeFinishedSerializer(serializers.Serializer):
    jobs = JobSerializer(many=True, help_text="One job per record, in the records' order.")


# A pattern, not an enum: drf-spectacular would give the job's `status` enum a hashed name.
@extend_schema_field({"type": "string", "pattern": "^(ok|degraded)$"})
class HealthStatusField(serializers.CharField):
    """Either "ok", or "degraded" when the database or Redis is down."""


class HealthSerializer(serializers.Serializer):
    database = serializers.CharField(help_text='"ok", or "error: <kind>".')
    redis = serializers.CharField(help_text='"ok", or "error: <kind>".')
    queue_depth = serializers.IntegerField(allow_null=True, help_text="null when Redis is down.")
    workers = serializers.IntegerField(allow_null=True, help_text="null when Redis is down.")
    status = HealthStatusField()


def error_responses(codes: set[str]) -> dict[int, OpenApiResponse]:
    """An `Error` response for each status that one of `codes` has, naming those codes."""
    responses = {}
    for status, meanings in ERRORS.items():
        if listed := [f"`{code}`: {when}" for code, when in meanings.items() if code in codes]:
            responses[status] = OpenApiResponse(ErrorSerializer, description="; ".join(listed))
    return responses


RECORDS_CODES = ALL_CODES - {"job_not_found", "not_found"} - REVIEW_CODES
JOB_CODES = {
    "invalid_webhook_id",
    *(set(ERRORS[401]) - REVIEW_CODES),
    "network_not_allowed",
    "job_not_found",
    "not_found",
    "rate_limited",
    "database_unavailable",
}

LIMITS = (
    f"at most INTAKE_MAX_BATCH ({settings.INTAKE_MAX_BATCH}) records, in at most "
    f"INTAKE_MAX_BODY_BYTES ({settings.INTAKE_MAX_BODY_BYTES}) bytes, nested at most 64 levels "
    "deep. A chunked body (Transfer-Encoding: chunked) is accepted up to the same limit. The "
    "connector's `accepts` setting says which body types it takes (default: JSON only)."
)
XML_BODY = {
    "type": "string",
    "format": "binary",
    "description": "One XML record (the root element), or, with the connector's "
    "`record_element`, every such element in the body as a record. Attributes and child "
    "elements become fields by local name (namespaces dropped); a repeated child becomes a list. "
    "DTDs and entities are refused. " + LIMITS,
}
SOAP_BODY = {
    "type": "string",
    "format": "binary",
    "description": "A SOAP 1.2 envelope (SOAP 1.1: text/xml with a SOAPAction header, or any "
    "XML body whose root is a SOAP 1.1 envelope), for a connector that accepts `soap`: the "
    "Body's first element is the record, or, with `record_element`, every such element in the "
    "Body is one. The connector's WSDL (GET this URL with ?wsdl) describes it. SOAPAction and "
    "the `action` parameter are ignored. A SOAP caller is always answered in SOAP: 200 with a "
    "submitResponse (the jobs), or a Fault under the status listed here. " + LIMITS,
}
RECORDS_BODY = {
    "application/json": {
        "anyOf": [
            {
                "type": "object",
                "required": ["records"],
                "additionalProperties": False,
                "properties": {
                    "records": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": settings.INTAKE_MAX_BATCH,
                        "items": {"type": "object"},
                    }
                },
            },
            {"type": "object", "description": "One record."},
        ],
        "description": 'One JSON record, or {"records": [...]} with ' + LIMITS,
    },
    "application/xml": XML_BODY,
    "text/xml": {**XML_BODY, "description": XML_BODY["description"] + " Or SOAP 1.1."},
    "application/soap+xml": SOAP_BODY,
    "text/csv": {
        "type": "string",
        "format": "binary",
        "description": "One record per row; the header row names the fields. Delimiter, "
        "encoding and header come from the connector's settings; a row that cannot be read "
        "refuses the whole body (`index` names it). " + LIMITS,
    },
    "application/x-www-form-urlencoded": {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "description": "One record; a field name is a path (`customer.email=…` is "
        '{"customer": {"email": …}}) and a repeated name makes a list. ' + LIMITS,
    },
}

SIGNATURE_PARAMETERS = [
    OpenApiParameter(
        "webhook-id",
        {"type": "string", "maxLength": 255},
        OpenApiParameter.HEADER,
        description="Standard Webhooks message id; a write's id is accepted once per key.",
    ),
    OpenApiParameter(
        "webhook-timestamp",
        {"type": "string", "pattern": "^[0-9]+$"},
        OpenApiParameter.HEADER,
        description="Unix seconds; at most 5 minutes off.",
    ),
    OpenApiParameter(
        "webhook-signature",
        str,
        OpenApiParameter.HEADER,
        description="Space-separated `v1,<base64 HMAC-SHA256>` over `id.timestamp.body`.",
    ),
]

REPLAYED_HEADER = OpenApiParameter(
    "Idempotent-Replayed",
    {"type": "string", "enum": ["true"]},
    OpenApiParameter.HEADER,
    response=[200, 202],
    description="Sent when every record was seen before: the jobs are the existing ones.",
)
RETRY_AFTER_HEADER = OpenApiParameter(
    "Retry-After",
    {"type": "integer"},
    OpenApiParameter.HEADER,
    response=[429, 503],
    description="Seconds to wait before retrying.",
)

RECORDS_PARAMETERS = [
    OpenApiParameter(
        "wait",
        {"type": "integer", "minimum": 0, "maximum": 30, "default": 0},
        description="Wait up to this many seconds for the jobs to finish: 200 with the jobs if "
        "they do, else 202.",
    ),
    OpenApiParameter(
        "Idempotency-Key",
        {"type": "string", "pattern": "^[\\x21-\\x7e]{1,200}$", "maxLength": 200},
        OpenApiParameter.HEADER,
        description="1 to 200 printable ASCII characters, no spaces. The same key with the same "
        "record answers the existing job (with Idempotent-Replayed: true) instead of creating "
        "another; with a different record it is refused (409 `idempotency_key_reused`). In a "
        "batch, record N gets the key `<key>:N`.",
    ),
    *SIGNATURE_PARAMETERS,
    REPLAYED_HEADER,
    RETRY_AFTER_HEADER,
]

# The answer's other formats: the JSON answer's fields, written as each format writes them.
ANSWER_FORMATS = {
    "application/xml": "The JSON answer's fields as elements: <jobs><job>…</job></jobs> (one "
    "job: <job>), an error as <error><code>…</code><detail>…</detail>…</error>; a list is one "
    "element per item, null an empty element.",
    "text/xml": "As application/xml; for a SOAP 1.1 caller, a SOAP 1.1 envelope (as "
    "application/soap+xml describes).",
    "text/csv": "A header row, then one row per job (or the error), nested fields as dotted "
    "columns (result.decision), in the connector's delimiter and encoding for its own keys; "
    "formula-like cells are prefixed with an apostrophe.",
    "application/x-www-form-urlencoded": "The JSON answer's fields as dotted names "
    "(jobs.id=…&jobs.status=…), a list as a repeated name, null as an empty value.",
}
SOAP_ANSWER = {
    "type": "string",
    "description": "A SOAP envelope in the request's version: a submitResponse with one job per "
    "record (id, status, url; with `wait`, attempts, result as the WSDL types it, result_json, "
    "error, created_at, finished_at), or a Fault (1.1 faultcode/faultstring, 1.2 Code/Reason "
    "with our `code` as Subcode) whose detail is an <error> with the Error fields.",
}


def in_every_format(responses: dict, *, soap: bool = False) -> dict:
    """Each response as JSON (its schema) and in the other answer formats (as text)."""
    formatted = {}
    for status, response in responses.items():
        formatted[status, "application/json"] = response
        for media_type, description in ANSWER_FORMATS.items():
            formatted[status, media_type] = {"type": "string", "description": description}
        if soap and status != 202:  # a SOAP caller's success is a 200
            formatted[status, "application/soap+xml"] = SOAP_ANSWER
    return formatted


RECORDS_RESPONSES = in_every_format(
    {
        202: OpenApiResponse(
            IntakeAcceptedSerializer,
            description="Accepted: the jobs are stored and will run. Once jobs are stored the "
            "answer is 202, even if a step after that failed.",
        ),
        200: OpenApiResponse(
            IntakeFinishedSerializer,
            description="With `wait`: the jobs finished. A SOAP caller's accepted jobs, too.",
        ),
        **error_responses(RECORDS_CODES),
    },
    soap=True,
)
RECORDS_DESCRIPTION = (
    'Accept one record, or {"records": [...]}, for a connector, as JSON, XML, SOAP, CSV or a '
    "form (whichever the connector accepts). The answer, errors included, is in the format "
    "`Accept` names (application/json, application/xml, text/xml, text/csv or "
    "application/x-www-form-urlencoded; wildcards name none), else in the body's (a form sent "
    "to a connector that takes no forms, or refused before its key was known, is answered as "
    "JSON); a SOAP caller gets SOAP. Every refusal stores nothing. A key with a signing "
    "secret must sign the request (Standard Webhooks headers over the raw body). A too large "
    "body may also be refused by a proxy or the web server in front, with a 413 whose body "
    "is not JSON."
)

WSDL_CODES = {*ERRORS[401], *ERRORS[403], *ERRORS[404], *ERRORS[429], *ERRORS[503]} - {
    "job_not_found",
    "not_found",
}
WSDL_PARAMETERS = [
    OpenApiParameter(
        "wsdl",
        {"type": "string", "enum": [""]},
        required=True,
        allow_blank=True,
        description="Present, without a value: `?wsdl`.",
    ),
    *SIGNATURE_PARAMETERS,
    RETRY_AFTER_HEADER,
]
WSDL_RESPONSES = {
    (200, "text/xml"): OpenApiResponse(
        {"type": "string", "description": "A WSDL 1.1 document."},
        description="The connector's WSDL: one operation, `submit`, document/literal, with a "
        "SOAP 1.1 and a SOAP 1.2 binding at this URL; its types come from the connector's "
        "input mappings (the record) and its output mappings and schema (the result).",
    ),
    **{
        key: value
        for key, value in in_every_format(error_responses(WSDL_CODES)).items()
        if key[1] != "application/x-www-form-urlencoded"
    },
}
WSDL_DESCRIPTION = (
    "The connector's WSDL, for a SOAP client to generate its stub from. Needs one of the "
    "connector's API keys, like a job read; errors are XML unless `Accept` asks for another "
    "format."
)

JOB_PARAMETERS = [*SIGNATURE_PARAMETERS, RETRY_AFTER_HEADER]
JOB_RESPONSES = in_every_format(
    {
        200: OpenApiResponse(JobSerializer, description="The job."),
        **error_responses(JOB_CODES),
    }
)
JOB_DESCRIPTION = (
    "A job of the caller's connector; any other job is 'not found'. The API key alone is "
    "enough, also for a key with a signing secret; signature headers, when sent, are verified "
    "over the empty body. Reads count towards the connector's requests per minute."
)

HEALTH_RESPONSES = {
    200: OpenApiResponse(HealthSerializer, description="Every dependency is up."),
    503: OpenApiResponse(HealthSerializer, description="The database or Redis is down."),
}


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "connectors.api.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An Interlock API key (`ilk_…`), as `Authorization: Bearer <key>` or "
            "`X-Api-Key: <key>`. A key with a signing secret must also sign every write with "
            "Standard Webhooks headers; reads need the key alone.",
        }


REVIEW_QUEUE_CODES = {
    "invalid_query",
    "not_authenticated",
    "invalid_reviewer_token",
    "not_a_reviewer_token",
    "not_a_reviewer",
}
REVIEW_DECISION_CODES = (REVIEW_CODES - {"invalid_query"}) | {"not_authenticated", "not_found"}
