"""The console's roles, as groups with model permissions, kept in step on every migrate.

Integration admins configure (credentials, providers, connectors, mappings, redaction rules, API
keys, reviewers' API tokens), may retry or cancel jobs and may review held answers. Compliance
officers view jobs, audit events, connectors, redaction rules, files and reviews, and export
them; they change nothing. Reviewers approve, edit or reject held answers and view jobs; they
configure nothing.
"""

CONFIGURED = [
    "credential",
    "provider",
    "connector",
    "fieldmapping",
    "redactionrule",
    "apikey",
    "reviewertoken",
]
HISTORY = ["job", "jobattempt", "auditevent", "sourcefile", "review"]
ROLES = {
    "Integration admin": {
        **{model: ["add", "change", "delete", "view"] for model in CONFIGURED},
        **{model: ["view"] for model in HISTORY},
        "job": ["view", "change"],  # change = retry and cancel
        "review": ["view", "change"],  # change = approve, edit and reject
    },
    "Reviewer": {"review": ["view", "change"], "job": ["view"]},
    "Compliance officer": {
        model: ["view"]
        for model in [
            "connector",
            "fieldmapping",
            "redactionrule",
            "provider",
            "apikey",
            *HISTORY,
        ]
    },
}

# The names single sign-on's OIDC_ROLE_MAP grants the roles by.
ROLE_KEYS = {
    "integration_admin": "Integration admin",
    "compliance_officer": "Compliance officer",
    "reviewer": "Reviewer",
}


def ensure_groups(**kwargs) -> None:
    """post_migrate: create the groups and set exactly their permissions."""
    from django.contrib.auth.models import Group, Permission

    for name, models in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        codenames = [f"{action}_{model}" for model, actions in models.items() for action in actions]
        group.permissions.set(
            Permission.objects.filter(content_type__app_label="connectors", codename__in=codenames)
        )
