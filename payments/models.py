"""Payment attempts, their append-only history, and every inbound Daraja request kept raw."""

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q

from common.phone import mask_msisdn


class PaymentMethod(models.TextChoices):
    MPESA = "mpesa", "M-Pesa"
    COD = "cod", "Cash on delivery"
    CARD = "card", "Card"


class PaymentStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    INITIATED = "initiated", "Initiated"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    PENDING_DELIVERY = "pending_delivery", "Pending delivery"
    NEEDS_REVIEW = "needs_review", "Needs review"
    REFUNDED = "refunded", "Refunded"
    PARTIALLY_REFUNDED = "partially_refunded", "Partially refunded"


OPEN_STATUSES = (PaymentStatus.PENDING, PaymentStatus.INITIATED)
PAID_STATUSES = (PaymentStatus.COMPLETED, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED)


class FailureClass(models.TextChoices):
    """Who caused a failure: customer-caused failures are reported apart from system ones."""

    NONE = "", "-"
    CUSTOMER = "customer", "Customer"
    SYSTEM = "system", "System / network"
    CONFIG = "config", "Configuration"
    REQUEST = "request", "Invalid request"
    EXPIRED = "expired", "Expired"
    UNKNOWN = "unknown", "Unknown"


class ReviewReason(models.TextChoices):
    NONE = "", "-"
    AMOUNT_MISMATCH = "amount_mismatch", "Amount differs from what was asked"
    RECEIPT_REUSE = "receipt_reuse", "Receipt already used by another payment"
    LATE_PAYMENT = "late_payment", "Success reported after a failure"
    MISSING_METADATA = "missing_metadata", "Success without receipt or amount"
    PUSH_OUTCOME_UNKNOWN = "push_outcome_unknown", "STK push outcome unknown"


class SettledBy(models.TextChoices):
    """What first gave an attempt its final state (completed or failed): a rising share of `query` means
    callbacks are being lost."""

    NONE = "", "-"
    CALLBACK = "callback", "Callback"
    QUERY = "query", "STK Query"
    STAFF = "staff", "Staff"
    PUSH = "push", "Refused when sent"
    SYSTEM = "system", "Deadline (sweeper)"


class Payment(models.Model):
    """One payment attempt. A retry is a new row on the same order."""

    order = models.ForeignKey(
        settings.PAYMENTS_ORDER_MODEL, on_delete=models.PROTECT, related_name="payments"
    )
    method = models.CharField(max_length=16, choices=PaymentMethod.choices)
    status = models.CharField(
        max_length=24, choices=PaymentStatus.choices, default=PaymentStatus.PENDING, db_index=True
    )
    amount = models.DecimalField(
        max_digits=12, decimal_places=2, validators=[MinValueValidator(Decimal("1"))]
    )
    currency = models.CharField(max_length=3, default="KES")
    phone = models.CharField(
        max_length=12, blank=True, help_text="MSISDN the prompt was sent to (2547XXXXXXXX)."
    )
    account_reference = models.CharField(max_length=12, blank=True)
    merchant_request_id = models.CharField(max_length=64, blank=True)
    checkout_request_id = models.CharField(max_length=64, unique=True, null=True, blank=True)
    mpesa_receipt_number = models.CharField(max_length=32, unique=True, null=True, blank=True)
    paid_amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    transaction_date = models.DateTimeField(null=True, blank=True)
    result_code = models.CharField(max_length=16, blank=True)
    result_desc = models.CharField(max_length=512, blank=True)
    failure_class = models.CharField(max_length=16, choices=FailureClass.choices, blank=True, default="")
    review_reason = models.CharField(max_length=32, choices=ReviewReason.choices, blank=True, default="")
    receipt_pending = models.BooleanField(
        default=False, help_text="Completed on an STK Query answer; the receipt number is still to come."
    )
    refunded_amount = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0"))
    query_count = models.PositiveIntegerField(default=0)
    next_query_at = models.DateTimeField(null=True, blank=True, db_index=True)
    query_failing = models.BooleanField(
        default=False,
        help_text="The last STK Query got no answer (5xx, Spike Arrest, timeout): the attempt stays open and "
        "is asked again; it is never expired on an unanswered question.",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    initiated_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    settled_by = models.CharField(max_length=8, choices=SettledBy.choices, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # Reports: attempts by creation time per method, money by the time it was collected.
            models.Index(fields=["method", "created_at"], name="payment_method_created"),
            # Money collected in a period is read from this index alone (no table lookups at millions of rows).
            models.Index(
                fields=["completed_at", "status", "method", "paid_amount", "amount"],
                name="payment_completed_at",
            ),
            # Staff find a customer's payments by phone number.
            models.Index(fields=["phone"], name="payment_phone"),
            # Lists filtered by status come newest first; the attention list counts receipts still pending.
            models.Index(fields=["status", "created_at"], name="payment_status_created"),
            models.Index(
                fields=["completed_at"], condition=Q(receipt_pending=True), name="payment_receipt_pending"
            ),
            # Alerts: pushes Daraja accepted in the last minutes, each of which should bring a callback.
            models.Index(fields=["method", "initiated_at"], name="payment_method_initiated"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(condition=Q(refunded_amount__gte=0), name="payment_refunded_not_negative"),
            # Refunds never give back more than was charged (the refund service also checks, under a lock).
            models.CheckConstraint(
                condition=Q(refunded_amount__lte=F("amount")), name="payment_refunded_within_amount"
            ),
            # One attempt in flight per order: double submits and concurrent retries are settled here.
            models.UniqueConstraint(
                fields=["order"],
                condition=Q(status__in=["pending", "initiated"]),
                name="payment_one_open_attempt_per_order",
            ),
        ]
        permissions = [
            ("review_payment", "Can resolve payments that need review"),
            ("query_payment", "Can ask M-Pesa about a payment or refund now"),
            ("retry_payment", "Can send a new M-Pesa prompt for a failed payment"),
            ("collect_payment", "Can record cash on delivery as collected or not collected"),
            ("enter_receipt", "Can enter the M-Pesa receipt of a payment"),
            ("attach_callback", "Can attach an unmatched callback to a payment"),
        ]

    def __str__(self) -> str:
        return f"Payment #{self.pk} · {self.get_method_display()} KES {self.amount} · {self.get_status_display()}"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def is_paid(self) -> bool:
        return self.status in PAID_STATUSES

    @property
    def masked_phone(self) -> str:
        return mask_msisdn(self.phone)


class EventKind(models.TextChoices):
    CREATED = "created", "Created"
    PUSH_ACCEPTED = "push_accepted", "STK push accepted"
    PUSH_REJECTED = "push_rejected", "STK push rejected"
    PUSH_UNKNOWN = "push_unknown", "STK push outcome unknown"
    RESULT_APPLIED = "result_applied", "Result applied"
    DUPLICATE_RESULT = "duplicate_result", "Duplicate result"
    IGNORED_LATE_EVENT = "ignored_late_event", "Late result ignored"
    DISAGREEMENT = "disagreement", "Sources disagree"
    NEEDS_REVIEW = "needs_review", "Sent to review"
    QUERY_PENDING = "query_pending", "STK Query: still processing"
    QUERY_FAILED = "query_failed", "STK Query failed"
    EXPIRED = "expired", "Expired"
    COLLECTED = "collected", "Cash collected"
    NOT_COLLECTED = "not_collected", "Cash not collected"
    RECEIPT_ENTERED = "receipt_entered", "Receipt entered by staff"
    RECEIPT_FROM_STATEMENT = "receipt_from_statement", "Receipt from the M-PESA statement"
    STATEMENT_ATTACHED = "statement_attached", "Statement line attached"
    CALLBACK_ATTACHED = "callback_attached", "Unmatched callback attached"
    QUERY_REQUESTED = "query_requested", "STK Query requested"
    REVIEW_RESOLVED = "review_resolved", "Review resolved"
    REFUNDED = "refunded", "Refund paid out"
    NOTE = "note", "Note"


class EventSource(models.TextChoices):
    CALLBACK = "callback", "Daraja callback"
    QUERY = "query", "STK Query"
    API = "api", "API"
    ADMIN = "admin", "Admin"
    SYSTEM = "system", "System"
    RESULT = "result", "Daraja async result"
    STATUS_QUERY = "status_query", "Transaction Status"
    STATEMENT = "statement", "M-PESA statement"


class AppendOnlyError(Exception):
    pass


class AppendOnlyEvent(models.Model):
    """What happened, who or what said so (source, actor) and the evidence (data, inbox). Never edited."""

    source = models.CharField(max_length=16, choices=EventSource.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    from_status = models.CharField(max_length=24, blank=True)
    to_status = models.CharField(max_length=24, blank=True)
    message = models.CharField(max_length=512, blank=True)
    data = models.JSONField(default=dict, blank=True)
    inbox = models.ForeignKey(
        "payments.CallbackInbox", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        abstract = True
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.source})"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise AppendOnlyError(f"{self._meta.verbose_name_plural.capitalize()} are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError(f"{self._meta.verbose_name_plural.capitalize()} are append-only.")


class PaymentEvent(AppendOnlyEvent):
    """Append-only history of what happened to a payment and why."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="events")
    kind = models.CharField(max_length=32, choices=EventKind.choices)

    class Meta(AppendOnlyEvent.Meta):
        pass


class InboxKind(models.TextChoices):
    STK_CALLBACK = "stk_callback", "STK callback"
    STK_CALLBACK_LEGACY = "stk_callback_legacy", "STK callback (legacy path)"
    RESULT = "result", "Async result"
    QUEUE_TIMEOUT = "queue_timeout", "Queue timeout"


class InboxStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    PROCESSED = "processed", "Processed"
    UNMATCHED = "unmatched", "Unmatched"
    REJECTED = "rejected", "Rejected"
    FAILED = "failed", "Processing failed"


class CallbackInbox(models.Model):
    """Every inbound Daraja request, stored before it is processed."""

    kind = models.CharField(max_length=24, choices=InboxKind.choices)
    status = models.CharField(
        max_length=16, choices=InboxStatus.choices, default=InboxStatus.RECEIVED, db_index=True
    )
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    path = models.CharField(max_length=255, blank=True)
    headers = models.JSONField(default=dict, blank=True)
    body = models.TextField(blank=True, help_text="Raw body, capped.")
    body_size = models.PositiveIntegerField(default=0)
    body_sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    correlation_id = models.CharField(
        max_length=64, blank=True, db_index=True, help_text="CheckoutRequestID or ConversationID."
    )
    payment = models.ForeignKey(
        Payment, null=True, blank=True, on_delete=models.SET_NULL, related_name="inbox"
    )
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    duplicates = models.PositiveIntegerField(
        default=0, help_text="Byte-identical copies received after this one was processed (not stored again)."
    )
    last_received_at = models.DateTimeField(null=True, blank=True, help_text="When the last copy arrived.")
    claimed = models.JSONField(
        default=dict,
        blank=True,
        help_text="What an unauthenticated callback claims (receipt, amount, date): kept here as evidence, "
        "never copied onto a payment.",
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name = "callback inbox entry"
        verbose_name_plural = "callback inbox"
        permissions = [("reprocess_inbox", "Can process a callback inbox entry again")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} {self.status}"


# --- Refunds ----------------------------------------------------------------------------------------
class RefundStatus(models.TextChoices):
    REQUESTED = "requested", "Awaiting approval"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    SUBMITTING = "submitting", "Submitting"
    SUBMITTED = "submitted", "Submitted"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    UNKNOWN = "unknown", "Outcome unknown"
    OVER_REFUNDED = "over_refunded", "Succeeded, over-refund: recover from customer"


# Money may still move for these: at most one per payment, and they count against what can be refunded.
REFUND_IN_FLIGHT_STATUSES = (
    RefundStatus.REQUESTED,
    RefundStatus.APPROVED,
    RefundStatus.SUBMITTING,
    RefundStatus.SUBMITTED,
    RefundStatus.UNKNOWN,
)


class RefundMethod(models.TextChoices):
    REVERSAL = "reversal", "Reversal (full)"
    B2C = "b2c", "B2C payment (partial)"


class Refund(models.Model):
    """Money given back for a paid M-Pesa attempt: a full Reversal, or a partial B2C payment."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    status = models.CharField(
        max_length=16, choices=RefundStatus.choices, default=RefundStatus.REQUESTED, db_index=True
    )
    method = models.CharField(max_length=16, choices=RefundMethod.choices)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default="KES")
    reason = models.CharField(max_length=200, help_text="Shown to the customer.")
    internal_note = models.TextField(blank=True, help_text="Staff only.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    rejected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Our own stable key: B2C's OriginatorConversationID ("avoid double disbursement", daraja.md §6.4).
    idempotency_key = models.CharField(max_length=64, unique=True)
    original_receipt = models.CharField(
        max_length=32, blank=True, db_index=True, help_text="Receipt of the payment being refunded."
    )
    originator_conversation_id = models.CharField(max_length=128, blank=True, db_index=True)
    conversation_id = models.CharField(max_length=64, blank=True, db_index=True)
    transaction_id = models.CharField(
        max_length=32,
        blank=True,
        help_text="M-Pesa receipt of the reversal or B2C payment (unique when set).",
    )
    result_code = models.CharField(max_length=16, blank=True)
    result_desc = models.CharField(max_length=512, blank=True)
    # The latest Transaction Status request about this refund; its Result comes back with these ids.
    status_query_originator_id = models.CharField(max_length=128, blank=True, db_index=True)
    status_query_conversation_id = models.CharField(max_length=64, blank=True, db_index=True)
    status_query_count = models.PositiveIntegerField(default=0)
    next_check_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(
        null=True, blank=True, help_text="Recorded as submitting, just before the call to Daraja."
    )
    accepted_at = models.DateTimeField(null=True, blank=True, help_text="Daraja acknowledged the request.")
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
            # Two staff clicking "refund" at once: the second insert fails here even if a lock was missed.
            models.UniqueConstraint(
                fields=["payment"],
                condition=Q(status__in=["requested", "approved", "submitting", "submitted", "unknown"]),
                name="refund_one_in_flight_per_payment",
            ),
            # One M-Pesa receipt is one refund, like a payment's receipt.
            models.UniqueConstraint(
                fields=["transaction_id"],
                condition=~Q(transaction_id=""),
                name="refund_transaction_id_unique",
            ),
        ]
        permissions = [
            ("approve_refund", "Can approve refunds above the approval threshold"),
            ("resolve_refund", "Can settle a refund whose outcome is unknown (send again, resolve by hand)"),
        ]

    def __str__(self) -> str:
        return f"Refund #{self.pk} KES {self.amount} {self.status}"

    @property
    def is_in_flight(self) -> bool:
        return self.status in REFUND_IN_FLIGHT_STATUSES


class RefundEventKind(models.TextChoices):
    REQUESTED = "requested", "Requested"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    SUBMITTING = "submitting", "Recorded before sending"
    ACCEPTED = "accepted", "Accepted by Daraja"
    SEND_REFUSED = "send_refused", "Refused by Daraja"
    SEND_DEFERRED = "send_deferred", "Not sent; will retry"
    RESULT_APPLIED = "result_applied", "Result applied"
    QUEUE_TIMEOUT = "queue_timeout", "Queue timeout"
    OUTCOME_UNKNOWN = "outcome_unknown", "Outcome unknown"
    STATUS_QUERY_SENT = "status_query_sent", "Transaction Status sent"
    STATUS_QUERY_FAILED = "status_query_failed", "Transaction Status not sent"
    STATUS_RESULT = "status_result", "Transaction Status answer"
    DUPLICATE_RESULT = "duplicate_result", "Duplicate result"
    DISAGREEMENT = "disagreement", "Sources disagree"
    RESOLVED = "resolved", "Resolved by staff"
    OVER_REFUNDED = "over_refunded", "Paid out beyond what was paid"
    NOTE = "note", "Note"


class RefundEvent(AppendOnlyEvent):
    """Append-only history of a refund: every transition and every answer from Daraja."""

    refund = models.ForeignKey(Refund, on_delete=models.PROTECT, related_name="events")
    kind = models.CharField(max_length=32, choices=RefundEventKind.choices)

    class Meta(AppendOnlyEvent.Meta):
        pass
