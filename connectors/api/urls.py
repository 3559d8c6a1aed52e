from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

from connectors.api import reviews, views

app_name = "api"

urlpatterns = [
    path("connectors/<slug:slug>/records/", views.RecordsView.as_view(), name="records"),
    path("jobs/<uuid:job_id>/", views.JobView.as_view(), name="job-detail"),
    # Legacy callers drop the trailing slash; a redirect would turn their POST into a GET.
    # The aliases stay out of the OpenAPI schema, which documents the canonical paths.
    path("connectors/<slug:slug>/records", views.RecordsView.as_view(schema=None)),
    path("jobs/<uuid:job_id>", views.JobView.as_view(schema=None)),
    path("health/", views.HealthView.as_view(), name="health"),
    path("reviews/", reviews.ReviewQueueView.as_view(), name="reviews"),
    path("reviews/<uuid:job_id>/", reviews.ReviewDecisionView.as_view(), name="review-decision"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularRedocView.as_view(url_name="api:schema"), name="docs"),
]
