"""`make run`: migrate, seed, then web server + worker + scheduler until Ctrl-C.

Without REDIS_URL the var dir's embedded redis-server is started; the children join it (one
server per INTERLOCK_VAR_DIR, stopped after the last of its users exits). Without DATABASE_URL
the database is SQLite under var/. The "running" banner appears once the web port answers.
"""

import os
import secrets
import socket
import sys

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from connectors import audit, broker
from connectors.demo import seed_demo
from connectors.supervisor import Supervisor

# A connection that sends nothing for this long, in the middle of a request or idle between
# requests, is closed.
CLIENT_TIMEOUT_SECONDS = 30
WEB_THREADS = 8


def web_command(bind: str, *, client_timeout: int = CLIENT_TIMEOUT_SECONDS) -> list[str]:
    """The web server: waitress, which reads each request whole (headers and body) before a
    thread runs it, so a slow or stalled client holds a socket but none of the threads.

    waitress refuses a body over its own maximum with a plain-text 413 before reading it all.
    It counts chunk framing too, so its maximum is twice ours: Interlock refuses what is near
    its limit (with the JSON error), waitress what is far over it.
    """
    return [
        sys.executable,
        "-m",
        "waitress",
        f"--listen={bind}",
        f"--threads={WEB_THREADS}",
        f"--channel-timeout={client_timeout}",
        "--cleanup-interval=1",  # look for silent connections every second
        f"--max-request-body-size={2 * settings.INTAKE_MAX_BODY_BYTES}",
        "console.wsgi:application",
    ]


def is_answering(bind: str) -> bool:
    host, _, port = bind.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=0.5):
            return True
    except OSError:
        return False


class Command(BaseCommand):
    help = "Run Interlock on one machine: web server, worker and scheduler."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1:8000")
        parser.add_argument("--workers", type=int, default=1, help="RQ worker processes.")

    def handle(self, *args, bind, workers, **options):
        call_command("migrate", interactive=False, verbosity=0)
        self.ensure_admin()
        self.seed(bind)
        broker.redis_url()  # start the embedded server (if any) before the children join it
        environment = {**os.environ, "INTERLOCK_VAR_DIR": str(settings.VAR_DIR)}
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        commands = {
            "web": web_command(bind),
            "scheduler": [*manage, "run_scheduler"],
            "sources": [*manage, "run_sources"],
            **{f"worker-{n}": [*manage, "run_worker"] for n in range(1, workers + 1)},
        }
        supervisor = Supervisor(
            commands, say=self.stderr.write, env=environment, cwd=settings.BASE_DIR
        )
        supervisor.start()
        self.stdout.write(f"Starting; waiting for http://{bind}/ to answer ...")
        supervisor.run(is_ready=lambda: is_answering(bind), on_ready=lambda: self.banner(bind))
        self.stdout.write("stopped")

    def banner(self, bind: str) -> None:
        self.stdout.write(
            self.style.SUCCESS(
                f"\nInterlock is running:\n  admin   http://{bind}/admin/\n"
                f"  API     http://{bind}/api/v1/  (docs: http://{bind}/api/v1/docs/)\n"
                f"  health  http://{bind}/api/v1/health/\nPress Ctrl-C to stop.\n"
            )
        )

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
