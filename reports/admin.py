"""Report subscriptions and their runs in the admin.

Saving or deleting a subscription goes through reports.report_services, which keeps its django-q2
schedule in step in the same transaction. "Send now" is a dialog: a GET shows it, its POST sends.
"""

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from unfold.admin import ModelAdmin, TabularInline
from unfold.contrib.filters.admin import ChoicesDropdownFilter, RangeDateTimeFilter, RelatedDropdownFilter
from unfold.decorators import action, display

from common.admin import ReadOnlyAdminMixin, confirm_dialog, dialog_redirect
from reports.alerts import admin as alerts_admin  # noqa: F401  (registers Alert and AlertRule)
from reports.models import Frequency, ReportFile, ReportRun, ReportSubscription, RunStatus
from reports.periods import NAIROBI
from reports.permissions import can_see_figures
from reports.report_services import (
    ReportSendError,
    parse_addresses,
    report_subscription_delete,
    report_subscription_save,
    report_subscription_send_now,
    validate_addresses,
)

RUN_COLOURS = {RunStatus.RUNNING: "info", RunStatus.SENT: "success", RunStatus.FAILED: "danger"}


class ReportSubscriptionForm(forms.ModelForm):
    class Meta:
        model = ReportSubscription
        fields = [
            "name",
            "frequency",
            "send_at",
            "weekday",
            "file_format",
            "recipients",
            "extra_emails",
            "active",
        ]

    def clean_extra_emails(self):
        text = self.cleaned_data.get("extra_emails", "")
        try:
            validate_addresses(parse_addresses(text))
        except ReportSendError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return text

    def clean(self):
        cleaned = super().clean()
        users = cleaned.get("recipients")
        if users is not None and not users and not parse_addresses(cleaned.get("extra_emails", "")):
            raise forms.ValidationError("Choose at least one staff user or give another address.")
        if users and users.filter(email="").exists():
            raise forms.ValidationError(
                "These users have no email address: "
                + ", ".join(users.filter(email="").values_list("username", flat=True))
            )
        return cleaned


@admin.register(ReportSubscription)
class ReportSubscriptionAdmin(ModelAdmin):
    form = ReportSubscriptionForm
    list_display = ["name", "when", "covers", "file_format", "recipient_count", "show_active", "next_run",
                    "last_run"]  # fmt: skip
    list_filter = ["active", ("frequency", ChoicesDropdownFilter)]
    search_fields = ["name", "extra_emails"]
    filter_horizontal = ["recipients"]
    actions_detail = ["send_now"]
    fieldsets = [
        (None, {"fields": ["name", "active"]}),
        (
            "When (Africa/Nairobi time)",
            {
                "fields": ["frequency", "send_at", "weekday"],
                "description": "Weekday applies to weekly reports.",
            },
        ),
        ("To", {"fields": ["recipients", "extra_emails"]}),
        ("Attachments", {"fields": ["file_format"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("schedule")

    # --- saving goes through the services (schedule in the same transaction) ----------------------------
    def save_model(self, request, obj, form, change):
        report_subscription_save(subscription=obj)

    def delete_model(self, request, obj):
        report_subscription_delete(subscription=obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for subscription in queryset:
                report_subscription_delete(subscription=subscription)

    # --- columns --------------------------------------------------------------------------------------
    @display(description="When", ordering="send_at")
    def when(self, obj):
        at = f"{obj.send_at:%H:%M}"
        if obj.frequency == Frequency.WEEKLY:
            return f"{obj.get_weekday_display()}s at {at}"
        if obj.frequency == Frequency.MONTHLY:
            return f"1st of the month at {at}"
        return f"Every day at {at}"

    @display(description="Covers")
    def covers(self, obj):
        return {"daily": "previous day", "weekly": "previous week", "monthly": "previous month"}[
            obj.frequency
        ]

    @display(description="Recipients")
    def recipient_count(self, obj):
        return obj.recipients.count() + len(parse_addresses(obj.extra_emails))

    @display(description="Active", label={"Active": "success", "Paused": "warning"})
    def show_active(self, obj):
        return "Active" if obj.active else "Paused"

    @display(description="Next run (Nairobi)")
    def next_run(self, obj):
        if not obj.active or obj.schedule is None or obj.schedule.next_run is None:
            return "–"
        return f"{timezone.localtime(obj.schedule.next_run, NAIROBI):%a %-d %b %H:%M}"

    @display(description="Last run")
    def last_run(self, obj):
        run = obj.runs.order_by("-started_at", "-pk").first()
        if run is None:
            return "–"
        url = reverse("admin:reports_reportrun_change", args=[run.pk])
        return format_html('<a href="{}">{} ({:%-d %b %H:%M})</a>', url, run.get_status_display(),
                           timezone.localtime(run.started_at, NAIROBI))  # fmt: skip

    # --- send now -------------------------------------------------------------------------------------
    def has_send_permission(self, request, object_id=None):
        return request.user.has_perm("reports.change_reportsubscription") and can_see_figures(request.user)

    @action(
        description="Send now",
        icon="send",
        permissions=["send"],
        dialog=confirm_dialog(
            "Send this report now",
            "Builds the report of the latest complete period and emails it to the recipients now "
            "(the schedule is not changed).",
            "Send",
        ),
    )
    def send_now(self, request, form, object_id):
        period = report_subscription_send_now(subscription_id=int(object_id), actor=request.user)
        messages.info(
            request, f"The report for {period.label} is being sent; see Report runs for the outcome."
        )
        return dialog_redirect(
            reverse("admin:reports_reportrun_changelist") + f"?subscription__id__exact={object_id}"
        )


class ReportFileInline(TabularInline):
    model = ReportFile
    fields = ["name", "rows", "size", "download", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    @display(description="Download")
    def download(self, obj):
        return format_html('<a href="{}">Download</a>', reverse("reports:file-download", args=[obj.pk]))


@admin.register(ReportRun)
class ReportRunAdmin(ReadOnlyAdminMixin, ModelAdmin):
    """Every run of a report email, failed ones with their error and next attempt. Read-only."""

    list_display = ["started_at", "subscription", "trigger", "period", "attempt", "show_status",
                    "recipient_count", "files", "retry_at"]  # fmt: skip
    list_filter = [
        ("status", ChoicesDropdownFilter),
        ("trigger", ChoicesDropdownFilter),
        ("subscription", RelatedDropdownFilter),
        ("started_at", RangeDateTimeFilter),
    ]
    list_filter_submit = True
    list_select_related = ["subscription"]
    inlines = [ReportFileInline]
    fields = ["subscription", "trigger", "frequency", "period_first", "period_last", "file_format", "attempt",
              "status", "error", "retry_at", "recipients", "attachments", "requested_by", "started_at",
              "finished_at"]  # fmt: skip
    readonly_fields = fields

    @display(description="Status", ordering="status", label=RUN_COLOURS)
    def show_status(self, obj):
        return obj.status, obj.get_status_display()

    @display(description="Period", ordering="period_first")
    def period(self, obj):
        if obj.period_first == obj.period_last:
            return f"{obj.period_first:%-d %b %Y}"
        return f"{obj.period_first:%-d %b} – {obj.period_last:%-d %b %Y}"

    @display(description="Recipients")
    def recipient_count(self, obj):
        return len(obj.recipients or [])

    @display(description="Files")
    def files(self, obj):
        return (
            format_html_join(
                ", ",
                "{} ({})",
                (
                    (item["name"], "linked" if item.get("stored") else "attached")
                    for item in obj.attachments or []
                ),
            )
            or "–"
        )
