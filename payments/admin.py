"""Payments, their history, the callback inbox and refunds in the admin.

Every action that changes something is a dialog (common.admin): a GET shows it and changes nothing; the
change is the dialog's POST with its CSRF token, and the service it calls checks the permission again.
"""

from django.contrib import admin, messages
from django.shortcuts import render
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from unfold.admin import ModelAdmin, TabularInline
from unfold.contrib.filters.admin import ChoicesDropdownFilter, RangeDateTimeFilter
from unfold.decorators import action, display

from audit.admin import AuditTimelineMixin
from common.admin import (
    ContactMaskingMixin,
    NoteForm,
    ReadOnlyAdminMixin,
    confirm_dialog,
    dialog_redirect,
    phones_masked,
)
from exports.admin import ExportListMixin
from exports.columns import ExportColumn
from payments import inbox as inbox_service
from payments import refunds, services
from payments.exceptions import PaymentError
from payments.forms import (
    AttachCallbackForm,
    NotCollectedForm,
    ReceiptForm,
    RefundRejectForm,
    RefundRequestForm,
    RefundResolveForm,
    ReviewResolveForm,
)
from payments.models import (
    PAID_STATUSES,
    CallbackInbox,
    EventSource,
    InboxKind,
    InboxStatus,
    Payment,
    PaymentEvent,
    PaymentMethod,
    PaymentStatus,
    Refund,
    RefundEvent,
    RefundStatus,
)
from payments.selectors import (
    callback_candidates,
    inbox_gave_up,
    inbox_needing_attention,
    payment_lookup,
    payment_retry_blocker,
    payments_receipt_pending,
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
    InboxStatus.UNMATCHED: "warning",
    InboxStatus.REJECTED: "danger",
    InboxStatus.FAILED: "danger",
}

# Pages whose fields are all read-only: no Save buttons (changes go through the actions).
READ_ONLY_FORM = {"show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False}

# The columns of the exported lists (exports.columns): what the list shows, plus what finance reconciles with.
PAYMENT_EXPORT_COLUMNS = (
    ExportColumn("Payment ID", "id", "number"),
    ExportColumn("Order reference", "order__reference"),
    ExportColumn("Method", "method", "label"),
    ExportColumn("Status", "status", "label"),
    ExportColumn("Amount (KES)", "amount", "money"),
    ExportColumn("Paid (KES)", "paid_amount", "money"),
    ExportColumn("Refunded (KES)", "refunded_amount", "money"),
    ExportColumn("Phone", "phone", "phone"),
    ExportColumn("M-Pesa receipt", "mpesa_receipt_number"),
    ExportColumn("Result code", "result_code"),
    ExportColumn("Result description", "result_desc", width=32),
    ExportColumn("Failure class", "failure_class", "label"),
    ExportColumn("Review reason", "review_reason", "label"),
    ExportColumn("Settled by", "settled_by", "label"),
    ExportColumn("Created (Nairobi)", "created_at", "datetime"),
    ExportColumn("Completed (Nairobi)", "completed_at", "datetime"),
    ExportColumn("Failed (Nairobi)", "failed_at", "datetime"),
)
REFUND_EXPORT_COLUMNS = (
    ExportColumn("Refund ID", "id", "number"),
    ExportColumn("Payment ID", "payment_id", "number"),
    ExportColumn("Order reference", "payment__order__reference"),
    ExportColumn("Status", "status", "label"),
    ExportColumn("Method", "method", "label"),
    ExportColumn("Amount (KES)", "amount", "money"),
    ExportColumn("Reason", "reason", width=32),
    ExportColumn("Phone", "payment__phone", "phone"),
    ExportColumn("Original receipt", "original_receipt"),
    ExportColumn("Refund receipt", "transaction_id"),
    ExportColumn("Result code", "result_code"),
    ExportColumn("Result description", "result_desc", width=32),
    ExportColumn("Requested by", "requested_by__username"),
    ExportColumn("Approved by", "approved_by__username"),
    ExportColumn("Created (Nairobi)", "created_at", "datetime"),
    ExportColumn("Completed (Nairobi)", "completed_at", "datetime"),
)


def _error_into_form(form, exc: PaymentError) -> None:
    field = exc.details.get("field")
    form.add_error(field if field in form.fields else None, exc.message)


def _dialog_again(request, dialog: dict, form):
    """The dialog once more, with the service's refusal on the form."""
    return render(
        request,
        "unfold/helpers/dialog.html",
        {"dialog": dialog, "form": form, "form_submit_text": dialog.get("form_submit_text", "")},
    )


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


class ReceiptPendingFilter(admin.SimpleListFilter):
    title = "receipt"
    parameter_name = "receipt"

    def lookups(self, request, model_admin):
        return [("pending", "Completed, receipt pending")]

    def queryset(self, request, queryset):
        if self.value() == "pending":
            return queryset.filter(pk__in=payments_receipt_pending().values("pk"))
        return queryset


@admin.register(Payment)
class PaymentAdmin(ExportListMixin, AuditTimelineMixin, ContactMaskingMixin, ModelAdmin):
    masked_contacts = {"masked_phone": "phone"}

    def audit_subjects(self, obj):
        return [obj, obj.order, *obj.refunds.all()]

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
        ("review_reason", ChoicesDropdownFilter),
        ReceiptPendingFilter,
        "query_failing",
        ("created_at", RangeDateTimeFilter),
    ]
    list_filter_submit = True
    search_fields = ["mpesa_receipt_number", "checkout_request_id", "order__reference", "phone"]
    search_help_text = "A phone number, M-Pesa receipt, order reference or CheckoutRequestID."
    list_select_related = ["order"]
    show_full_result_count = False  # one count of the filtered list, not a second of the whole table
    export_columns = PAYMENT_EXPORT_COLUMNS
    inlines = [PaymentEventInline, RefundInline]
    actions_detail = [
        "query_now",
        "retry",
        "resolve_review",
        "enter_receipt",
        "mark_collected",
        "mark_not_collected",
        "request_refund",
    ]
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
                    "query_failing",
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
        return [f for fieldset in self.get_fieldsets(request, obj) for f in fieldset[1]["fields"]]

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), **READ_ONLY_FORM}
        return super().changeform_view(request, object_id, form_url, extra_context)

    # --- which actions apply (offered only there; the services check again) ----------------------
    @staticmethod
    def _payment_is(object_id, **lookups) -> bool:
        return object_id is None or Payment.objects.filter(pk=object_id, **lookups).exists()

    def has_query_permission(self, request, object_id=None):
        return request.user.has_perm("payments.query_payment") and self._payment_is(
            object_id, method=PaymentMethod.MPESA, checkout_request_id__isnull=False
        )

    def has_retry_permission(self, request, object_id=None):
        if not request.user.has_perm("payments.retry_payment"):
            return False
        if object_id is None:
            return True
        payment = Payment.objects.select_related("order").filter(pk=object_id).first()
        return payment is not None and payment_retry_blocker(payment) is None

    def has_collect_permission(self, request, object_id=None):
        return request.user.has_perm("payments.collect_payment") and self._payment_is(
            object_id, status=PaymentStatus.PENDING_DELIVERY
        )

    def has_review_permission(self, request, object_id=None):
        return request.user.has_perm("payments.review_payment") and self._payment_is(
            object_id, status=PaymentStatus.NEEDS_REVIEW
        )

    def has_enter_receipt_permission(self, request, object_id=None):
        return request.user.has_perm("payments.enter_receipt") and self._payment_is(
            object_id, status__in=PAID_STATUSES, receipt_pending=True
        )

    def has_request_refund_permission(self, request, object_id=None):
        return request.user.has_perm("payments.add_refund") and self._payment_is(
            object_id, status__in=[PaymentStatus.COMPLETED, PaymentStatus.PARTIALLY_REFUNDED]
        )

    # --- columns ----------------------------------------------------------------------------------
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

    def _page(self, object_id) -> str:
        return reverse("admin:payments_payment_change", args=[object_id])

    def get_search_results(self, request, queryset, search_term):
        # An identifier is looked up by its index; anything else, or an identifier nobody has, is searched
        # the partial way (slower at millions of rows).
        for exact in payment_lookup(search_term):
            found = queryset.filter(exact)
            if found.exists():
                return found, False
        return super().get_search_results(request, queryset, search_term)

    # --- actions ----------------------------------------------------------------------------------
    @action(
        description="Ask M-Pesa now",
        icon="sync",
        permissions=["query"],
        dialog=confirm_dialog(
            "Ask M-Pesa now",
            "Sends an STK Query for this attempt and applies a final answer.",
            "Ask M-Pesa",
        ),
    )
    def query_now(self, request, form, object_id):
        try:
            payment = services.payment_query_status(
                payment_id=int(object_id), source=EventSource.QUERY, actor=request.user
            )
        except PaymentError as exc:
            messages.error(request, exc.message)
        else:
            note = " M-Pesa did not answer; it is asked again later." if payment.query_failing else ""
            messages.info(request, f"Payment #{payment.pk} is {payment.get_status_display()}.{note}")
        return dialog_redirect(self._page(object_id))

    @action(
        description="Send a new prompt",
        icon="restart_alt",
        permissions=["retry"],
        dialog=confirm_dialog(
            "Send a new M-Pesa prompt",
            "Starts a new attempt for this order and sends the customer a new STK prompt.",
            "Send prompt",
        ),
    )
    def retry(self, request, form, object_id):
        try:
            new = services.payment_retry(
                payment_id=int(object_id), source=EventSource.ADMIN, actor=request.user
            )
        except PaymentError as exc:
            messages.error(request, exc.message)
            return dialog_redirect(self._page(object_id))
        messages.success(request, f"New attempt #{new.pk} is {new.get_status_display().lower()}.")
        return dialog_redirect(self._page(new.pk))

    @action(
        description="Resolve review",
        icon="gavel",
        permissions=["review"],
        dialog=confirm_dialog(
            "Resolve this review",
            "Check the M-Pesa org portal statement first. Paid completes the payment and confirms the order; "
            "not paid fails it and the order can be paid again.",
            "Resolve",
            ReviewResolveForm,
        ),
    )
    def resolve_review(self, request, form, object_id):
        try:
            payment = services.payment_review_resolve(
                payment_id=int(object_id),
                actor=request.user,
                outcome=form.cleaned_data["outcome"],
                note=form.cleaned_data["note"],
                receipt=form.cleaned_data["receipt"] or None,
            )
        except PaymentError as exc:
            _error_into_form(form, exc)
            return _dialog_again(request, self.resolve_review.dialog, form)
        messages.success(request, f"Payment #{payment.pk} resolved: {payment.get_status_display().lower()}.")
        if payment.is_paid and getattr(payment.order, "status", "") == "CANCELLED":
            messages.warning(
                request, "The order was already cancelled: refund this payment or reopen the sale."
            )
        return dialog_redirect(self._page(object_id))

    @action(
        description="Enter receipt",
        icon="receipt_long",
        permissions=["enter_receipt"],
        dialog=confirm_dialog(
            "Enter the M-Pesa receipt",
            "M-Pesa confirmed this payment by STK Query, which carries no receipt. Enter it from the statement.",
            "Save receipt",
            ReceiptForm,
        ),
    )
    def enter_receipt(self, request, form, object_id):
        try:
            services.payment_receipt_enter(
                payment_id=int(object_id),
                actor=request.user,
                receipt=form.cleaned_data["receipt"],
                note=form.cleaned_data["note"],
            )
        except PaymentError as exc:
            _error_into_form(form, exc)
            return _dialog_again(request, self.enter_receipt.dialog, form)
        messages.success(request, "Receipt recorded.")
        return dialog_redirect(self._page(object_id))

    @action(
        description="Cash collected",
        icon="payments",
        permissions=["collect"],
        dialog=confirm_dialog(
            "Cash collected",
            "Records the cash on delivery as collected: the payment completes.",
            "Collected",
            NoteForm,
        ),
    )
    def mark_collected(self, request, form, object_id):
        try:
            services.payment_mark_collected(
                payment_id=int(object_id), actor=request.user, note=form.cleaned_data["note"]
            )
            messages.success(request, "Cash on delivery recorded as collected.")
        except PaymentError as exc:
            messages.error(request, exc.message)
        return dialog_redirect(self._page(object_id))

    @action(
        description="Cash not collected",
        icon="money_off",
        permissions=["collect"],
        dialog=confirm_dialog(
            "Cash not collected",
            "The attempt fails with your reason. The order is payable again for a new payment window, then "
            "cancelled if nobody pays; you can also cancel it from the order page.",
            "Not collected",
            NotCollectedForm,
        ),
    )
    def mark_not_collected(self, request, form, object_id):
        try:
            services.payment_mark_not_collected(
                payment_id=int(object_id), actor=request.user, reason=form.cleaned_data["reason"]
            )
        except PaymentError as exc:
            _error_into_form(form, exc)
            return _dialog_again(request, self.mark_not_collected.dialog, form)
        messages.success(request, "Cash on delivery recorded as not collected.")
        return dialog_redirect(self._page(object_id))

    @action(
        description="Refund",
        icon="undo",
        permissions=["request_refund"],
        dialog=confirm_dialog(
            "Refund this payment",
            "A full refund is an M-Pesa reversal; a partial one is a B2C payment to the payer. "
            "Above the approval threshold a second person must approve it.",
            "Request refund",
            RefundRequestForm,
        ),
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
            _error_into_form(form, exc)
            return _dialog_again(request, self.request_refund.dialog, form)
        if refund.status == RefundStatus.REQUESTED:
            messages.info(
                request, f"Refund #{refund.pk} of KES {refund.amount} is waiting for a second approver."
            )
        else:
            messages.success(request, f"Refund #{refund.pk} of KES {refund.amount} is being sent to M-Pesa.")
        return dialog_redirect(reverse("admin:payments_refund_change", args=[refund.pk]))


class EventDataMaskingMixin(ContactMaskingMixin):
    """An event's data is Daraja's evidence, phone numbers included: masked like every other contact."""

    masked_contacts = {"masked_data": "data"}

    @display(description="Data")
    def masked_data(self, obj):
        return phones_masked(obj.data)


@admin.register(PaymentEvent)
class PaymentEventAdmin(EventDataMaskingMixin, ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["created_at", "payment", "kind", "source", "actor", "from_status", "to_status", "message"]
    list_filter = [("kind", ChoicesDropdownFilter), ("source", ChoicesDropdownFilter)]
    search_fields = ["payment__mpesa_receipt_number", "payment__checkout_request_id", "message"]
    list_select_related = ["payment", "actor"]
    fields = readonly_fields = [
        "masked_data" if f.name == "data" else f.name for f in PaymentEvent._meta.fields
    ]


class NeedsAttentionFilter(admin.SimpleListFilter):
    title = "attention"
    parameter_name = "attention"

    def lookups(self, request, model_admin):
        return [("needed", "Needs attention"), ("gave_up", "Gave up after retries")]

    def queryset(self, request, queryset):
        if self.value() == "needed":
            return queryset.filter(pk__in=inbox_needing_attention().values("pk"))
        if self.value() == "gave_up":
            return queryset.filter(pk__in=inbox_gave_up().values("pk"))
        return queryset


@admin.register(CallbackInbox)
class CallbackInboxAdmin(AuditTimelineMixin, ContactMaskingMixin, ReadOnlyAdminMixin, ModelAdmin):
    masked_contacts = {"masked_body": "body", "masked_claimed": "claimed"}
    list_display = [
        "id",
        "received_at",
        "kind",
        "show_status",
        "correlation_id",
        "payment",
        "source_ip",
        "attempts",
        "duplicates",
    ]
    list_filter = [NeedsAttentionFilter, ("status", ChoicesDropdownFilter), ("kind", ChoicesDropdownFilter)]
    search_fields = ["correlation_id", "body"]
    fields = readonly_fields = [
        "candidates",
        *[
            {"body": "masked_body", "claimed": "masked_claimed"}.get(f.name, f.name)
            for f in CallbackInbox._meta.fields
        ],
    ]
    actions_detail = ["reprocess", "attach"]

    @display(description="Status", ordering="status", label=INBOX_COLOURS)
    def show_status(self, obj):
        return obj.status, obj.get_status_display()

    @display(description="Body")
    def masked_body(self, obj):
        return phones_masked(obj.body)

    @display(description="Claimed")
    def masked_claimed(self, obj):
        return phones_masked(obj.claimed)

    @display(description="Candidate payments")
    def candidates(self, obj):
        if obj.status != InboxStatus.UNMATCHED or obj.kind not in (
            InboxKind.STK_CALLBACK,
            InboxKind.STK_CALLBACK_LEGACY,
        ):
            return "-"
        found = list(callback_candidates(obj)[:10])
        if not found:
            return "None with this amount, phone and time"
        return format_html_join(
            format_html("<br>"),
            '<a href="{}">#{}</a> order {} · KES {} · {} · {}',
            (
                (
                    reverse("admin:payments_payment_change", args=[p.pk]),
                    p.pk,
                    p.order.reference,
                    p.amount,
                    p.masked_phone,
                    p.get_status_display(),
                )
                for p in found
            ),
        )

    def has_reprocess_permission(self, request, object_id=None):
        return request.user.has_perm("payments.reprocess_inbox") and (
            object_id is None
            or CallbackInbox.objects.filter(pk=object_id).exclude(status=InboxStatus.PROCESSED).exists()
        )

    def has_attach_permission(self, request, object_id=None):
        return request.user.has_perm("payments.attach_callback") and (
            object_id is None
            or CallbackInbox.objects.filter(
                pk=object_id,
                status=InboxStatus.UNMATCHED,
                kind__in=(InboxKind.STK_CALLBACK, InboxKind.STK_CALLBACK_LEGACY),
            ).exists()
        )

    def _page(self, object_id) -> str:
        return reverse("admin:payments_callbackinbox_change", args=[object_id])

    @action(
        description="Process again",
        icon="replay",
        permissions=["reprocess"],
        dialog=confirm_dialog(
            "Process this entry again",
            "Parses and applies the stored body once more (e.g. a quarantined callback from an address that "
            "turned out to be Safaricom's).",
            "Process",
        ),
    )
    def reprocess(self, request, form, object_id):
        try:
            inbox = inbox_service.inbox_process_again(inbox_id=int(object_id), actor=request.user)
            messages.info(request, f"Inbox entry #{inbox.pk} is now {inbox.get_status_display()}.")
        except PaymentError as exc:
            messages.error(request, exc.message)
        return dialog_redirect(self._page(object_id))

    @action(
        description="Attach to a payment",
        icon="link",
        permissions=["attach"],
        dialog=confirm_dialog(
            "Attach this callback to a payment",
            "The payment takes the callback's CheckoutRequestID and the callback is applied to it as Daraja "
            "sent it. A callback from the original, unauthenticated path only makes us ask M-Pesa.",
            "Attach",
            AttachCallbackForm,
        ),
    )
    def attach(self, request, form, object_id):
        try:
            payment = services.callback_attach(
                inbox_id=int(object_id),
                payment_id=form.cleaned_data["chosen_payment_id"],
                actor=request.user,
                note=form.cleaned_data["note"],
            )
        except PaymentError as exc:
            _error_into_form(form, exc)
            return _dialog_again(request, self.attach.dialog, form)
        messages.success(
            request, f"Attached to payment #{payment.pk}, now {payment.get_status_display().lower()}."
        )
        return dialog_redirect(reverse("admin:payments_payment_change", args=[payment.pk]))


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
    RefundStatus.OVER_REFUNDED: "danger",
}


class RefundEventInline(ReadOnlyAdminMixin, TabularInline):
    model = RefundEvent
    fields = ["created_at", "kind", "source", "actor", "from_status", "to_status", "message"]
    readonly_fields = fields
    extra = 0
    ordering = ["created_at", "id"]


@admin.register(Refund)
class RefundAdmin(ExportListMixin, AuditTimelineMixin, ModelAdmin):
    """Refunds are requested from the payment page; here they are approved, watched and settled."""

    def audit_subjects(self, obj):
        return [obj, obj.payment]

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
    export_columns = REFUND_EXPORT_COLUMNS
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
    def _refund_is(object_id, *statuses, **lookups) -> bool:
        # Detail actions are offered only where they can apply; without an object (lists) they stay.
        return (
            object_id is None or Refund.objects.filter(pk=object_id, status__in=statuses, **lookups).exists()
        )

    def has_approve_refund_permission(self, request, object_id=None):
        # Never offered to the person who asked for the refund (refund_approve refuses them anyway).
        return (
            request.user.has_perm("payments.approve_refund")
            and self._refund_is(object_id, RefundStatus.REQUESTED)
            and (
                object_id is None
                or not Refund.objects.filter(pk=object_id, requested_by=request.user).exists()
            )
        )

    def has_reject_refund_permission(self, request, object_id=None):
        allowed = request.user.has_perm("payments.approve_refund") or request.user.has_perm(
            "payments.add_refund"
        )
        return allowed and self._refund_is(object_id, RefundStatus.REQUESTED)

    def has_check_status_permission(self, request, object_id=None):
        return request.user.has_perm("payments.query_payment") and self._refund_is(
            object_id, RefundStatus.UNKNOWN
        )

    def has_resend_permission(self, request, object_id=None):
        return request.user.has_perm("payments.resolve_refund") and self._refund_is(
            object_id, RefundStatus.UNKNOWN, method="reversal"
        )

    def has_settle_unknown_permission(self, request, object_id=None):
        return request.user.has_perm("payments.resolve_refund") and self._refund_is(
            object_id, RefundStatus.UNKNOWN
        )

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), **READ_ONLY_FORM}
        return super().changeform_view(request, object_id, form_url, extra_context)

    def _page(self, object_id) -> str:
        return reverse("admin:payments_refund_change", args=[object_id])

    @action(
        description="Approve",
        icon="check",
        permissions=["approve_refund"],
        dialog=confirm_dialog("Approve this refund", "It is sent to M-Pesa at once.", "Approve"),
    )
    def approve(self, request, form, object_id):
        try:
            refund = refunds.refund_approve(refund_id=int(object_id), actor=request.user)
            messages.success(request, f"Refund #{refund.pk} approved; it is being sent to M-Pesa.")
        except PaymentError as exc:
            messages.error(request, exc.message)
        return dialog_redirect(self._page(object_id))

    @action(
        description="Reject",
        icon="block",
        permissions=["reject_refund"],
        dialog=confirm_dialog("Reject this refund", "Nothing is sent.", "Reject", RefundRejectForm),
    )
    def reject(self, request, form, object_id):
        try:
            refunds.refund_reject(
                refund_id=int(object_id), actor=request.user, note=form.cleaned_data["note"]
            )
            messages.success(request, "Refund rejected; nothing was sent.")
        except PaymentError as exc:
            messages.error(request, exc.message)
        return dialog_redirect(self._page(object_id))

    @action(
        description="Ask M-Pesa (Transaction Status)",
        icon="sync",
        permissions=["check_status"],
        dialog=confirm_dialog(
            "Ask M-Pesa about this refund",
            "Sends a Transaction Status request; the answer arrives on the result URL in a few seconds.",
            "Ask M-Pesa",
        ),
    )
    def check_status(self, request, form, object_id):
        try:
            refunds.refund_check_status(
                refund_id=int(object_id), actor=request.user, source=EventSource.ADMIN
            )
            messages.info(request, "Transaction Status asked; the answer arrives in a few seconds.")
        except PaymentError as exc:
            messages.error(request, exc.message)
        return dialog_redirect(self._page(object_id))

    @action(
        description="Send reversal again",
        icon="replay",
        permissions=["resend"],
        dialog=confirm_dialog(
            "Send the reversal again",
            "Safaricom reverses a receipt at most once: if the first request went through, this one is "
            "answered 'already reversed', which counts as success.",
            "Send again",
        ),
    )
    def resend_reversal(self, request, form, object_id):
        try:
            refund = refunds.refund_resend_reversal(refund_id=int(object_id), actor=request.user)
            messages.info(
                request, f"Reversal sent again; refund #{refund.pk} is {refund.get_status_display()}."
            )
        except PaymentError as exc:
            messages.error(request, exc.message)
        return dialog_redirect(self._page(object_id))

    @action(
        description="Resolve by hand",
        icon="gavel",
        permissions=["settle_unknown"],
        dialog=confirm_dialog(
            "Resolve an unknown refund",
            "Check the M-Pesa org portal statement first.",
            "Resolve",
            RefundResolveForm,
        ),
    )
    def resolve(self, request, form, object_id):
        try:
            refund = refunds.refund_resolve(
                refund_id=int(object_id),
                actor=request.user,
                succeeded=form.cleaned_data["outcome"] == "succeeded",
                note=form.cleaned_data["note"],
                transaction_id=form.cleaned_data["transaction_id"],
            )
        except PaymentError as exc:
            _error_into_form(form, exc)
            return _dialog_again(request, self.resolve.dialog, form)
        messages.success(request, f"Refund resolved: {refund.get_status_display().lower()}.")
        return dialog_redirect(self._page(object_id))


@admin.register(RefundEvent)
class RefundEventAdmin(EventDataMaskingMixin, ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["created_at", "refund", "kind", "source", "actor", "from_status", "to_status", "message"]
    list_filter = [("kind", ChoicesDropdownFilter), ("source", ChoicesDropdownFilter)]
    search_fields = ["refund__transaction_id", "refund__original_receipt", "message"]
    list_select_related = ["refund", "actor"]
    fields = readonly_fields = [
        "masked_data" if f.name == "data" else f.name for f in RefundEvent._meta.fields
    ]


def needs_review_badge(request) -> str:
    count = Payment.objects.filter(status=PaymentStatus.NEEDS_REVIEW).count()
    return str(count) if count else ""


def inbox_attention_badge(request) -> str:
    count = inbox_needing_attention().count()
    return str(count) if count else ""


def refunds_attention_badge(request) -> str:
    count = Refund.objects.filter(
        status__in=(RefundStatus.REQUESTED, RefundStatus.UNKNOWN, RefundStatus.OVER_REFUNDED)
    ).count()
    return str(count) if count else ""
