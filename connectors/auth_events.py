"""Logins, logouts and failed logins go into the audit trail.

Django announces these only through signals, so this is the one place we listen to signals.
A failed login records the username tried, never the password.
"""

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed

from connectors import audit
from connectors.models import AuditEvent


def ip_of(request) -> str | None:
    return request.META.get("REMOTE_ADDR") if request is not None else None


def on_login(sender, request, user, **kwargs) -> None:
    audit.record("auth.login", audit.Actor.user(user, ip_of(request)))


def on_logout(sender, request, user, **kwargs) -> None:
    if user is not None:
        audit.record("auth.logout", audit.Actor.user(user, ip_of(request)))


def on_login_failed(sender, credentials, request=None, **kwargs) -> None:
    username = str(credentials.get("username", ""))[:150]
    actor = audit.Actor(AuditEvent.ActorType.USER, username or "(no username)", ip_of(request))
    audit.record("auth.login_failed", actor)


def connect() -> None:
    user_logged_in.connect(on_login, dispatch_uid="interlock-login")
    user_logged_out.connect(on_logout, dispatch_uid="interlock-logout")
    user_login_failed.connect(on_login_failed, dispatch_uid="interlock-login-failed")
