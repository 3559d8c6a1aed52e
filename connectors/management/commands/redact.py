import argparse
import json
import sys

from django.core.management.base import BaseCommand, CommandError

from connectors import crypto, detectors, mapping, pipeline, redaction
from connectors.errors import PipelineError
from connectors.models import Connector

SHAPE = """\
Input: JSON lines, from FILE or standard input ("-" or no FILE). Output: one JSON line per input
line, in order. This shape is a stable interface.

Text mode (--all-detectors, --detectors a,b): each line is {"text": "..."}; the output is
  {"text": "<redacted>", "spans": [{"start": 4, "end": 15, "type": "ssn", "action": "mask"}]}
  start, end: offsets into the input text (string indexes, end exclusive); type: what was found
  (ssn, national_id, credit_card, email, phone, iban, ipv4, ipv6, date_of_birth, person,
  address); action: mask (text mode always masks).

Record mode (--connector SLUG): each line is a whole record, mapped and redacted as the
connector's intake does it (its input mapping, the global rules and its own, its prompt):
  {"record": {<the redacted fields>},
   "spans": {"<field>": [{"start", "end", "type", "action"}, ...]},
   "prompt": "<the prompt that would be sent>"}
  Offsets are into the mapped field's value (a number counts as its text). A span in a nested
  value also has "path" (the keys, as redacted, and list indexes below the field); one inside a
  dict key has "key": true. A field a `field` rule replaced whole has type "field"; a regex
  rule's spans have its name as type. Tokenized values are shown as their placeholders.

A line that cannot be redacted gives {"error": "line N: ..."} and the command goes on; the
exit status is 1 when any line failed. Spans and errors name types and positions, never the
data.
"""


class BadLine(Exception):
    """A line that is JSON but not what the mode reads; the message quotes no data."""


class Command(BaseCommand):
    help = "Redact JSON lines with a connector's rules or the built-in detectors, to try them."

    def create_parser(self, prog_name, subcommand, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.epilog = SHAPE
        return parser

    def add_arguments(self, parser):
        parser.add_argument("file", nargs="?", default="-", help="JSON lines (default: stdin)")
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--connector", metavar="SLUG", help="whole records, as its intake")
        which.add_argument(
            "--all-detectors", action="store_true", help="{'text': ...} lines, every detector"
        )
        which.add_argument(
            "--detectors", metavar="A,B", help="{'text': ...} lines, these detectors"
        )
        parser.add_argument("--phone-regions", metavar="DE,FR", help="text mode: phone regions")
        parser.add_argument("--id-countries", metavar="DE,FR", help="text mode: ID countries")

    def handle(self, *args, **options):
        redact_line = self.record_mode(options) if options["connector"] else self.text_mode(options)
        source = sys.stdin if options["file"] == "-" else self.open(options["file"])
        failed = total = 0
        with source:
            for number, line in enumerate(source, start=1):
                if not line.strip():
                    continue
                total += 1
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as error:
                    output = {"error": f"line {number}: not valid JSON ({error.msg})"}
                else:
                    output = self.safely(number, redact_line, value)
                failed += "error" in output
                self.stdout.write(json.dumps(output, ensure_ascii=False))
        if failed:
            raise CommandError(f"{failed} of {total} lines could not be redacted")

    def open(self, path: str):
        try:
            return open(path, encoding="utf-8")
        except OSError as error:
            raise CommandError(f"cannot read {path}: {error.strerror}") from None

    def safely(self, number: int, redact_line, value) -> dict:
        try:
            return redact_line(value)
        except PipelineError as error:
            return {"error": f"line {number}: {error.code}: {error.message}"}
        except BadLine as error:
            return {"error": f"line {number}: {error}"}
        except Exception as error:  # never the data: only what kind of failure
            return {"error": f"line {number}: unexpected {type(error).__name__}"}

    def text_mode(self, options):
        names = (
            list(detectors.DETECTORS)
            if options["all_detectors"]
            else [name.strip() for name in options["detectors"].split(",") if name.strip()]
        )
        unknown = [name for name in names if name not in detectors.DETECTORS]
        if unknown or not names:
            problem = f"unknown detector {unknown[0]!r}" if unknown else "no detector named"
            raise CommandError(f"{problem}; known: {', '.join(detectors.DETECTORS)}")
        rules = [redaction.Rule(name, "mask") for name in names]
        regions = _codes(options["phone_regions"])
        countries = _codes(options["id_countries"])
        hash_key = crypto.redaction_hash_key()

        def redact_text(value) -> dict:
            if not isinstance(value, dict) or not isinstance(value.get("text"), str):
                raise BadLine('expected an object with a "text" string')
            result = redaction.redact(
                {"text": value["text"]},
                rules,
                hash_key=hash_key,
                phone_regions=regions,
                id_countries=countries,
            )
            return {"text": result.fields["text"], "spans": result.spans.get("text", [])}

        return redact_text

    def record_mode(self, options):
        try:
            connector = Connector.objects.get(slug=options["connector"])
        except Connector.DoesNotExist:
            raise CommandError(f"no connector {options['connector']!r}") from None
        if options["phone_regions"] or options["id_countries"]:
            raise CommandError("--phone-regions and --id-countries are for text mode")
        plan = pipeline.load_intake_plan(connector)

        def redact_record(record) -> dict:
            fields = mapping.map_fields(record, plan.input_fields)
            result = pipeline.redact_and_render(plan, fields)
            return {"record": result.fields, "spans": result.spans, "prompt": result.prompt}

        return redact_record


def _codes(value: str | None) -> list[str] | None:
    return [code.strip().upper() for code in value.split(",") if code.strip()] if value else None
