from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from connectors import audit, config


class Command(BaseCommand):
    help = (
        "Create or update credentials, providers and connectors from a YAML or JSON file "
        "(idempotent by name/slug; credential values come from the variables the file names)."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="The configuration file, or - for standard input.")

    def handle(self, *args, **options):
        path = options["file"]
        try:
            text = self.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise CommandError(f"cannot read {path}: {error}") from None
        try:
            summary = config.import_config(
                config.load(text), audit.Actor.system(f"import_config {Path(path).name}")
            )
        except config.ConfigFileError as error:
            raise CommandError(f"nothing was imported:\n{error}") from None
        for label in summary.created:
            self.stdout.write(f"created {label}")
        for label in summary.updated:
            self.stdout.write(f"updated {label}")
        self.stdout.write(f"Imported: {summary}.")
