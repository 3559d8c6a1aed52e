import json

from django.core.management.base import BaseCommand

from connectors import checkpoints, crypto


class Command(BaseCommand):
    help = (
        "Print the public keys that verify the signed audit checkpoints (the current one first, "
        "then every older one that signed a checkpoint), as the JSON tools/verify_evidence.py "
        "takes with --key."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--current",
            action="store_true",
            help="Print only the current key's public half (base64), one line.",
        )

    def handle(self, *args, current, **options):
        if current:
            self.stdout.write(crypto.signing_public_key())
            return
        self.stdout.write(json.dumps({"keys": checkpoints.public_keys()}, indent=2))
