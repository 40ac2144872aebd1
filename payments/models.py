"""Payment attempts, their append-only history, and every inbound Daraja request kept raw."""

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q


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
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    initiated_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(condition=Q(refunded_amount__gte=0), name="payment_refunded_not_negative"),
            # One attempt in flight per order: double submits and concurrent retries are settled here.
            models.UniqueConstraint(
                fields=["order"],
                condition=Q(status__in=["pending", "initiated"]),
                name="payment_one_open_attempt_per_order",
            ),
        ]
        permissions = [("review_payment", "Can resolve payments that need review")]

    def __str__(self) -> str:
        return f"Payment #{self.pk} {self.method} {self.amount} {self.status}"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def is_paid(self) -> bool:
        return self.status in PAID_STATUSES

    @property
    def masked_phone(self) -> str:
        from payments.daraja.phone import mask_msisdn

        return mask_msisdn(self.phone)


class EventKind(models.TextChoices):
    CREATED = "created", "Created"
    PUSH_SENT = "push_sent", "STK push sent"
    PUSH_ACCEPTED = "push_accepted", "STK push accepted"
    PUSH_REJECTED = "push_rejected", "STK push rejected"
    PUSH_UNKNOWN = "push_unknown", "STK push outcome unknown"
    RESULT_APPLIED = "result_applied", "Result applied"
    DUPLICATE_RESULT = "duplicate_result", "Duplicate result"
    IGNORED_LATE_EVENT = "ignored_late_event", "Late result ignored"
    DISAGREEMENT = "disagreement", "Sources disagree"
    NEEDS_REVIEW = "needs_review", "Sent to review"
    QUERY_SENT = "query_sent", "STK Query sent"
    QUERY_PENDING = "query_pending", "STK Query: still processing"
    QUERY_FAILED = "query_failed", "STK Query failed"
    EXPIRED = "expired", "Expired"
    STATUS_CHANGED = "status_changed", "Status changed"
    COLLECTED = "collected", "Cash collected"
    REVIEW_RESOLVED = "review_resolved", "Review resolved"
    NOTE = "note", "Note"


class EventSource(models.TextChoices):
    CALLBACK = "callback", "Daraja callback"
    QUERY = "query", "STK Query"
    API = "api", "API"
    ADMIN = "admin", "Admin"
    SYSTEM = "system", "System"


class AppendOnlyError(Exception):
    pass


class PaymentEvent(models.Model):
    """Append-only history of what happened to a payment and why."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="events")
    kind = models.CharField(max_length=32, choices=EventKind.choices)
    source = models.CharField(max_length=16, choices=EventSource.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    from_status = models.CharField(max_length=24, blank=True)
    to_status = models.CharField(max_length=24, blank=True)
    message = models.CharField(max_length=512, blank=True)
    data = models.JSONField(default=dict, blank=True)
    inbox = models.ForeignKey(
        "CallbackInbox", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.source})"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise AppendOnlyError("Payment events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Payment events are append-only.")


class InboxKind(models.TextChoices):
    STK_CALLBACK = "stk_callback", "STK callback"
    STK_CALLBACK_LEGACY = "stk_callback_legacy", "STK callback (legacy path)"
    RESULT = "result", "Async result"
    QUEUE_TIMEOUT = "queue_timeout", "Queue timeout"


class InboxStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    PROCESSED = "processed", "Processed"
    DUPLICATE = "duplicate", "Duplicate"
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

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name = "callback inbox entry"
        verbose_name_plural = "callback inbox"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} {self.status}"
