import json
from pathlib import Path

from django.core.management.base import BaseCommand

from connectors import checkpoints


class Command(BaseCommand):
    help = (
        "Sign the audit chain's head (a checkpoint, stored and delivered to AUDIT_CHECKPOINT_DIR "
        "/ AUDIT_CHECKPOINT_URL) and optionally write it to a file kept outside the database."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", nargs="?", help="Also write the checkpoint here (JSON).")

    def handle(self, *args, **options):
        checkpoint = checkpoints.create()
        delivered = checkpoints.publish_pending()
        body = checkpoints.document(checkpoint)
        where = ""
        if options["file"]:
            Path(options["file"]).write_text(json.dumps(body, indent=2) + "\n")
            where = f" and written to {options['file']}"
        self.stdout.write(
            f"Checkpoint #{checkpoint.sequence} signed with key {checkpoint.key_id}{where}"
            f"{f'; {delivered} delivered' if delivered else ''}; "
            "verify later with: manage.py verify_audit --checkpoint FILE"
        )
