"""Evidence bundles at scale: how big one is, how long exporting and verifying take.

    python bench/evidence.py [--jobs 2000] [--noise 10] [--checkpoint-every 5000]

Submits --jobs records to a demo connector, with --noise unrelated audit events after each (other
activity on the trail) and a signed checkpoint every --checkpoint-every events, as the scheduler
would make them. Then exports one job and the whole connector and runs tools/verify_evidence.py
on each, printing sizes and times. Also prints how fast the trail appends (both chains).
"""

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, make_demo_connector, prepare_environment


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--noise", type=int, default=10)
    parser.add_argument("--checkpoint-every", type=int, default=5000)
    arguments = parser.parse_args()
    prepare_environment()

    from django.core.management import call_command

    from connectors import audit, checkpoints, jobs
    from connectors.models import AuditEvent, Job
    from connectors.work import Submission

    connector = make_demo_connector("evidence")
    actor = audit.Actor.system("bench")
    started, since_checkpoint = time.perf_counter(), 0
    for number in range(arguments.jobs):
        jobs.submit(
            connector, [Submission({"text": f"record {number}"}, "", f"REF-{number}")], actor
        )
        audit.record_many(
            audit.Entry("bench.noise", actor, changes={"n": n}) for n in range(arguments.noise)
        )
        since_checkpoint += 1 + arguments.noise
        if since_checkpoint >= arguments.checkpoint_every:
            checkpoints.create()
            since_checkpoint = 0
    elapsed = time.perf_counter() - started
    events = AuditEvent.objects.count()
    print(f"trail: {events:,} events appended in {elapsed:.1f} s ({events / elapsed:,.0f}/s)")

    work = Path(tempfile.mkdtemp(prefix="interlock-evidence-"))
    keys = work / "keys.json"
    out = io.StringIO()
    call_command("audit_public_key", stdout=out)
    keys.write_text(out.getvalue())
    middle = Job.objects.order_by("created_at")[arguments.jobs // 2]
    for label, selection in (
        ("one job", {"job": str(middle.id)}),
        (f"connector ({arguments.jobs:,} jobs)", {"connector": "evidence"}),
    ):
        path = work / "bundle.json"
        started = time.perf_counter()
        call_command("export_evidence", output=str(path), stderr=io.StringIO(), **selection)
        exported = time.perf_counter() - started
        bundle = json.loads(path.read_text())
        started = time.perf_counter()
        result = subprocess.run(
            [
                sys.executable,
                str(ROOT / "tools" / "verify_evidence.py"),
                str(path),
                "--key",
                str(keys),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        verified = time.perf_counter() - started
        assert result.returncode == 0, result.stderr
        print(
            f"{label}: {len(bundle['events']):,} events "
            f"({sum('digest' not in e for e in bundle['events']):,} in full), "
            f"{len(bundle['checkpoints'])} checkpoints, {path.stat().st_size / 1e6:.2f} MB; "
            f"export {exported:.2f} s, verify {verified:.2f} s"
        )


if __name__ == "__main__":
    main()
