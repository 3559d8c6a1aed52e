"""A big CSV file drop: rows per second read and submitted as jobs, and the poller's peak memory.

    python bench/file_drop.py [--rows 1000000]

Writes a CSV of --rows rows into a fresh drop folder, then runs one poll in this process (claim,
hash, stream, map, redact, insert jobs in chunks of 500) and prints the rate and the peak
resident memory (ru_maxrss), which must not grow with the file. The AI side is not run.
"""

import argparse
import resource
import tempfile
import time
from pathlib import Path

from common import prepare_environment


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    arguments = parser.parse_args()
    prepare_environment()

    from connectors import polling
    from connectors.models import Connector, FieldMapping, Job, Provider

    folder = Path(tempfile.mkdtemp(prefix="interlock-drop-"))
    path = folder / "orders.csv"
    with path.open("w") as handle:
        handle.write("id,customer,note\n")
        for n in range(arguments.rows):
            handle.write(f"{n},customer {n % 977},order {n}: three chairs and a table\n")
    size_mb = path.stat().st_size / 1e6
    provider, _ = Provider.objects.get_or_create(name="demo-files", defaults={"kind": "demo"})
    connector = Connector.objects.create(
        name="bench files",
        slug=f"bench-files-{time.monotonic_ns()}",
        provider=provider,
        prompt_template="Classify: {{ note }}",
        source_kind="file_drop",
        source_config={"path": str(folder), "settle_seconds": 0, "watch": False},
        sink_kind="file",
    )
    FieldMapping.objects.create(
        connector=connector, direction="input", source_path="note", target_name="note"
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    submitted = polling.poll(connector)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert submitted == arguments.rows == Job.objects.filter(connector=connector).count()
    print(f"{arguments.rows} rows, {size_mb:.0f} MB CSV: read and submitted in {seconds:.1f} s")
    print(
        f"{arguments.rows / seconds:.0f} rows/s; "
        f"peak memory {peak:.0f} MB (before: {before:.0f} MB)"
    )


if __name__ == "__main__":
    main()
