"""Budgets: a connector's tokens and money per day or month, with their use this period."""

from django.contrib import admin

from connectors import budgets
from connectors.admin.base import AuditedModelAdmin
from connectors.models import Budget


@admin.register(Budget)
class BudgetAdmin(AuditedModelAdmin):
    list_display = [
        "__str__",
        "connector",
        "provider",
        "period",
        "max_tokens",
        "max_cost",
        "when_exhausted",
        "use_this_period",
    ]
    list_filter = ["period", "when_exhausted"]
    list_select_related = ["connector__provider", "provider"]
    fields = ["connector", "provider", "period", "max_tokens", "max_cost", "when_exhausted"]

    def get_queryset(self, request):
        self._uses = {use.budget.pk: use for use in budgets.current_use()}
        return super().get_queryset(request)

    @admin.display(description="use this period")
    def use_this_period(self, budget: Budget) -> str:
        use = getattr(self, "_uses", {}).get(budget.pk)
        if use is None:
            return "—"
        return f"{use.percent}% ({use.tokens} tokens, {use.cost:.4f} {use.currency})"
