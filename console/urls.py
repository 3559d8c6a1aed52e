from django.contrib import admin
from django.urls import include, path

from connectors.metrics import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("connectors.api.urls")),
    path("metrics", metrics_view, name="metrics"),
    path("sso/", include("connectors.sso")),
]

handler404 = "console.views.not_found"
handler500 = "console.views.server_error"
