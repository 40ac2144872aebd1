from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from unfold.admin import ModelAdmin, TabularInline
from unfold.contrib.filters.admin import ChoicesDropdownFilter, RangeDateTimeFilter
from unfold.decorators import action, display

from audit.admin import AuditTimelineMixin
from common.admin import ContactMaskingMixin, ReadOnlyAdminMixin, confirm_dialog, dialog_redirect
from exports.admin import ExportListMixin
from exports.columns import ExportColumn
from notifications import services
from notifications.context import CONTEXT_DOCS
from notifications.exceptions import NotificationError
from notifications.models import (
    MessageTemplate,
    Notification,
    NotificationAttempt,
    NotificationRule,
    NotificationStatus,
)
from notifications.segments import count_segments
from notifications.selectors import message_template_preview
from orders.models import Order
from payments.models import Payment

NS = NotificationStatus
STATUS_COLOURS = {
    NS.QUEUED: "info",
    NS.SENDING: "info",
    NS.SENT: "success",
    NS.DELIVERED: "success",
    NS.FAILED: "danger",
    NS.REJECTED: "danger",
    NS.UNKNOWN: "warning",
}

# The columns of the exported list (exports.columns). The recipient is a phone number or an email address.
NOTIFICATION_EXPORT_COLUMNS = (
    ExportColumn("Notification ID", "id", "number"),
    ExportColumn("Created (Nairobi)", "created_at", "datetime"),
    ExportColumn("Event", "event", "label"),
    ExportColumn("Channel", "channel", "label"),
    ExportColumn("Recipient", "recipient", "contact"),
    ExportColumn("Status", "status", "label"),
    ExportColumn("Attempts", "attempts", "number"),
    ExportColumn("Order reference", "order__reference"),
    ExportColumn("Provider", "provider"),
    ExportColumn("Provider message ID", "provider_message_id"),
    ExportColumn("Cost", "cost", "money"),
    ExportColumn("Sent (Nairobi)", "sent_at", "datetime"),
    ExportColumn("Delivered (Nairobi)", "delivered_at", "datetime"),
    ExportColumn("Last error", "last_error", width=32),
)


class NotificationAttemptInline(TabularInline):
    model = NotificationAttempt
    fields = ["created_at", "number", "outcome", "provider", "detail", "duration_ms"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Notification)
class NotificationAdmin(
    ExportListMixin, AuditTimelineMixin, ContactMaskingMixin, ReadOnlyAdminMixin, ModelAdmin
):
    masked_contacts = {"recipient_masked": "recipient"}
    list_display = [
        "id",
        "created_at",
        "event",
        "channel",
        "recipient_masked",
        "show_status",
        "attempts",
        "order_link",
        "next_attempt_at",
    ]
    list_filter = [
        ("channel", ChoicesDropdownFilter),
        ("status", ChoicesDropdownFilter),
        ("event", ChoicesDropdownFilter),
        ("created_at", RangeDateTimeFilter),
    ]
    list_filter_submit = True
    # Phone numbers are searched in full (2547XXXXXXXX) and shown masked unless one may see them in full.
    search_fields = ["order__reference", "recipient", "payment__mpesa_receipt_number", "provider_message_id"]
    list_select_related = ["order"]
    show_full_result_count = False
    export_columns = NOTIFICATION_EXPORT_COLUMNS
    inlines = [NotificationAttemptInline]
    actions = ["resend_selected"]
    actions_detail = ["resend"]
    fieldsets = [
        (None, {"fields": ["event", "channel", "recipient_masked", "language", "show_status", "dedupe_key"]}),
        ("Message", {"fields": ["template", "subject", "body", "html_body"]}),
        (
            "Delivery",
            {
                "fields": [
                    "provider",
                    "provider_message_id",
                    "provider_status",
                    "cost",
                    "cost_currency",
                    "attempts",
                    "uncertain_attempts",
                    "last_error",
                    "next_attempt_at",
                ]
            },
        ),
        ("Links", {"fields": ["payment", "order", "refund_id"]}),
        (
            "Times",
            {
                "fields": [
                    "created_at",
                    "sent_at",
                    "delivered_at",
                    "failed_at",
                    "updated_at",
                    "resend_count",
                    "resent_by",
                    "resent_at",
                ]
            },
        ),
    ]

    def get_readonly_fields(self, request, obj=None):
        return [f for fieldset in self.get_fieldsets(request, obj) for f in fieldset[1]["fields"]]

    def has_resend_permission(self, request, object_id=None):
        return request.user.has_perm("notifications.resend_notification")

    @display(description="Recipient")
    def recipient_masked(self, obj):
        return obj.masked_recipient

    @display(description="Status", ordering="status", label=STATUS_COLOURS)
    def show_status(self, obj):
        return obj.status, obj.get_status_display()

    @display(description="Order", ordering="order__reference")
    def order_link(self, obj):
        if obj.order_id is None:
            return "-"
        url = reverse("admin:orders_order_change", args=[obj.order_id])
        return format_html('<a href="{}">{}</a>', url, obj.order.reference)

    def _resend(self, request, notification_id) -> bool:
        try:
            services.notification_resend(notification_id=int(notification_id), actor=request.user)
        except NotificationError as exc:
            messages.warning(request, exc.message)
            return False
        return True

    @action(
        description="Send again",
        icon="send",
        permissions=["resend"],
        dialog=confirm_dialog(
            "Send this message again",
            "It is queued and sent by the worker with a fresh round of attempts.",
            "Send",
        ),
    )
    def resend(self, request, form, object_id):
        if self._resend(request, object_id):
            messages.success(request, f"Notification #{object_id} queued to be sent again.")
        return dialog_redirect(reverse("admin:notifications_notification_change", args=[object_id]))

    @action(description="Send the selected messages again", permissions=["resend"])
    def resend_selected(self, request, queryset):
        count = sum(self._resend(request, pk) for pk in queryset.values_list("pk", flat=True))
        messages.success(request, f"{count} message(s) queued to be sent again.")


@admin.register(NotificationRule)
class NotificationRuleAdmin(ModelAdmin):
    list_display = ["event", "channel", "enabled", "updated_at"]
    list_editable = ["enabled"]
    list_filter = ["channel", "enabled"]
    fields = ["event", "channel", "enabled"]

    def get_readonly_fields(self, request, obj=None):
        return ["event", "channel"] if obj else []


@admin.register(MessageTemplate)
class MessageTemplateAdmin(ModelAdmin):
    list_display = ["event", "channel", "language", "sms_size", "updated_at", "updated_by"]
    list_filter = [("event", ChoicesDropdownFilter), "channel", "language"]
    search_fields = ["body", "subject"]
    fields = ["event", "channel", "language", "subject", "body", "html_body", "variables"]
    readonly_fields = ["variables", "updated_at", "updated_by"]
    change_form_outer_after_template = "notifications/admin/template_preview.html"

    def save_model(self, request, obj, form, change):
        obj.updated_by = request.user
        super().save_model(request, obj, form, change)

    @display(description="Size of the sample SMS")
    def sms_size(self, obj):
        if obj.channel != "sms":
            return "-"
        try:
            return count_segments(message_template_preview(template=obj).rendered.text).describe()
        except Exception:
            return "?"

    @display(description="Variables you can use")
    def variables(self, obj):
        rows = format_html_join(
            "", "<tr><td><code>{{{{ {} }}}}</code></td><td>{}</td></tr>", sorted(CONTEXT_DOCS.items())
        )
        return format_html('<table class="text-sm">{}</table>', rows)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        template = MessageTemplate.objects.filter(pk=object_id).first()
        if template is not None:
            try:
                payment_id = int(request.GET.get("preview_payment") or 0) or None
            except ValueError:
                payment_id = None
            try:
                extra_context["template_preview"] = message_template_preview(
                    template=template, payment_id=payment_id
                )
            except Exception as exc:  # an old row saved before validation existed
                extra_context["template_preview_error"] = str(exc)
        return super().change_view(request, object_id, form_url, extra_context)


# --- messages on the payment and order pages ------------------------------------------------------
class NotificationInline(ContactMaskingMixin, TabularInline):
    model = Notification
    masked_contacts = {"recipient_masked": "recipient"}
    fields = ["created_at", "event", "channel", "recipient_masked", "status", "attempts", "last_error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name = "message"
    verbose_name_plural = "messages sent"
    ordering = ["-created_at", "-id"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @display(description="Recipient")
    def recipient_masked(self, obj):
        return obj.masked_recipient


def _add_inline(model, inline) -> None:
    """Add the messages inline to another app's admin: payments must never import notifications, and the
    orders admin stays unaware of it, so this app extends their registered admins instead."""
    if not admin.site.is_registered(model):
        return
    base = type(admin.site.get_model_admin(model))
    if inline in base.inlines:
        return
    extended = type(
        base.__name__, (base,), {"inlines": [*base.inlines, inline], "__module__": base.__module__}
    )
    admin.site.unregister(model)
    admin.site.register(model, extended)


_add_inline(Payment, NotificationInline)
_add_inline(Order, NotificationInline)
