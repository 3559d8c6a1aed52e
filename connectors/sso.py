"""Single sign-on for the console: OpenID Connect (mozilla-django-oidc), the identity provider's
groups mapped to our roles on every login.

Off unless OIDC_ISSUER is set. The endpoints come from the issuer's discovery document, read on
the first sign-in rather than at start-up, so a provider that is down never stops the console or
its local accounts. A user signed in this way has no password here and is found by the
OIDC_USERNAME_CLAIM; a local account of the same name is never taken over.
"""

import logging
from functools import cache

import jwt
import requests
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import Group
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpResponseRedirect
from django.urls import path, reverse
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from connectors import audit
from connectors.auth_events import ip_of
from connectors.models import AuditEvent
from connectors.roles import ROLE_KEYS

logger = logging.getLogger(__name__)
ENDPOINTS = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}


class SignInRefused(Exception):
    """A sign-in that must not complete; the message is shown to the user and audited."""


def is_enabled() -> bool:
    return bool(settings.OIDC_ISSUER)


@cache
def discovery(issuer: str) -> dict:
    """The provider's metadata (failures are not cached: the next sign-in tries again)."""
    url = f"{issuer}/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        metadata = response.json()
    except (requests.RequestException, ValueError) as error:
        logger.warning("OIDC discovery at %s failed: %s", url, type(error).__name__)
        message = f"{settings.OIDC_PROVIDER_NAME} cannot be reached; try again."
        raise SignInRefused(message) from None
    if metadata.get("issuer", "").rstrip("/") != issuer:
        raise SignInRefused(f"{url} names another issuer; check OIDC_ISSUER.")
    return metadata


def endpoint(name: str) -> str:
    """An endpoint from the settings, else from discovery."""
    configured = getattr(settings, name)
    return configured or discovery(settings.OIDC_ISSUER).get(ENDPOINTS[name], "")


def claim(claims: dict, dotted: str):
    """A claim by name, or by a dotted path into nested claims (realm_access.roles)."""
    value = claims
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def roles_for(claims: dict) -> list[str]:
    """The role groups the provider's groups grant, in ROLE_KEYS order."""
    groups = claim(claims, settings.OIDC_GROUPS_CLAIM) or []
    groups = [groups] if isinstance(groups, str) else groups
    keys = {key for group in groups for key in settings.OIDC_ROLE_MAP.get(str(group), [])}
    return [name for key, name in ROLE_KEYS.items() if key in keys]


def refuse(request, message: str, username: str = "") -> None:
    """Audit a refused sign-in; the callback shows `message` on the login page."""
    request.sso_refusal = message
    shown = username or "(single sign-on)"
    actor = audit.Actor(AuditEvent.ActorType.USER, shown[:150], ip_of(request))
    audit.record("auth.sso_refused", actor, changes={"reason": message})


class RoleMappingBackend(OIDCAuthenticationBackend):
    """Creates or updates the user and sets their roles from the groups claim on every login."""

    def __init__(self, *args, **kwargs):
        # Not super().__init__: it reads the endpoints, which would ask the provider on every
        # local password login too. They are read when a sign-in comes back (authenticate).
        from django.contrib.auth import get_user_model

        self.UserModel = get_user_model()

    def authenticate(self, request, **kwargs):
        if request is None or "nonce" not in kwargs or not is_enabled():
            return None  # a local login, or single sign-on is off
        self.OIDC_OP_TOKEN_ENDPOINT = endpoint("OIDC_OP_TOKEN_ENDPOINT")
        self.OIDC_OP_USER_ENDPOINT = endpoint("OIDC_OP_USER_ENDPOINT")
        self.OIDC_OP_JWKS_ENDPOINT = endpoint("OIDC_OP_JWKS_ENDPOINT")
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET
        self.OIDC_RP_SIGN_ALGO = settings.OIDC_RP_SIGN_ALGO
        self.OIDC_RP_IDP_SIGN_KEY = None
        return super().authenticate(request, **kwargs)

    def raise_token_response_error(self, response):
        """The library's error quotes the provider's answer; ours names only the status."""
        if response.status_code != 200:
            raise SignInRefused(
                f"{settings.OIDC_PROVIDER_NAME} refused the sign-in code "
                f"(HTTP {response.status_code}); try again."
            )

    def verify_token(self, token, **kwargs):
        """Also check what the library leaves out: the token is ours and from our issuer."""
        payload = super().verify_token(token, **kwargs)
        audience = payload.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience or []
        if settings.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation("the ID token was issued to another client (aud)")
        if str(payload.get("iss", "")).rstrip("/") != settings.OIDC_ISSUER:
            raise SuspiciousOperation("the ID token comes from another issuer (iss)")
        return payload

    def get_userinfo(self, access_token, id_token, payload):
        """The ID token's claims, completed by the userinfo endpoint (groups may be in either)."""
        return {**payload, **super().get_userinfo(access_token, id_token, payload)}

    def verify_claims(self, claims) -> bool:
        return bool(self.username_of(claims))

    def username_of(self, claims) -> str:
        return str(claim(claims, settings.OIDC_USERNAME_CLAIM) or "")[:150]

    def filter_users_by_claims(self, claims):
        return self.UserModel.objects.filter(username=self.username_of(claims))

    def create_user(self, claims):
        user = self.UserModel(username=self.username_of(claims))
        user.set_unusable_password()
        return self.update_user(user, claims)

    def update_user(self, user, claims):
        username = self.username_of(claims)
        if user.pk and user.has_usable_password():
            refuse(
                self.request,
                f"A local account named {username!r} exists; single sign-on never takes it "
                "over. Sign in with its password, or ask an administrator to rename it.",
                username,
            )
            return None
        roles = roles_for(claims)
        user.email = str(claims.get("email") or "")[:254]
        user.first_name = str(claims.get("given_name") or "")[:150]
        user.last_name = str(claims.get("family_name") or "")[:150]
        user.is_staff = True
        user.save()
        held = user.groups.filter(name__in=ROLE_KEYS.values())
        previous = set(held.values_list("name", flat=True))
        user.groups.remove(*Group.objects.filter(name__in=previous - set(roles)))
        user.groups.add(*Group.objects.filter(name__in=roles))
        changes = {"roles": roles, "removed": sorted(previous - set(roles))}
        if not roles:
            refuse(
                self.request,
                f"{username!r} is in none of the groups that grant a role here; ask your "
                "administrator for access (OIDC_ROLE_MAP).",
                username,
            )
            return None
        actor = audit.Actor.user(user, ip_of(self.request))
        audit.record("auth.sso_roles", actor, user, changes=changes)
        return user


class LoginView(OIDCAuthenticationRequestView):
    """Starts a sign-in: redirects to the provider with state, nonce and a PKCE challenge."""

    def __init__(self, *args, **kwargs):
        super(OIDCAuthenticationRequestView, self).__init__(*args, **kwargs)

    def get(self, request):
        if not is_enabled():
            raise Http404("Single sign-on is not configured.")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = endpoint("OIDC_OP_AUTHORIZATION_ENDPOINT")
        except SignInRefused as error:
            messages.error(request, str(error))
            return HttpResponseRedirect(reverse("admin:login"))
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        return super().get(request)


class CallbackView(OIDCAuthenticationCallbackView):
    """The provider's redirect back: any refusal lands on the login page with its reason."""

    def get(self, request):
        if not is_enabled():
            raise Http404("Single sign-on is not configured.")
        try:
            return super().get(request)
        except SignInRefused as error:
            refuse(request, str(error))
        except SuspiciousOperation as error:
            # A state that this browser did not start, a nonce or signature that does not match.
            logger.warning("OIDC sign-in refused: %s", error)
            refuse(request, f"The sign-in answer was refused: {error}")
        except (
            requests.RequestException,
            jwt.PyJWTError,
            ValueError,
            KeyError,
            TypeError,
            AttributeError,  # an answer of the wrong shape ([] where an object belongs)
        ) as error:
            logger.warning("OIDC sign-in failed: %s", type(error).__name__)
            refuse(request, f"{settings.OIDC_PROVIDER_NAME} sent an answer we cannot use.")
        return self.login_failure()

    def login_failure(self):
        if not hasattr(self.request, "sso_refusal"):  # the provider said no, or nothing started
            refuse(self.request, f"{settings.OIDC_PROVIDER_NAME} did not sign you in.")
        messages.error(self.request, self.request.sso_refusal)
        return HttpResponseRedirect(reverse("admin:login"))


app_name = "sso"
urlpatterns = [
    path("login/", LoginView.as_view(), name="login"),
    path("callback/", CallbackView.as_view(), name="callback"),
]
