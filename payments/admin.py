from django.contrib import admin, messages
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.html import format_html
from unfold.admin import ModelAdmin, TabularInline
from unfold.contrib.filters.admin import ChoicesDropdownFilter, RangeDateTimeFilter
from unfold.decorators import action, display

from payments import services
from payments.exceptions import PaymentError
from payments.models import CallbackInbox, EventSource, InboxStatus, Payment, PaymentEvent, PaymentStatus

STATUS_COLOURS = {
    PaymentStatus.PENDING: "info",
    PaymentStatus.INITIATED: "info",
    PaymentStatus.COMPLETED: "success",
    PaymentStatus.FAILED: "danger",
    PaymentStatus.PENDING_DELIVERY: "warning",
    PaymentStatus.NEEDS_REVIEW: "warning",
    PaymentStatus.REFUNDED: "info",
    PaymentStatus.PARTIALLY_REFUNDED: "info",
}
INBOX_COLOURS = {
    InboxStatus.RECEIVED: "info",
    InboxStatus.PROCESSED: "success",
    InboxStatus.DUPLICATE: "info",
    InboxStatus.UNMATCHED: "warning",
    InboxStatus.REJECTED: "danger",
    InboxStatus.FAILED: "danger",
}


class ReadOnlyAdminMixin:
    """History is evidence: nobody edits or deletes it in the admin."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class PaymentEventInline(ReadOnlyAdminMixin, TabularInline):
    model = PaymentEvent
    fields = ["created_at", "kind", "source", "actor", "from_status", "to_status", "message"]
    readonly_fields = fields
    extra = 0
    ordering = ["created_at", "id"]


@admin.register(Payment)
class PaymentAdmin(ModelAdmin):
    list_display = [
        "id",
        "order_link",
        "method",
        "show_status",
        "amount",
        "masked_phone",
        "mpesa_receipt_number",
        "result_code",
        "failure_class",
        "created_at",
    ]
    list_filter = [
        ("status", ChoicesDropdownFilter),
        ("method", ChoicesDropdownFilter),
        ("failure_class", ChoicesDropdownFilter),
        ("created_at", RangeDateTimeFilter),
    ]
    list_filter_submit = True
    search_fields = ["mpesa_receipt_number", "checkout_request_id", "order__reference", "phone"]
    list_select_related = ["order"]
    inlines = [PaymentEventInline]
    actions_detail = ["query_now", "mark_collected"]
    date_hierarchy = "created_at"
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "order",
                    "method",
                    "status",
                    "amount",
                    "currency",
                    "masked_phone",
                    "account_reference",
                ]
            },
        ),
        (
            "M-Pesa",
            {
                "fields": [
                    "merchant_request_id",
                    "checkout_request_id",
                    "mpesa_receipt_number",
                    "receipt_pending",
                    "paid_amount",
                    "transaction_date",
                    "result_code",
                    "result_desc",
                    "failure_class",
                    "review_reason",
                    "refunded_amount",
                    "query_count",
                    "next_query_at",
                ]
            },
        ),
        ("Times", {"fields": ["created_at", "initiated_at", "completed_at", "failed_at", "updated_at"]}),
    ]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        # Status and money only change through the services (actions below), never by editing fields.
        return [f for fieldset in self.fieldsets for f in fieldset[1]["fields"]]

    @display(description="Status", ordering="status", label=STATUS_COLOURS)
    def show_status(self, obj):
        return obj.status, obj.get_status_display()

    @display(description="Order", ordering="order__reference")
    def order_link(self, obj):
        url = reverse("admin:orders_order_change", args=[obj.order_id])
        return format_html('<a href="{}">{}</a>', url, obj.order.reference)

    @display(description="Phone")
    def masked_phone(self, obj):
        return obj.masked_phone

    @action(description="Ask M-Pesa now", icon="sync", permissions=["change"])
    def query_now(self, request, object_id):
        payment = services.payment_query_status(
            payment_id=int(object_id), source=EventSource.QUERY, actor=request.user
        )
        messages.info(request, f"Payment #{payment.pk} is {payment.get_status_display()}.")
        return redirect(reverse("admin:payments_payment_change", args=[object_id]))

    @action(description="Cash collected", icon="payments", permissions=["change"])
    def mark_collected(self, request, object_id):
        try:
            services.payment_mark_collected(payment_id=int(object_id), actor=request.user)
            messages.success(request, "Cash on delivery recorded as collected.")
        except PaymentError as exc:
            messages.error(request, exc.message)
        return redirect(reverse("admin:payments_payment_change", args=[object_id]))


@admin.register(PaymentEvent)
class PaymentEventAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["created_at", "payment", "kind", "source", "actor", "from_status", "to_status", "message"]
    list_filter = [("kind", ChoicesDropdownFilter), ("source", ChoicesDropdownFilter)]
    search_fields = ["payment__mpesa_receipt_number", "payment__checkout_request_id", "message"]
    list_select_related = ["payment", "actor"]
    readonly_fields = [f.name for f in PaymentEvent._meta.fields]


@admin.register(CallbackInbox)
class CallbackInboxAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = [
        "id",
        "received_at",
        "kind",
        "show_status",
        "correlation_id",
        "payment",
        "source_ip",
        "body_size",
    ]
    list_filter = [("status", ChoicesDropdownFilter), ("kind", ChoicesDropdownFilter)]
    search_fields = ["correlation_id", "body"]
    readonly_fields = [f.name for f in CallbackInbox._meta.fields]
    actions_detail = ["reprocess"]

    @display(description="Status", ordering="status", label=INBOX_COLOURS)
    def show_status(self, obj):
        return obj.status, obj.get_status_display()

    def has_reprocess_permission(self, request, object_id=None):
        return request.user.has_perm("payments.review_payment")

    @action(description="Process again", icon="replay", permissions=["reprocess"])
    def reprocess(self, request, object_id):
        inbox = CallbackInbox.objects.get(pk=object_id)
        if inbox.status in (InboxStatus.REJECTED, InboxStatus.UNMATCHED, InboxStatus.FAILED):
            CallbackInbox.objects.filter(pk=inbox.pk).update(status=InboxStatus.RECEIVED)
        inbox = services.callback_inbox_process(inbox_id=inbox.pk)
        messages.info(request, f"Inbox entry #{inbox.pk} is now {inbox.get_status_display()}.")
        return redirect(reverse("admin:payments_callbackinbox_change", args=[object_id]))
