from django.contrib import admin, messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.html import format_html
from unfold.admin import ModelAdmin, TabularInline
from unfold.contrib.filters.admin import ChoicesDropdownFilter, RangeDateTimeFilter
from unfold.decorators import action, display

from payments import refunds, services
from payments.exceptions import PaymentError
from payments.forms import RefundRejectForm, RefundRequestForm, RefundResolveForm
from payments.models import (
    CallbackInbox,
    EventSource,
    InboxStatus,
    Payment,
    PaymentEvent,
    PaymentMethod,
    PaymentStatus,
    Refund,
    RefundEvent,
    RefundStatus,
)

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


# Pages whose fields are all read-only: no Save buttons (changes go through the actions).
READ_ONLY_FORM = {"show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False}


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


class RefundInline(ReadOnlyAdminMixin, TabularInline):
    model = Refund
    fields = ["created_at", "status", "method", "amount", "reason", "requested_by", "transaction_id"]
    readonly_fields = fields
    extra = 0
    show_change_link = True
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
    inlines = [PaymentEventInline, RefundInline]
    actions_detail = ["query_now", "mark_collected", "request_refund"]
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

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), **READ_ONLY_FORM}
        return super().changeform_view(request, object_id, form_url, extra_context)

    @staticmethod
    def _payment_is(object_id, **lookups) -> bool:
        # Detail actions are offered only where they can apply.
        return object_id is None or Payment.objects.filter(pk=object_id, **lookups).exists()

    def has_query_permission(self, request, object_id=None):
        return self.has_change_permission(request) and self._payment_is(
            object_id, method=PaymentMethod.MPESA, checkout_request_id__isnull=False
        )

    def has_collect_permission(self, request, object_id=None):
        return self.has_change_permission(request) and self._payment_is(
            object_id, status=PaymentStatus.PENDING_DELIVERY
        )

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

    @action(description="Ask M-Pesa now", icon="sync", permissions=["query"])
    def query_now(self, request, object_id):
        payment = services.payment_query_status(
            payment_id=int(object_id), source=EventSource.QUERY, actor=request.user
        )
        messages.info(request, f"Payment #{payment.pk} is {payment.get_status_display()}.")
        return redirect(reverse("admin:payments_payment_change", args=[object_id]))

    def has_request_refund_permission(self, request, object_id=None):
        return request.user.has_perm("payments.add_refund") and self._payment_is(
            object_id, status__in=[PaymentStatus.COMPLETED, PaymentStatus.PARTIALLY_REFUNDED]
        )

    @action(
        description="Refund",
        icon="undo",
        permissions=["request_refund"],
        dialog={
            "title": "Refund this payment",
            "description": "A full refund is an M-Pesa reversal; a partial one is a B2C payment to the payer. "
            "Above the approval threshold a second person must approve it.",
            "form_class": RefundRequestForm,
            "form_submit_text": "Request refund",
        },
    )
    def request_refund(self, request, form, object_id):
        try:
            refund = refunds.refund_request(
                payment_id=int(object_id),
                amount=form.cleaned_data["amount"],
                reason=form.cleaned_data["reason"],
                internal_note=form.cleaned_data["internal_note"],
                actor=request.user,
                source=EventSource.ADMIN,
            )
        except PaymentError as exc:
            form.add_error(
                exc.details.get("field") if exc.details.get("field") in form.fields else None, exc.message
            )
            return render(
                request,
                "unfold/helpers/dialog.html",
                {"dialog": self.request_refund.dialog, "form": form, "form_submit_text": "Request refund"},
            )
        if refund.status == RefundStatus.REQUESTED:
            messages.info(
                request, f"Refund #{refund.pk} of KES {refund.amount} is waiting for a second approver."
            )
        else:
            messages.success(request, f"Refund #{refund.pk} of KES {refund.amount} is being sent to M-Pesa.")
        url = reverse("admin:payments_refund_change", args=[refund.pk])
        return HttpResponse(headers={"HX-Redirect": url})

    @action(description="Cash collected", icon="payments", permissions=["collect"])
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
        "duplicates",
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


# --- refunds ----------------------------------------------------------------------------------------
REFUND_COLOURS = {
    RefundStatus.REQUESTED: "warning",
    RefundStatus.APPROVED: "info",
    RefundStatus.REJECTED: "danger",
    RefundStatus.SUBMITTING: "info",
    RefundStatus.SUBMITTED: "info",
    RefundStatus.SUCCEEDED: "success",
    RefundStatus.FAILED: "danger",
    RefundStatus.UNKNOWN: "warning",
}


class RefundEventInline(ReadOnlyAdminMixin, TabularInline):
    model = RefundEvent
    fields = ["created_at", "kind", "source", "actor", "from_status", "to_status", "message"]
    readonly_fields = fields
    extra = 0
    ordering = ["created_at", "id"]


@admin.register(Refund)
class RefundAdmin(ModelAdmin):
    """Refunds are requested from the payment page; here they are approved, watched and settled."""

    list_display = [
        "id",
        "payment_link",
        "show_status",
        "method",
        "amount",
        "requested_by",
        "approved_by",
        "transaction_id",
        "result_code",
        "created_at",
    ]
    list_filter = [
        ("status", ChoicesDropdownFilter),
        ("method", ChoicesDropdownFilter),
        ("created_at", RangeDateTimeFilter),
    ]
    list_filter_submit = True
    search_fields = [
        "transaction_id",
        "original_receipt",
        "originator_conversation_id",
        "conversation_id",
        "payment__order__reference",
    ]
    list_select_related = ["payment", "requested_by", "approved_by"]
    inlines = [RefundEventInline]
    actions_detail = ["approve", "reject", "check_status", "resend_reversal", "resolve"]
    fieldsets = [
        (None, {"fields": ["payment", "status", "method", "amount", "currency", "reason", "internal_note"]}),
        ("People", {"fields": ["requested_by", "approved_by", "rejected_by"]}),
        (
            "M-Pesa",
            {
                "fields": [
                    "original_receipt",
                    "transaction_id",
                    "result_code",
                    "result_desc",
                    "idempotency_key",
                    "originator_conversation_id",
                    "conversation_id",
                    "status_query_count",
                    "next_check_at",
                ]
            },
        ),
        (
            "Times",
            {
                "fields": [
                    "created_at",
                    "approved_at",
                    "submitted_at",
                    "accepted_at",
                    "completed_at",
                    "updated_at",
                ]
            },
        ),
    ]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        # Every change goes through the refund services (the actions below).
        return [f for fieldset in self.fieldsets for f in fieldset[1]["fields"]]

    @display(description="Status", ordering="status", label=REFUND_COLOURS)
    def show_status(self, obj):
        return obj.status, obj.get_status_display()

    @display(description="Payment", ordering="payment_id")
    def payment_link(self, obj):
        url = reverse("admin:payments_payment_change", args=[obj.payment_id])
        return format_html('<a href="{}">#{} ({})</a>', url, obj.payment_id, obj.original_receipt or "-")

    @staticmethod
    def _refund_is(object_id, *statuses) -> bool:
        # Detail actions are offered only where they can apply; without an object (lists) they stay.
        return object_id is None or Refund.objects.filter(pk=object_id, status__in=statuses).exists()

    def has_approve_refund_permission(self, request, object_id=None):
        return request.user.has_perm("payments.approve_refund") and self._refund_is(
            object_id, RefundStatus.REQUESTED
        )

    def has_reject_refund_permission(self, request, object_id=None):
        allowed = request.user.has_perm("payments.approve_refund") or request.user.has_perm(
            "payments.add_refund"
        )
        return allowed and self._refund_is(object_id, RefundStatus.REQUESTED)

    def has_settle_unknown_permission(self, request, object_id=None):
        return request.user.has_perm("payments.approve_refund") and self._refund_is(
            object_id, RefundStatus.UNKNOWN
        )

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), **READ_ONLY_FORM}
        return super().changeform_view(request, object_id, form_url, extra_context)

    def _back(self, object_id):
        return redirect(reverse("admin:payments_refund_change", args=[object_id]))

    def _dialog_done(self, object_id):
        return HttpResponse(
            headers={"HX-Redirect": reverse("admin:payments_refund_change", args=[object_id])}
        )

    @action(description="Approve", icon="check", permissions=["approve_refund"])
    def approve(self, request, object_id):
        try:
            refund = refunds.refund_approve(refund_id=int(object_id), actor=request.user)
            messages.success(request, f"Refund #{refund.pk} approved; it is being sent to M-Pesa.")
        except PaymentError as exc:
            messages.error(request, exc.message)
        return self._back(object_id)

    @action(
        description="Reject",
        icon="block",
        permissions=["reject_refund"],
        dialog={"title": "Reject this refund", "form_class": RefundRejectForm, "form_submit_text": "Reject"},
    )
    def reject(self, request, form, object_id):
        try:
            refunds.refund_reject(
                refund_id=int(object_id), actor=request.user, note=form.cleaned_data["note"]
            )
            messages.success(request, "Refund rejected; nothing was sent.")
        except PaymentError as exc:
            messages.error(request, exc.message)
        return self._dialog_done(object_id)

    @action(description="Ask M-Pesa (Transaction Status)", icon="sync", permissions=["settle_unknown"])
    def check_status(self, request, object_id):
        refund = Refund.objects.get(pk=object_id)
        if refund.status != RefundStatus.UNKNOWN:
            messages.info(request, "Only refunds whose outcome is unknown are asked about.")
        else:
            refunds.refund_check_status(refund_id=refund.pk, actor=request.user, source=EventSource.ADMIN)
            messages.info(request, "Transaction Status asked; the answer arrives in a few seconds.")
        return self._back(object_id)

    @action(description="Send reversal again", icon="replay", permissions=["settle_unknown"])
    def resend_reversal(self, request, object_id):
        try:
            refund = refunds.refund_resend_reversal(refund_id=int(object_id), actor=request.user)
            messages.info(
                request, f"Reversal sent again; refund #{refund.pk} is {refund.get_status_display()}."
            )
        except PaymentError as exc:
            messages.error(request, exc.message)
        return self._back(object_id)

    @action(
        description="Resolve by hand",
        icon="gavel",
        permissions=["settle_unknown"],
        dialog={
            "title": "Resolve an unknown refund",
            "description": "Check the M-Pesa org portal statement first.",
            "form_class": RefundResolveForm,
            "form_submit_text": "Resolve",
        },
    )
    def resolve(self, request, form, object_id):
        try:
            refunds.refund_resolve(
                refund_id=int(object_id),
                actor=request.user,
                succeeded=form.cleaned_data["outcome"] == "succeeded",
                note=form.cleaned_data["note"],
                transaction_id=form.cleaned_data["transaction_id"],
            )
            messages.success(request, "Refund resolved.")
        except PaymentError as exc:
            messages.error(request, exc.message)
        return self._dialog_done(object_id)


@admin.register(RefundEvent)
class RefundEventAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["created_at", "refund", "kind", "source", "actor", "from_status", "to_status", "message"]
    list_filter = [("kind", ChoicesDropdownFilter), ("source", ChoicesDropdownFilter)]
    search_fields = ["refund__transaction_id", "refund__original_receipt", "message"]
    list_select_related = ["refund", "actor"]
    readonly_fields = [f.name for f in RefundEvent._meta.fields]
