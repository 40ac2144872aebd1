"""Alerts and alert rules in the admin (registered when reports/admin.py imports this module).

Alerts are read-only here: acknowledging and resolving are dialogs (common.admin), a GET only shows the
dialog and the change is its POST; reports.alerts.services checks the permission again.
"""

from django import forms
from django.contrib import admin, messages
from django.shortcuts import render
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from unfold.admin import ModelAdmin
from unfold.contrib.filters.admin import ChoicesDropdownFilter, RangeDateTimeFilter, RelatedDropdownFilter
from unfold.decorators import action, display
from unfold.forms import BaseDialogForm
from unfold.widgets import UnfoldAdminTextareaWidget

from common.admin import confirm_dialog, dialog_redirect
from reports.alerts.checks import KIND_HELP
from reports.alerts.services import (
    ACKNOWLEDGE_PERMISSION,
    RESOLVE_PERMISSION,
    AlertError,
    alert_acknowledge,
    alert_resolve,
    describe_figures,
)
from reports.models import ALERT_ACTIVE_STATUSES, Alert, AlertRule, AlertStatus

ALERT_COLOURS = {
    AlertStatus.OPEN: "danger",
    AlertStatus.ACKNOWLEDGED: "warning",
    AlertStatus.RESOLVED: "success",
}
READ_ONLY_FORM = {"show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False}


class AlertResolveForm(BaseDialogForm):
    note = forms.CharField(
        max_length=500,
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 3}),
        label="What was done",
        help_text="Kept on the alert and sent to everyone it was sent to.",
    )


class ActiveFilter(admin.SimpleListFilter):
    title = "unresolved"
    parameter_name = "active"

    def lookups(self, request, model_admin):
        return [("yes", "Open or acknowledged")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(status__in=ALERT_ACTIVE_STATUSES)
        return queryset


def _figures_table(figures: dict):
    lines = describe_figures(figures or {})
    return format_html_join("", "<div>{}</div>", ((line,) for line in lines)) or "–"


@admin.register(AlertRule)
class AlertRuleAdmin(ModelAdmin):
    list_display = [
        "name",
        "kind",
        "show_enabled",
        "window_minutes",
        "min_volume",
        "threshold",
        "technical_threshold",
        "baseline_points",
        "sms",
        "unresolved",
    ]
    list_filter = [("kind", ChoicesDropdownFilter), "enabled"]
    readonly_fields = ["what_it_watches"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "enabled", "what_it_watches"]}),
        (
            "Condition",
            {
                "fields": [
                    "window_minutes",
                    "min_volume",
                    "threshold",
                    "technical_threshold",
                    "baseline_points",
                    "baseline_days",
                    "grace_seconds",
                ],
                "description": "Rates and shares are fractions: 0.5 is 50%, 0.2 points is 20 points.",
            },
        ),
        ("Alerts", {"fields": ["remind_after_minutes", "resolve_after_minutes", "sms"]}),
    ]

    @display(description="Enabled", label={"On": "success", "Off": "warning"})
    def show_enabled(self, obj):
        return "On" if obj.enabled else "Off"

    @display(description="Unresolved alerts")
    def unresolved(self, obj):
        count = obj.alerts.filter(status__in=ALERT_ACTIVE_STATUSES).count()
        if not count:
            return "–"
        url = reverse("admin:reports_alert_changelist") + f"?active=yes&rule__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, count)

    @display(description="What it watches")
    def what_it_watches(self, obj):
        return KIND_HELP.get(obj.kind, "Choose a kind and save to read what it watches.")


@admin.register(Alert)
class AlertAdmin(ModelAdmin):
    list_display = ["id", "show_status", "title", "rule", "scope", "opened_at", "last_seen_at", "handled_by"]
    list_filter = [
        ActiveFilter,
        ("status", ChoicesDropdownFilter),
        ("rule", RelatedDropdownFilter),
        ("opened_at", RangeDateTimeFilter),
    ]
    list_filter_submit = True
    list_select_related = ["rule", "acknowledged_by", "resolved_by"]
    search_fields = ["title", "scope"]
    actions_detail = ["acknowledge", "resolve"]
    fieldsets = [
        (None, {"fields": ["rule", "scope", "status", "title"]}),
        ("Figures", {"fields": ["opening_figures", "current_figures"]}),
        (
            "Lifecycle",
            {
                "fields": [
                    "opened_at",
                    "last_seen_at",
                    "clear_since",
                    "reminders_sent",
                    "last_reminded_at",
                    "acknowledged_at",
                    "acknowledged_by",
                    "resolved_at",
                    "resolved_by",
                    "resolution_note",
                ]
            },
        ),
    ]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [name for _title, options in self.fieldsets for name in options["fields"]]

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), **READ_ONLY_FORM}
        return super().changeform_view(request, object_id, form_url, extra_context)

    # --- columns and figures ----------------------------------------------------------------------------
    @display(description="Status", ordering="status", label=ALERT_COLOURS)
    def show_status(self, obj):
        return obj.status, obj.get_status_display()

    @display(description="Handled by")
    def handled_by(self, obj):
        person = obj.resolved_by or obj.acknowledged_by
        return person.get_username() if person else "–"

    @display(description="When it opened")
    def opening_figures(self, obj):
        return _figures_table(obj.figures)

    @display(description="At the last evaluation")
    def current_figures(self, obj):
        return _figures_table(obj.latest_figures)

    # --- actions (offered where they apply; the services check again) -----------------------------------
    @staticmethod
    def _alert_is(object_id, *statuses) -> bool:
        return object_id is None or Alert.objects.filter(pk=object_id, status__in=statuses).exists()

    def has_acknowledge_permission(self, request, object_id=None):
        return request.user.has_perm(ACKNOWLEDGE_PERMISSION) and self._alert_is(object_id, AlertStatus.OPEN)

    def has_resolve_permission(self, request, object_id=None):
        return request.user.has_perm(RESOLVE_PERMISSION) and self._alert_is(object_id, *ALERT_ACTIVE_STATUSES)

    def _page(self, object_id) -> str:
        return reverse("admin:reports_alert_change", args=[object_id])

    @action(
        description="Acknowledge",
        icon="how_to_reg",
        permissions=["acknowledge"],
        dialog=confirm_dialog(
            "Acknowledge this alert",
            "Tells everyone you are on it: reminders stop. It still resolves by itself once its condition "
            "has been clear for a while.",
            "Acknowledge",
        ),
    )
    def acknowledge(self, request, form, object_id):
        try:
            alert = alert_acknowledge(alert_id=int(object_id), actor=request.user)
        except AlertError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Alert #{alert.pk} acknowledged.")
        return dialog_redirect(self._page(object_id))

    @action(
        description="Resolve",
        icon="task_alt",
        permissions=["resolve"],
        dialog=confirm_dialog(
            "Resolve this alert",
            "Closes it with a note of what was done. If its condition still holds, the next evaluation "
            "(within a minute) opens a new alert: acknowledge it instead to say you are on it.",
            "Resolve",
            AlertResolveForm,
        ),
    )
    def resolve(self, request, form, object_id):
        try:
            alert = alert_resolve(alert_id=int(object_id), actor=request.user, note=form.cleaned_data["note"])
        except AlertError as exc:
            form.add_error("note" if exc.field == "note" else None, exc.message)
            dialog = self.resolve.dialog
            return render(
                request,
                "unfold/helpers/dialog.html",
                {"dialog": dialog, "form": form, "form_submit_text": dialog.get("form_submit_text", "")},
            )
        messages.success(request, f"Alert #{alert.pk} resolved.")
        return dialog_redirect(self._page(object_id))
