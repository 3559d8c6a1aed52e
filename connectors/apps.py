from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ConnectorsConfig(AppConfig):
    name = "connectors"
    verbose_name = "Interlock"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from connectors import auth_events, intake_plans, roles

        auth_events.connect()
        intake_plans.connect()
        # After the permissions exist (auth's own post_migrate handler runs first).
        post_migrate.connect(roles.ensure_groups, sender=self, dispatch_uid="interlock-roles")
