"""The floor intake is measured against: Interlock's own app plus a bare DRF view that inserts
one `Job` row per request (no key, mapping, redaction, audit or enqueue), served by the same
gunicorn as the real intake (bench/intake.py). BENCH_FLOOR_CONNECTOR names the row's connector.
"""

import os
import uuid

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.urls import include, path  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402

from connectors.models import Job  # noqa: E402


class FloorView(APIView):
    authentication_classes = []
    permission_classes = []
    throttle_classes = []

    def post(self, request):
        job = Job.objects.create(
            connector_id=int(os.environ["BENCH_FLOOR_CONNECTOR"]),
            idempotency_key=str(uuid.uuid4()),
            input_data=request.data,
            prompt="",
        )
        return Response({"id": str(job.id)}, status=202)


urlpatterns = [path("bench/floor/", FloorView.as_view()), path("", include("console.urls"))]
settings.ROOT_URLCONF = __name__

# Production's application (and its garbage collector settings), routed through the URLs above.
from console.wsgi import application  # noqa: E402, F401
