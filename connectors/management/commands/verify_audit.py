import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from connectors import audit


class Command(BaseCommand):
    help = "Verify the audit chain; exits non-zero and names the first broken event."

    def add_arguments(self, parser):
        parser.add_argument(
            "--checkpoint",
            help="A file written by audit_checkpoint: also proves no newer event was cut off.",
        )

    def handle(self, *args, **options):
        checkpoint = None
        if options["checkpoint"]:
            try:
                stored = json.loads(Path(options["checkpoint"]).read_text())
                checkpoint = {"sequence": int(stored["sequence"]), "hash": stored["hash"]}
                if "public_hash" in stored:  # signed checkpoints carry the public chain's too
                    checkpoint["public_hash"] = stored["public_hash"]
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise CommandError(f"cannot read the checkpoint: {error}") from None
        total = audit.current_checkpoint()["sequence"]
        self.stderr.write(f"Verifying {total:,} audit events…")
        result = audit.verify(
            checkpoint,
            progress=lambda checked: self.stderr.write(f"  {checked:,} of {total:,} verified"),
        )
        if not result.is_valid:
            raise CommandError(
                f"audit chain broken at event #{result.broken_sequence}: {result.reason} "
                f"({result.checked} events verified before it)"
            )
        self.stdout.write(
            f"Audit chain intact: {result.checked} events, head #{result.head_sequence}."
        )
