from django import template

from connectors import dashboard

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
    return "—" if value is None else f"{value:.1%}"
