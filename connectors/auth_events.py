"""Logins, logouts and failed logins go into the audit trail.

Django announces these only through signals, so this is the one place we listen to signals.
A failed login records the account tried, never the password.
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed

from connectors import audit, crypto
from connectors.models import AuditEvent


def ip_of(request) -> str | None:
    return request.META.get("REMOTE_ADDR") if request is not None else None


def on_login(sender, request, user, **kwargs) -> None:
    audit.record("auth.login", audit.Actor.user(user, ip_of(request)))


def on_logout(sender, request, user, **kwargs) -> None:
    if user is not None:
        audit.record("auth.logout", audit.Actor.user(user, ip_of(request)))


def on_login_failed(sender, credentials, request=None, **kwargs) -> None:
    """Name the account that was tried if it exists. A name that matches no account is often a
    password typed into the wrong box: it is kept only as a keyed digest (enough to see the same
    unknown name tried again), because audit events are never deleted."""
    username = str(credentials.get("username", ""))[:150]
    if not username:
        shown = "(no username)"
    elif get_user_model().objects.filter(username=username).exists():
        shown = username
    else:
        shown = f"(unknown user {crypto.audit_mac(username.encode())[:12]})"
    actor = audit.Actor(AuditEvent.ActorType.USER, shown, ip_of(request))
    audit.record("auth.login_failed", actor)


def connect() -> None:
    user_logged_in.connect(on_login, dispatch_uid="interlock-login")
    user_logged_out.connect(on_logout, dispatch_uid="interlock-logout")
    user_login_failed.connect(on_login_failed, dispatch_uid="interlock-login-failed")
