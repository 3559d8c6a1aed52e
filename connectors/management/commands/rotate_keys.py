from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from connectors import audit, crypto
from connectors.models import ApiKey, Credential, Job


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret under the first key of FIELD_ENCRYPTION_KEYS; "
        "afterwards the older keys can be removed."
    )

    def handle(self, *args, **options):
        counts = {"credentials": 0, "api key signing secrets": 0, "job token maps": 0}
        try:
            with transaction.atomic():
                for credential in Credential.objects.select_for_update():
                    credential.encrypted_value = crypto.rotate(credential.encrypted_value)
                    credential.save(update_fields=["encrypted_value"])
                    counts["credentials"] += 1
                for api_key in ApiKey.objects.select_for_update().exclude(
                    encrypted_signing_secret=""
                ):
                    api_key.encrypted_signing_secret = crypto.rotate(
                        api_key.encrypted_signing_secret
                    )
                    api_key.save(update_fields=["encrypted_signing_secret"])
                    counts["api key signing secrets"] += 1
                for job in (
                    Job.objects.select_for_update()
                    .exclude(encrypted_tokens="")
                    .only("id", "encrypted_tokens")
                ):
                    Job.objects.filter(id=job.id).update(
                        encrypted_tokens=crypto.rotate(job.encrypted_tokens)
                    )
                    counts["job token maps"] += 1
                audit.record("keys.rotate", audit.Actor.system("rotate_keys"), changes=counts)
        except crypto.DecryptionError as error:
            raise CommandError(f"{error}; nothing was changed") from None
        summary = ", ".join(f"{count} {what}" for what, count in counts.items())
        self.stdout.write(f"Re-encrypted under the first key: {summary}.")
