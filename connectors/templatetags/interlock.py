import math

from django import template

from connectors import dashboard
from connectors.api.throttling import intake_limit

register = template.Library()


@register.simple_tag(takes_context=True)
def interlock_dashboard(context):
    """The dashboard for the admin index, for users who may see jobs."""
    request = context["request"]
    if not request.user.has_perm("connectors.view_job"):
        return None
    return dashboard.build(request.GET.get("window", "day"))


@register.filter
def percent(value) -> str:
    """Rounded down: 1,999 of 2,000 is 99.9 %, never the 100.0 % that hides a dead job."""
    if value is None:
        return "—"
    return f"{math.floor(value * 1000 + 1e-9) / 10:.1f}%"  # the epsilon: 0.999 * 1000 < 999


@register.filter
def age(seconds) -> str:
    """Seconds as the coarsest two units a person reads at a glance (3 h 12 min)."""
    if seconds is None:
        return "—"
    minutes, hours = int(seconds // 60), int(seconds // 3600)
    if hours >= 24:
        return f"{hours // 24} d {hours % 24} h"
    if hours:
        return f"{hours} h {minutes % 60} min"
    return f"{minutes} min" if minutes else f"{int(seconds)} s"


@register.filter
def requests_per_minute(connector) -> str:
    limit = intake_limit(connector)
    return f"{limit} requests per minute (all keys together)" if limit else "no limit"


@register.filter
def duration_label(step) -> str:
    """A bucket's length as a chart legend says it: minute, hour, 6 hours."""
    if not step:
        return "interval"
    minutes = int(step.total_seconds() // 60)
    if minutes % 60:
        return "minute" if minutes == 1 else f"{minutes} minutes"
    hours = minutes // 60
    return "hour" if hours == 1 else f"{hours} hours"
