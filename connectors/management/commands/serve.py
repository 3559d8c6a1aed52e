"""`make run`: migrate, seed, then web server + worker + scheduler until Ctrl-C.

Without REDIS_URL an embedded redis-server is started (and shared with the children through
REDIS_URL); without DATABASE_URL the database is SQLite under var/.
"""

import os
import secrets
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from connectors import audit, broker
from connectors.demo import seed_demo


class Command(BaseCommand):
    help = "Run Interlock on one machine: web server, worker and scheduler."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1:8000")
        parser.add_argument("--workers", type=int, default=1, help="RQ worker processes.")

    def handle(self, *args, bind, workers, **options):
        call_command("migrate", interactive=False, verbosity=0)
        self.ensure_admin()
        self.seed(bind)
        environment = {**os.environ, "REDIS_URL": broker.redis_url()}
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        commands = {
            "web": [
                sys.executable,
                "-m",
                "gunicorn",
                "console.wsgi",
                "--bind",
                bind,
                "--workers",
                "2",
                "--threads",
                "4",
                "--access-logfile",
                "-",
            ],
            "scheduler": [*manage, "run_scheduler"],
            "sources": [*manage, "run_sources"],
            **{f"worker-{n}": [*manage, "run_worker"] for n in range(1, workers + 1)},
        }
        children = {
            name: subprocess.Popen(command, env=environment, cwd=settings.BASE_DIR)
            for name, command in commands.items()
        }
        self.stdout.write(
            self.style.SUCCESS(
                f"\nInterlock is running:\n  admin   http://{bind}/admin/\n"
                f"  API     http://{bind}/api/v1/  (docs: http://{bind}/api/v1/docs/)\n"
                f"  health  http://{bind}/api/v1/health/\nPress Ctrl-C to stop.\n"
            )
        )
        self.supervise(children)

    def ensure_admin(self) -> None:
        users = get_user_model().objects
        if users.filter(is_superuser=True).exists():
            return
        password = secrets.token_urlsafe(12)
        user = users.create_superuser("admin", "admin@localhost", password)
        audit.record("user.create", audit.Actor.system("serve"), user)
        self.stdout.write(
            self.style.WARNING(
                f"Created admin user 'admin' with password: {password}\n"
                "(shown once; change it in the admin)"
            )
        )

    def seed(self, bind: str) -> None:
        seeded = seed_demo()
        if seeded is None:
            return
        connector, key = seeded
        self.stdout.write(
            self.style.WARNING(
                f"Seeded the demo connector '{connector.slug}' (demo provider: no AI is called).\n"
                f"Its API key (shown once): {key}\nTry it:\n"
                f"  curl -s -X POST http://{bind}/api/v1/connectors/demo/records/?wait=5 \\\n"
                f"    -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n"
                '    -d \'{"text": "Invoice 42: 3 chairs", "customer": '
                '{"email": "a@b.example"}}\'\n'
            )
        )

    def supervise(self, children: dict[str, subprocess.Popen]) -> None:
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    self.stderr.write(f"{name} exited with {child.returncode}; stopping")
                    stopping = True
            time.sleep(0.5)
        self.stdout.write("stopping…")
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        self.stdout.write("stopped")
