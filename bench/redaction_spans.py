"""The pattern detectors' spans over the redaction data set, written out to compare two commits,
and the pattern pass timed in a tight loop.

    python bench/redaction_spans.py dump spans.json [--variants 5]
    python bench/redaction_spans.py compare before.json after.json
    python bench/redaction_spans.py time [--passes 15] [--together]

`dump` writes every span detect() finds (start, end, type, confidence, validated, the detectors
that proposed it) with all pattern detectors together and with each alone, over the data set's
texts and over `--variants` copies of each with its digits replaced at random (a fixed seed: the
same texts for every commit), so that a shortcut that differs from what it replaced on numbers
the data set does not hold shows too. Run it with each commit's code first on the path.
`compare` exits 1 when two dumps differ. `time` gives the best and median of `--passes` passes
over the data set, the detectors' caches cleared before each, all together and (without
`--together`) each alone.
"""

import argparse
import json
import random
import statistics
import sys
import time

from redaction import DATA, PATTERN_DETECTORS, load_dataset, setup_django


def texts(variants: int) -> list[str]:
    originals = [record.text for record in load_dataset(DATA)]
    generator = random.Random(8)
    varied = [
        "".join(str(generator.randrange(10)) if char.isdigit() else char for char in text)
        for _ in range(variants)
        for text in originals
    ]
    return originals + varied


def dump(path: str, variants: int) -> None:
    from connectors.detectors import detect

    result = {}
    for names in [PATTERN_DETECTORS, *([name] for name in PATTERN_DETECTORS)]:
        result[",".join(names)] = [
            [[*_fields(found.span), *sorted(found.detectors)] for found in spans]
            for spans in detect(texts(variants), names)
        ]
    with open(path, "w") as file:
        json.dump(result, file)
    count = sum(len(spans) for spans in result[",".join(PATTERN_DETECTORS)])
    print(f"{path}: {count} spans with all pattern detectors")


def _fields(span) -> list:
    return [span.start, span.end, span.type, span.confidence, span.validated]


def compare(before: str, after: str) -> int:
    with open(before) as file:
        old = json.load(file)
    with open(after) as file:
        new = json.load(file)
    differences = 0
    for names in old.keys() | new.keys():
        for index, (a, b) in enumerate(zip(old.get(names, []), new.get(names, []), strict=True)):
            if a != b:
                differences += 1
                if differences <= 20:
                    print(f"{names} text {index}: {a} != {b}")
    spans = sum(len(spans) for found in old.values() for spans in found)
    print(f"{differences} texts differ ({spans} spans compared)")
    return 1 if differences else 0


def tight_loop(passes: int, together: bool) -> None:
    from connectors.detectors import clear_caches, find_spans

    data = texts(0)
    alone = [] if together else [[name] for name in PATTERN_DETECTORS]
    for names in [PATTERN_DETECTORS, *alone]:
        timings = []
        for _ in range(passes):
            clear_caches()
            started = time.process_time()
            for text in data:
                find_spans(text, names)
            timings.append((time.process_time() - started) * 1000)
        label = "all pattern detectors" if len(names) > 1 else names[0]
        print(f"{label:<24} best {min(timings):6.1f} ms  median {statistics.median(timings):6.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    dumping = commands.add_parser("dump")
    dumping.add_argument("path")
    dumping.add_argument("--variants", type=int, default=5)
    comparing = commands.add_parser("compare")
    comparing.add_argument("before")
    comparing.add_argument("after")
    timing = commands.add_parser("time")
    timing.add_argument("--passes", type=int, default=15)
    timing.add_argument("--together", action="store_true", help="not each detector alone")
    arguments = parser.parse_args()
    if arguments.command == "compare":
        return compare(arguments.before, arguments.after)
    setup_django()
    if arguments.command == "dump":
        dump(arguments.path, arguments.variants)
    else:
        tight_loop(arguments.passes, arguments.together)
    return 0


if __name__ == "__main__":
    sys.exit(main())
