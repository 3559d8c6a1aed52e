from pathlib import Path

from django.core.management.base import BaseCommand

from connectors import config


class Command(BaseCommand):
    help = "Print the whole setup as YAML or JSON; secrets appear only as variable names."

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=["yaml", "json"], default="yaml")
        parser.add_argument("--output", help="Write to this file instead of standard output.")

    def handle(self, *args, **options):
        text = config.dump(config.export_config(), options["format"])
        if options["output"]:
            Path(options["output"]).write_text(text, encoding="utf-8")
            self.stderr.write(f"Exported to {options['output']}.")
        else:
            self.stdout.write(text, ending="")
