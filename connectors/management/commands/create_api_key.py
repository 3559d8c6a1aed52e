from django.core.management.base import BaseCommand, CommandError

from connectors import audit
from connectors.models import ApiKey, Connector


class Command(BaseCommand):
    help = "Create an API key for a connector; the key (and signing secret) are printed once."

    def add_arguments(self, parser):
        parser.add_argument("--connector", required=True, help="The connector's slug.")
        parser.add_argument("--name", default="", help="A label for the key, e.g. the caller.")
        parser.add_argument(
            "--signing-secret",
            action="store_true",
            help="Also create a Standard Webhooks signing secret; requests must then be signed.",
        )

    def handle(self, *args, **options):
        connector = Connector.objects.filter(slug=options["connector"]).first()
        if connector is None:
            raise CommandError(f"no connector with slug {options['connector']!r}")
        api_key, plain, secret = ApiKey.issue(
            connector, name=options["name"], with_signing_secret=options["signing_secret"]
        )
        audit.record(
            "api_key.create",
            audit.Actor.system("create_api_key"),
            api_key,
            connector=connector.slug,
        )
        self.stdout.write(f"API key for {connector.slug} (shown once, store it now):\n{plain}")
        if secret:
            self.stdout.write(f"Signing secret (Standard Webhooks, shown once):\n{secret}")
