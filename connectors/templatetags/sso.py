from django import template
from django.conf import settings

from connectors import sso

register = template.Library()


@register.simple_tag
def single_sign_on() -> dict | None:
    """What the login page needs to offer single sign-on, or None when it is off."""
    return {"provider_name": settings.OIDC_PROVIDER_NAME} if sso.is_enabled() else None
