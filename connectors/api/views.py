"""The HTTP API: views orchestrate; validation is in serializers, work in connectors.jobs."""

import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, permissions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from connectors import audit, bulk, crypto, database, finish_notices, group_commit, jobs
from connectors.api import answer_formats, body_formats, key_cache, schema, soap, wsdl
from connectors.api.authentication import ApiKeyAuthentication, read_body
from connectors.api.errors import ApiError
from connectors.api.serializers import (
    IdempotencyKeySerializer,
    IntakeQuerySerializer,
    JobRefSerializer,
    JobSerializer,
)
from connectors.api.throttling import ConnectorRateThrottle, intake_limit
from connectors.models import Connector, Job, WebhookReceipt
from connectors.work import Submission

logger = logging.getLogger(__name__)

# ?wait= polls the database every WAIT_FIRST_POLL_SECONDS for its first second (a fast answer
# is not held back by a long pause), then less and less often up to WAIT_POLL_SECONDS; a worker
# that finished jobs of the connector wakes it before the pause ends (finish_notices).
WAIT_FIRST_POLL_SECONDS = 0.01
WAIT_POLL_SECONDS = 0.1


class HasApiKey(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        return request.auth is not None


class KeyAuthenticatedView(APIView):
    """Answers in JSON, XML, CSV or a form: `Accept`, else the body's type (else JSON)."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasApiKey]
    throttle_classes = [ConnectorRateThrottle]
    renderer_classes = list(answer_formats.RENDERERS.values())
    content_negotiation_class = answer_formats.DeferredNegotiation

    def finalize_response(self, request, response, *args, **kwargs):
        if isinstance(response, Response):
            self.choose_answer_format(request, response)
        return super().finalize_response(request, response, *args, **kwargs)

    def choose_answer_format(self, request, response) -> None:
        answer_formats.choose(request, "json", body_format=own_body_format(request))

    def throttled(self, request, wait):
        limit = intake_limit(request.auth.connector)
        seconds = max(1, math.ceil(wait))
        raise ApiError(
            429,
            "rate_limited",
            f"This connector accepts {limit} requests per minute; nothing was accepted. "
            f"Retry in {seconds} s.",
            headers={"Retry-After": str(seconds)},
            limit=limit,
            retry_after=seconds,
        )


def own_body_format(request, slug: str | None = None) -> body_formats.BodyFormat | None:
    """The body settings of the caller's connector (CSV answers use its delimiter and
    encoding); None for a caller that is not one of its keys."""
    if (known := getattr(request, "body_format", None)) is not None:
        return known
    # Not request.auth: after a failed authentication (the database down) it authenticates again.
    api_key = getattr(request, "_auth", None)
    if api_key is None or (slug is not None and api_key.connector.slug != slug):
        return None
    return body_formats.body_format_for(api_key.connector)


class RecordsView(KeyAuthenticatedView):
    """Accept one record, or many, as JSON, XML, SOAP, CSV or a form, for a connector; serve
    its WSDL."""

    @extend_schema(
        description=schema.WSDL_DESCRIPTION,
        parameters=schema.WSDL_PARAMETERS,
        responses=schema.WSDL_RESPONSES,
    )
    def get(self, request, slug: str):
        if "wsdl" not in request.query_params:
            raise exceptions.MethodNotAllowed(
                "GET", detail="GET serves this connector's WSDL only: add ?wsdl to the URL."
            )
        connector = self.connector_for(request, slug)
        address = request.build_absolute_uri(reverse("api:records", kwargs={"slug": slug}))
        return HttpResponse(
            wsdl.document(connector, address), content_type="text/xml; charset=utf-8"
        )

    @extend_schema(
        description=schema.RECORDS_DESCRIPTION,
        request=schema.RECORDS_BODY,
        parameters=schema.RECORDS_PARAMETERS,
        responses=schema.RECORDS_RESPONSES,
    )
    def post(self, request, slug: str):
        try:
            return self.accept(request, slug)
        except (ApiError, key_cache.StaleKey) as error:
            if not self.read_key_again(request, error):
                raise
        return self.accept(request, slug)

    # A POST is let through on the process's copy of its key; its transaction confirms the copy.
    confirms_key_in_transaction = True

    def read_key_again(self, request, error: Exception) -> bool:
        """After a refusal made on the process's copy of the key, or a transaction that found
        the copy out of date: whether the key was read again (and the request may start over)."""
        unconfirmed = getattr(request, "unconfirmed_key", None)
        if unconfirmed is None:
            return False
        if not isinstance(error, key_cache.StaleKey):
            if key_cache.is_current(unconfirmed):
                request.unconfirmed_key = None  # the refusal stands: the copy was right
                return False
            key_cache.forget(unconfirmed.key_hash)
        request.user, request.auth = ApiKeyAuthentication().authenticate_now(
            request, unconfirmed.key_hash
        )
        self.check_permissions(request)
        return True

    def check_throttles(self, request):
        try:
            super().check_throttles(request)
        except ApiError as error:
            if not self.read_key_again(request, error):
                raise
            super().check_throttles(request)

    def accept(self, request, slug: str):
        connector = self.connector_for(request, slug)
        wait = intake_wait(request.query_params)
        idempotency_key = request.headers.get("Idempotency-Key", "")
        # No key is valid (what the serializer says of ""): it is not asked.
        if (
            idempotency_key
            and not IdempotencyKeySerializer(data={"key": idempotency_key}).is_valid()
        ):
            raise ApiError(
                400,
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 200 printable ASCII characters.",
            )
        body = parse_records(request, connector)
        records, is_batch = body.records, body.is_batch
        submissions = [
            Submission(
                record=record,
                idempotency_key=f"{idempotency_key}:{index}"
                if idempotency_key and is_batch
                else idempotency_key,
                source_reference=f"webhook {getattr(request, 'webhook_id', '')}".strip(),
                fingerprint=crypto.record_fingerprint(record) if idempotency_key else "",
            )
            for index, record in enumerate(records)
        ]
        results = commit_jobs(request, connector, submissions, is_batch)
        created = [job for job, is_new in results]
        response = answer(created, wait)
        if not any(is_new for _, is_new in results):
            response["Idempotent-Replayed"] = "true"
        return response

    def connector_for(self, request, slug: str) -> Connector:
        api_key = request.auth
        if api_key.connector.slug != slug:
            if Connector.objects.filter(slug=slug).exists():
                raise ApiError(
                    403, "key_not_for_connector", "This API key belongs to another connector."
                )
            raise ApiError(404, "connector_not_found", f"No connector with slug '{slug}'.")
        if not api_key.connector.is_enabled:
            raise ApiError(
                503,
                "connector_disabled",
                "This connector is disabled; nothing was accepted. Retry later.",
                headers={"Retry-After": "60"},
            )
        return api_key.connector

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        if version := getattr(exc, "soap_version", None):  # found in the body: answer a Fault
            self.request.soap_version = version
        response.soap_fault_code = getattr(exc, "fault_code", None)
        return response

    def choose_answer_format(self, request, response) -> None:
        """SOAP for a SOAP caller; else `Accept`, else the type the body was read as (or,
        before it was read, the type its label names)."""
        http = request._request
        media_type, _ = body_formats.media_type_of(http.META.get("CONTENT_TYPE", ""))
        version = getattr(request, "soap_version", None) or soap.labelled_version(
            media_type, http.headers.get("SOAPAction")
        )
        if version is not None:
            request.accepted_renderer = soap.SoapRenderer(version)
            request.accepted_media_type = version.media_type
            if response.status_code == status.HTTP_202_ACCEPTED:
                response.status_code = status.HTTP_200_OK  # SOAP clients read others as faults
            return
        fmt = own_body_format(request, self.kwargs.get("slug"))
        kind = getattr(request, "body_kind", None) or labelled_kind(request, media_type, fmt)
        answer_formats.choose(request, kind, media_type, fmt)


def intake_wait(query_params) -> int:
    """?wait= as IntakeQuerySerializer validates it; without a query, its default (0) without
    building the serializer."""
    if not query_params:
        return 0
    query = IntakeQuerySerializer(data=query_params)
    if not query.is_valid():
        raise ApiError(400, "invalid_wait", "wait must be a whole number from 0 to 30.")
    return query.validated_data["wait"]


def labelled_kind(request, media_type: str, fmt: body_formats.BodyFormat | None) -> str:
    """The answer's kind for a request refused before its body was read. A form label is JSON
    sent with `curl -d` unless the connector is known to take forms."""
    if request.method == "GET":
        return "xml"  # a ?wsdl request, from a SOAP tool
    kind = body_formats.MEDIA_TYPES.get(media_type)
    if kind in ("xml", "csv"):
        return kind
    if kind == "form" and fmt is not None and "form" in fmt.accepts:
        return "form"
    return "json"


def parse_records(request, connector: Connector) -> body_formats.Body:
    """The body's records, read as its Content-Type says, if the connector accepts that type;
    what it was read as is kept for the answer."""
    raw = read_body(request)
    http = request._request
    request.body_format = body_formats.body_format_for(connector)
    body = body_formats.parse_body(
        raw,
        http.META.get("CONTENT_TYPE", ""),
        request.body_format,
        soap_action=http.headers.get("SOAPAction"),
    )
    request.body_kind, request.soap_version = body.kind, body.soap_version
    return body


def record_webhook_id(request) -> None:
    webhook_id = getattr(request, "webhook_id", None)
    if not webhook_id:
        return
    try:
        with transaction.atomic():
            WebhookReceipt.objects.create(api_key=request.auth, webhook_id=webhook_id)
    except IntegrityError:
        raise ApiError(
            409,
            "webhook_replayed",
            f"webhook-id '{webhook_id}' was already received with this key; it is not "
            "accepted twice.",
        ) from None


def commit_jobs(
    request, connector: Connector, submissions: list[Submission], is_batch: bool
) -> list[tuple[Job, bool]]:
    """Prepare the records (no lock held), then store the jobs and the webhook id in one
    transaction, with those of the process's other requests for this connector that arrive
    meanwhile (group_commit: one chain-head lock and one commit for all of them)."""
    actor = audit.Actor.api_key(request.auth, request.META.get("REMOTE_ADDR"))
    try:
        prepared = jobs.prepare(connector, submissions)
    except jobs.RecordRejected as rejected:
        raise rejection(rejected, is_batch) from None
    intake = Intake(request, prepared, actor, is_batch)
    return group_commit.together(connector.pk, intake, store_intakes)


@dataclass(frozen=True)
class Intake:
    """One request's prepared records, waiting to be stored."""

    request: Any
    prepared: jobs.Prepared
    actor: audit.Actor
    is_batch: bool


def store_intakes(tickets: list[group_commit.Ticket]) -> None:
    """Store waiting requests in one transaction; if that fails, each alone, so that each
    request gets its own answer (a replayed webhook id or a reused key refuses only its own)."""
    if len(tickets) > 1:
        try:
            results = store_in_one_transaction([ticket.item for ticket in tickets])
        except Exception:
            logger.debug("a group of %d requests failed; storing each alone", len(tickets))
        else:
            for ticket, result in zip(tickets, results, strict=True):
                ticket.result = result
            return
    for ticket in tickets:
        try:
            ticket.result = store_in_one_transaction([ticket.item])[0]
        except Exception as error:
            ticket.error = error


def store_in_one_transaction(intakes: list[Intake]) -> list[list[tuple[Job, bool]]]:
    """The jobs and webhook ids of the requests, in one transaction; each request's results.

    Once that committed the jobs exist, so a failure of a step that runs on commit (the enqueue)
    must not refuse the requests: the reconciler enqueues what that step could not.
    """
    unconfirmed = [
        key for intake in intakes if (key := getattr(intake.request, "unconfirmed_key", None))
    ]
    confirmation = key_cache.Confirmation(unconfirmed)
    try:
        return _store_in_one_transaction(intakes, confirmation)
    except (OperationalError, InterfaceError):
        # A request on the process's copy of its key made no query before this transaction:
        # its first answer is the check of a reused connection (key_cache.read_stamp).
        if not unconfirmed or confirmation.answered or connection.in_atomic_block:
            raise
        logger.info("the database connection went away; storing again on a new one")
        connection.close()
    return _store_in_one_transaction(intakes, key_cache.Confirmation(unconfirmed))


def _store_in_one_transaction(
    intakes: list[Intake], confirmation: key_cache.Confirmation
) -> list[list[tuple[Job, bool]]]:
    committed = []
    rows = sum(len(intake.prepared.candidates) for intake in intakes)
    try:
        with database.one_writer() as writer, transaction.atomic():
            # Registered first, so they run first on commit, before jobs.store's enqueue (which
            # needs no write lock: the next request's transaction need not wait for Redis).
            transaction.on_commit(lambda: committed.append(True))
            transaction.on_commit(writer.release, robust=True)  # the enqueue runs regardless
            for intake in intakes:
                record_webhook_id(intake.request)
            # The keys' stamps go with the insert and the chain head's lock: one round trip.
            with database.pipelined() if rows < bulk.COPY_FROM_ROWS else nullcontext():
                confirmation.send()
                try:
                    results = jobs.store_together(
                        [(intake.prepared, intake.actor) for intake in intakes]
                    )
                except jobs.RecordRejected as rejected:
                    raise rejection(rejected, intakes[0].is_batch) from None
                confirmation.confirm()
    except Exception:
        if not committed:
            raise
        logger.exception("jobs committed but not enqueued; the reconciler will enqueue them")
    return results


def rejection(rejected: jobs.RecordRejected, is_batch: bool) -> ApiError:
    error = rejected.error
    where = f"Record {rejected.index}: " if is_batch else ""
    extra = {"index": rejected.index}
    if getattr(error, "field", None):
        extra["field"] = error.field
    code = "missing_field" if error.code == "mapping_error" else error.code
    status = 409 if code == "idempotency_key_reused" else 422
    return ApiError(status, code, where + error.message + "; nothing was accepted.", **extra)


def answer(created: list[Job], wait: int) -> Response:
    """202 with the job refs, or 200 with the jobs if they finish within `wait` seconds.

    The jobs are committed: whatever fails now, the answer is still 202, or a caller without an
    Idempotency-Key would send the records again and create second jobs. A new job's status is
    the one its on-commit enqueue set on it (no query).
    """
    try:
        if wait and (finished := wait_for(created, wait)) is not None:
            return Response({"jobs": represent(JobSerializer, finished)}, status.HTTP_200_OK)
    except Exception:
        logger.exception("jobs committed; answering 202 with their last known status")
    return Response({"jobs": represent(JobRefSerializer, created)}, 202)


def represent(serializer_class, jobs: list[Job]) -> list[dict]:
    """What `serializer_class(jobs, many=True).data` gives, as a plain list: `.data` is a list
    that points back at its serializer, and so at every job, in a cycle that only a full
    garbage collection frees (a 1,000-record body's jobs would outlive the request)."""
    return serializer_class(many=True).to_representation(jobs)


def wait_for(created: list[Job], seconds: int) -> list[Job] | None:
    """Poll the database until every job finished, or give up after `seconds`; a worker's
    announcement that it finished jobs of the connector cuts a pause short (finish_notices)."""
    ids = [job.id for job in created]
    waiting = set(ids)
    started = time.monotonic()
    deadline = started + seconds
    pause = WAIT_FIRST_POLL_SECONDS
    # Subscribed before the first poll: a finish committed after that poll is heard.
    with finish_notices.Listener(created[0].connector_id) as listener:
        while True:  # one poll at least, however long subscribing took
            # Statuses only, of the jobs still waited for: the rows are read once, at the end.
            waiting -= set(
                Job.objects.filter(id__in=waiting, status__in=Job.FINISHED).values_list(
                    "id", flat=True
                )
            )
            if not waiting:
                finished = Job.objects.select_related("connector__provider").filter(id__in=ids)
                order = {job_id: index for index, job_id in enumerate(ids)}
                return sorted(finished, key=lambda job: order[job.id])
            if time.monotonic() >= deadline:
                return None
            listener.pause(min(pause, max(0.0, deadline - time.monotonic())))
            if time.monotonic() - started > 1:
                pause = min(pause * 1.5, WAIT_POLL_SECONDS)


class JobView(KeyAuthenticatedView):
    """A job of the caller's connector; any other job is 'not found'."""

    @extend_schema(
        description=schema.JOB_DESCRIPTION,
        parameters=schema.JOB_PARAMETERS,
        responses=schema.JOB_RESPONSES,
    )
    def get(self, request, job_id):
        job = (
            Job.objects.select_related("connector__provider")
            .filter(id=job_id, connector=request.auth.connector)
            .first()
        )
        if job is None:
            raise ApiError(404, "job_not_found", f"No job {job_id} for this key's connector.")
        return Response(JobSerializer(job).data)


class HealthView(APIView):
    """Database, Redis, queue depth and live workers; 503 when a dependency is down."""

    authentication_classes = []
    permission_classes = []

    @extend_schema(responses=schema.HEALTH_RESPONSES)
    def get(self, request):
        body = {"database": check_database(), **jobs.queue_stats()}
        is_healthy = body["database"] == "ok" and body["redis"] == "ok"
        body["status"] = "ok" if is_healthy else "degraded"
        return Response(body, status.HTTP_200_OK if is_healthy else 503)


def check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:  # any driver error means unhealthy
        return f"error: {type(error).__name__}"
    return "ok"
