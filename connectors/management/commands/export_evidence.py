import json
from datetime import datetime, time
from uuid import UUID

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from connectors import audit, evidence
from connectors.models import Connector


def moment(value: str, name: str) -> datetime:
    """A date (midnight, in TIME_ZONE) or an ISO 8601 date-time."""
    try:
        parsed = parse_datetime(value) or (
            datetime.combine(day, time()) if (day := parse_date(value)) else None
        )
    except ValueError:
        parsed = None
    if parsed is None:
        raise CommandError(f"{name} {value!r} is not a date (2026-03-01) or an ISO date-time")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)


class Command(BaseCommand):
    help = (
        "Write an evidence bundle (JSON) of one job, of the jobs of a source reference, or of a "
        "connector's jobs over a period; an auditor checks it with tools/verify_evidence.py."
    )

    def add_arguments(self, parser):
        chosen = parser.add_mutually_exclusive_group(required=True)
        chosen.add_argument("--job", help="A job's id.")
        chosen.add_argument("--source-reference", help="Every job with this source reference.")
        chosen.add_argument("--connector", help="A connector's slug (with --from / --to).")
        parser.add_argument("--from", dest="since", help="Jobs created from (date or date-time).")
        parser.add_argument("--to", dest="until", help="...and before (date or date-time).")
        parser.add_argument("--output", "-o", help="The file to write (default: standard output).")

    def handle(self, *args, job, source_reference, connector, since, until, output, **options):
        if (since or until) and not connector:
            raise CommandError("--from and --to go with --connector")
        if connector and not Connector.objects.filter(slug=connector).exists():
            raise CommandError(f"no connector {connector!r}")
        if job:
            try:
                job = str(UUID(job))
            except ValueError:
                raise CommandError(f"--job {job!r} is not a job id (a UUID)") from None
        selection = evidence.Selection(
            job=job or "",
            source_reference=source_reference or "",
            connector=connector or "",
            since=moment(since, "--from") if since else None,
            until=moment(until, "--to") if until else None,
        )
        try:
            bundle = evidence.build(
                selection.jobs(), selection.describe(), audit.Actor.system("export_evidence")
            )
        except evidence.SelectionError as error:
            raise CommandError(f"no evidence bundle: {error}") from None
        text = json.dumps(bundle, indent=1, ensure_ascii=False) + "\n"
        if output:
            with open(output, "w", encoding="utf-8") as handle:
                handle.write(text)
            where = output
        else:
            self.stdout.write(text, ending="")
            where = "standard output"
        self.stderr.write(
            f"Evidence of {len(bundle['jobs'])} job(s), {len(bundle['events'])} audit events and "
            f"{len(bundle['checkpoints'])} signed checkpoint(s) written to {where}."
        )
