import json
from pathlib import Path

from django.core.management.base import BaseCommand

from connectors import audit


class Command(BaseCommand):
    help = "Write the audit chain's head (sequence and hash) to a file kept outside the database."

    def add_arguments(self, parser):
        parser.add_argument("file", help="Where to write the checkpoint (JSON).")

    def handle(self, *args, **options):
        checkpoint = audit.current_checkpoint()
        Path(options["file"]).write_text(json.dumps(checkpoint, indent=2) + "\n")
        self.stdout.write(
            f"Checkpoint #{checkpoint['sequence']} written to {options['file']}; "
            "verify later with: manage.py verify_audit --checkpoint FILE"
        )
