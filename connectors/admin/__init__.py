"""The admin console, one module per area."""

from django.contrib import admin

from connectors.admin import (
    api_keys,
    audit_events,
    budgets,
    connectors,
    credentials,
    files,
    jobs,
    providers,
    reviews,
)

__all__ = [
    "api_keys",
    "audit_events",
    "budgets",
    "connectors",
    "credentials",
    "files",
    "jobs",
    "providers",
    "reviews",
]

admin.site.site_header = "Interlock"
admin.site.site_title = "Interlock console"
admin.site.index_title = "Console"
