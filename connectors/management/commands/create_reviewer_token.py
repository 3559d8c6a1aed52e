from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from connectors import audit
from connectors.models import ReviewerToken


class Command(BaseCommand):
    help = "Create a review API token for a user who may review; the token is printed once."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="The reviewer's username.")
        parser.add_argument("--name", default="", help="A label, e.g. the tool that uses it.")

    def handle(self, *args, **options):
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"no user named {options['user']!r}")
        if not user.has_perm("connectors.change_review"):
            raise CommandError(
                f"{user} may not review: add them to the Reviewer or Integration admin group"
            )
        token, plain = ReviewerToken.issue(user, name=options["name"])
        audit.record(
            "reviewer_token.create",
            audit.Actor.system("create_reviewer_token"),
            token,
            changes={"user": user.get_username()},
        )
        self.stdout.write(f"Review API token for {user} (shown once, store it now):\n{plain}")
