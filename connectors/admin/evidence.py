"""Evidence bundles from the admin: a job's page and the job list's action (a search result)."""

import json

from django.http import HttpResponse
from django.utils import timezone

from connectors import evidence
from connectors.admin.base import actor_for


def bundle_response(request, jobs, selection: dict, name: str) -> HttpResponse:
    """The bundle as a JSON download; raises evidence.SelectionError for a selection that
    cannot be bundled (the caller shows it as a message)."""
    bundle = evidence.build(jobs, selection, actor_for(request))
    response = HttpResponse(
        json.dumps(bundle, indent=1, ensure_ascii=False), content_type="application/json"
    )
    stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="evidence-{name}-{stamp}.json"'
    return response
