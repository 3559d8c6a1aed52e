"""The review API, for reviewers who work in another tool: the queue, and a decision per job.

Authenticated by a reviewer's token (`ilr_…`, issued in the admin or by `create_reviewer_token`),
never by a connector's intake key: a legacy system must not approve its own answers. A token
acts as its user, with the user's current permissions.
"""

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, serializers
from rest_framework.authentication import BaseAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from connectors import audit, crypto, review
from connectors.api import schema
from connectors.api.authentication import LAST_USED_PRECISION, presented_key
from connectors.api.errors import ApiError
from connectors.models import ApiKey, Job, Review, ReviewerToken

MAX_LIMIT = 500


class ReviewerTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        plain = presented_key(request)
        if plain is None:
            return None
        if plain.startswith(ApiKey.PREFIX):
            raise ApiError(
                401,
                "not_a_reviewer_token",
                "This is a connector's intake key; the review API takes a reviewer's token "
                "(ilr_…).",
            )
        token = (
            ReviewerToken.objects.select_related("user")
            .filter(token_hash=crypto.sha256_hex(plain), revoked_at__isnull=True)
            .first()
        )
        if token is None or not token.user.is_active:
            raise ApiError(401, "invalid_reviewer_token", "The token is unknown or revoked.")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_PRECISION:
            ReviewerToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="interlock-reviews"'


class MayReview(permissions.BasePermission):
    """Reading the queue needs view_review; deciding needs change_review (Reviewer, Integration
    admin). Checked on every request, so a user taken out of the group loses the token's use."""

    def has_permission(self, request, view) -> bool:
        if request.auth is None:
            return False
        needed = "view_review" if request.method in permissions.SAFE_METHODS else "change_review"
        if not request.user.has_perm(f"connectors.{needed}"):
            raise ApiError(
                403, "not_a_reviewer", f"The token's user may not do this ({needed} is needed)."
            )
        return True


class ReviewSerializer(serializers.ModelSerializer):
    job = serializers.UUIDField(source="job_id", read_only=True)
    connector = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    record = serializers.JSONField(
        source="job.input_data", read_only=True, help_text="The mapped record, redacted."
    )
    prompt = serializers.CharField(source="job.prompt", read_only=True)
    answer = serializers.JSONField(
        source="job.output", read_only=True, help_text="The validated answer (as last edited)."
    )
    result = serializers.JSONField(
        source="job.result", read_only=True, help_text="What would be written back."
    )
    four_eyes = serializers.BooleanField(source="connector.review_four_eyes", read_only=True)
    first_approved_by = serializers.CharField(read_only=True)
    answer_digest = serializers.SerializerMethodField(
        help_text="Send it back as `seen`: the decision is refused (409 review_changed) if "
        "the answer was edited since."
    )

    def get_answer_digest(self, held: Review) -> str:
        return review.answer_digest(held.job.output)

    class Meta:
        model = Review
        fields = [
            "job",
            "connector",
            "rule",
            "held_at",
            "deadline",
            "record",
            "prompt",
            "answer",
            "result",
            "four_eyes",
            "first_approved_by",
            "answer_digest",
        ]
        read_only_fields = fields


class QueueSerializer(serializers.Serializer):
    reviews = ReviewSerializer(many=True, help_text="Oldest first.")


class QueueQuerySerializer(serializers.Serializer):
    connector = serializers.SlugField(required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_LIMIT, default=100)


class DecisionSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=review.DECISIONS)
    answer = serializers.JSONField(
        required=False, help_text="With edit: the new answer, checked against the schema."
    )
    reason = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=2000,
        help_text="Required to reject.",
    )
    seen = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=64,
        help_text="The answer_digest of the answer decided on (optional).",
    )


class DecidedSerializer(serializers.Serializer):
    job = serializers.UUIDField()
    outcome = serializers.ChoiceField(
        choices=["approved", "edited", "rejected", "first_approval"],
        help_text="first_approval: four eyes, a second, different person must approve.",
    )
    status = serializers.ChoiceField(choices=Job.Status.choices, help_text="The job's status now.")


class ReviewAuthenticatedView(APIView):
    authentication_classes = [ReviewerTokenAuthentication]
    permission_classes = [MayReview]
    throttle_classes: list = []


class ReviewQueueView(ReviewAuthenticatedView):
    @extend_schema(
        description="The held answers that wait for a decision, oldest first.",
        parameters=[QueueQuerySerializer],
        responses={
            200: OpenApiResponse(QueueSerializer, description="The queue."),
            **schema.error_responses(schema.REVIEW_QUEUE_CODES),
        },
    )
    def get(self, request):
        query = QueueQuerySerializer(data=request.query_params)
        if not query.is_valid():
            raise ApiError(
                400, "invalid_query", f"limit must be a whole number from 1 to {MAX_LIMIT}."
            )
        waiting = (
            Review.objects.filter(decision=Review.Decision.WAITING)
            .select_related("job", "connector")
            .order_by("held_at")
        )
        if slug := query.validated_data.get("connector"):
            waiting = waiting.filter(connector__slug=slug)
        held = waiting[: query.validated_data["limit"]]
        return Response({"reviews": ReviewSerializer(held, many=True).data})


class ReviewDecisionView(ReviewAuthenticatedView):
    @extend_schema(
        description="Approve the answer as it is, edit it (the new answer is checked against "
        "the connector's JSON Schema before it is accepted) or reject it with a reason. A "
        "decision is taken once: a second one is answered 409.",
        request=DecisionSerializer,
        responses={
            200: OpenApiResponse(DecidedSerializer, description="Decided."),
            **schema.error_responses(schema.REVIEW_DECISION_CODES),
        },
    )
    def post(self, request, job_id):
        body = DecisionSerializer(data=request.data)
        if not body.is_valid():
            raise ApiError(
                400,
                "invalid_decision",
                'The body must be {"decision": "approve" | "edit" | "reject", "answer": …, '
                '"reason": …}.',
                field=next(iter(body.errors)),
            )
        data = body.validated_data
        actor = audit.Actor.user(request.user, request.META.get("REMOTE_ADDR"))
        try:
            decided = review.decide(
                job_id,
                actor,
                data["decision"],
                answer=data.get("answer"),
                reason=data["reason"],
                via=f"api token {request.auth.prefix}…",
                seen=data["seen"],
            )
        except review.ReviewRefused as refused:
            extra = {"field": refused.field} if refused.field else {}
            raise ApiError(refused.status, refused.code, refused.message, **extra) from None
        status = Job.objects.filter(id=job_id).values_list("status", flat=True).first()
        return Response({"job": decided.job_id, "outcome": decided.outcome, "status": status})


class ReviewerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "connectors.api.reviews.ReviewerTokenAuthentication"
    name = "ReviewerToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A reviewer's token (`ilr_…`), as `Authorization: Bearer <token>`; "
            "a connector's intake key (`ilk_…`) is refused.",
        }
