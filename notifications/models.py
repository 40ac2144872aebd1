"""Outbox and log of customer and staff messages, the templates they are rendered from, and the switches."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from notifications.masking import mask_recipient
from orders.models import Language


class Channel(models.TextChoices):
    SMS = "sms", "SMS"
    EMAIL = "email", "Email"


class NotificationEvent(models.TextChoices):
    PAYMENT_INITIATED = "payment_initiated", "Payment initiated"
    PAYMENT_COMPLETED = "payment_completed", "Payment completed"
    PAYMENT_FAILED = "payment_failed", "Payment failed"
    ORDER_CONFIRMED = "order_confirmed", "Order confirmed (cash on delivery)"
    ORDER_CANCELLED = "order_cancelled", "Order cancelled"
    REFUND_SUCCEEDED = "refund_succeeded", "Refund succeeded"
    REFUND_FAILED = "refund_failed", "Refund failed (staff)"
    ALERT_OPENED = "alert_opened", "Alert opened (staff)"
    ALERT_REMINDER = "alert_reminder", "Alert still open (staff)"
    ALERT_RESOLVED = "alert_resolved", "Alert resolved (staff)"


# Which channels each event can use. Staff hear about failed refunds by email only.
EVENT_CHANNELS: dict[str, tuple[str, ...]] = {
    NotificationEvent.PAYMENT_INITIATED: (Channel.SMS, Channel.EMAIL),
    NotificationEvent.PAYMENT_COMPLETED: (Channel.SMS, Channel.EMAIL),
    NotificationEvent.PAYMENT_FAILED: (Channel.SMS, Channel.EMAIL),
    NotificationEvent.ORDER_CONFIRMED: (Channel.SMS, Channel.EMAIL),
    NotificationEvent.ORDER_CANCELLED: (Channel.SMS, Channel.EMAIL),
    NotificationEvent.REFUND_SUCCEEDED: (Channel.SMS, Channel.EMAIL),
    NotificationEvent.REFUND_FAILED: (Channel.EMAIL,),
    NotificationEvent.ALERT_OPENED: (Channel.SMS, Channel.EMAIL),
    NotificationEvent.ALERT_REMINDER: (Channel.SMS, Channel.EMAIL),
    NotificationEvent.ALERT_RESOLVED: (Channel.SMS, Channel.EMAIL),
}
# Alerts go to ALERT_EMAILS and, by SMS, to the on-call numbers ALERT_SMS_NUMBERS (reports.alerts).
ALERT_EVENTS = (
    NotificationEvent.ALERT_OPENED,
    NotificationEvent.ALERT_REMINDER,
    NotificationEvent.ALERT_RESOLVED,
)
# Messages to staff, shipped in English only.
STAFF_EVENTS = (NotificationEvent.REFUND_FAILED, *ALERT_EVENTS)


class NotificationStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"
    REJECTED = "rejected", "Rejected"
    UNKNOWN = "unknown", "Outcome unknown"


FINAL_STATUSES = (
    NotificationStatus.SENT,
    NotificationStatus.DELIVERED,
    NotificationStatus.FAILED,
    NotificationStatus.REJECTED,
    NotificationStatus.UNKNOWN,
)


class NotificationRule(models.Model):
    """On/off switch per event and channel, editable in the admin (seeded all on)."""

    event = models.CharField(max_length=32, choices=NotificationEvent.choices)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["event", "channel"]
        constraints = [models.UniqueConstraint(fields=["event", "channel"], name="notification_rule_unique")]

    def __str__(self) -> str:
        state = "on" if self.enabled else "off"
        return f"{self.get_event_display()} by {self.get_channel_display()}: {state}"


class MessageTemplate(models.Model):
    """Django template text per event, channel and language. See notifications.context for the variables."""

    event = models.CharField(max_length=32, choices=NotificationEvent.choices)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    language = models.CharField(max_length=2, choices=Language.choices, default=Language.ENGLISH)
    subject = models.CharField(max_length=200, blank=True, help_text="Email only.")
    body = models.TextField(help_text="The SMS text, or the plain-text part of the email.")
    html_body = models.TextField(
        blank=True,
        help_text="Email only. Leave empty to wrap the plain text in the standard HTML layout.",
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["event", "channel", "language"]
        constraints = [
            models.UniqueConstraint(fields=["event", "channel", "language"], name="message_template_unique")
        ]

    def __str__(self) -> str:
        return f"{self.get_event_display()} / {self.get_channel_display()} / {self.language}"

    def clean(self) -> None:
        # A broken template is refused here, when it is saved, never discovered at send time.
        from notifications.rendering import TemplateProblem, validate_template

        errors: dict[str, list[str]] = {}
        if self.channel not in EVENT_CHANNELS.get(self.event, ()):
            errors.setdefault("channel", []).append(
                f"{self.get_event_display()} is not sent by {self.get_channel_display()}."
            )
        if self.channel == Channel.EMAIL and not self.subject.strip():
            errors.setdefault("subject", []).append("An email needs a subject.")
        if self.channel == Channel.SMS and (self.subject or self.html_body):
            errors.setdefault("subject", []).append("SMS templates have no subject or HTML.")
        for field, autoescape in (("subject", False), ("body", False), ("html_body", True)):
            try:
                validate_template(getattr(self, field), autoescape=autoescape)
            except TemplateProblem as exc:
                errors.setdefault(field, []).append(str(exc))
        if errors:
            raise ValidationError(errors)


class Notification(models.Model):
    """One message to one recipient: the outbox row, written in the transaction of the status change."""

    dedupe_key = models.CharField(
        max_length=200, unique=True, help_text="event:subject:channel[:recipient]: one message per event."
    )
    event = models.CharField(max_length=32, choices=NotificationEvent.choices, db_index=True)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    template = models.ForeignKey(
        MessageTemplate, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    recipient = models.CharField(max_length=254, help_text="2547XXXXXXXX for SMS, an address for email.")
    language = models.CharField(max_length=2, choices=Language.choices, default=Language.ENGLISH)
    subject = models.CharField(max_length=200, blank=True)
    body = models.TextField()
    html_body = models.TextField(blank=True)
    status = models.CharField(
        max_length=16, choices=NotificationStatus.choices, default=NotificationStatus.QUEUED, db_index=True
    )
    provider = models.CharField(max_length=32, blank=True)
    provider_message_id = models.CharField(max_length=128, blank=True, db_index=True)
    provider_status = models.CharField(
        max_length=64, blank=True, help_text="Last status word from the provider or its delivery report."
    )
    cost = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    cost_currency = models.CharField(max_length=3, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Send attempts since queued (or resent).")
    uncertain_attempts = models.PositiveIntegerField(
        default=0, help_text="Attempts that timed out after the provider may have accepted the message."
    )
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    payment = models.ForeignKey(
        "payments.Payment", null=True, blank=True, on_delete=models.SET_NULL, related_name="notifications"
    )
    order = models.ForeignKey(
        "orders.Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="notifications"
    )
    # A plain id rather than a foreign key: the Refund model lives in payments and may be swapped later.
    refund_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    resend_count = models.PositiveIntegerField(default=0)
    resent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"], condition=Q(status="queued"), name="notification_due_idx"
            )
        ]
        permissions = [("resend_notification", "Can send a notification again")]

    def __str__(self) -> str:
        return f"{self.get_event_display()} by {self.get_channel_display()} to {self.masked_recipient}"

    @property
    def masked_recipient(self) -> str:
        return mask_recipient(self.channel, self.recipient)


class AttemptOutcome(models.TextChoices):
    SENT = "sent", "Accepted by the provider"
    RETRY = "retry", "Temporary error, will retry"
    FAILED = "failed", "Failed"
    REJECTED = "rejected", "Rejected, not retried"
    UNCERTAIN = "uncertain", "Timed out; the provider may have accepted it"


class NotificationAttempt(models.Model):
    """Append-only record of each send attempt (what the provider said, how long it took)."""

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    outcome = models.CharField(max_length=16, choices=AttemptOutcome.choices)
    provider = models.CharField(max_length=32, blank=True)
    detail = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"Attempt {self.number}: {self.get_outcome_display()}"
