"""The audit trail: who did what to which object, from where, why, and what it changed.

Append-only. A record is written in the same transaction as the change it describes (so a change that
rolls back leaves no record, and no committed change lacks one). The application cannot edit or delete a
record: the model and its queryset refuse, the admin offers neither, and on PostgreSQL a trigger refuses
UPDATE and DELETE from any client (migration 0002).
"""

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone


class AuditImmutable(Exception):
    """An audit record was about to be changed or deleted."""


class AuditAction(models.TextChoices):
    # Payments
    PAYMENT_QUERIED = "payment_queried", "Asked M-Pesa about a payment"
    PAYMENT_RETRIED = "payment_retried", "Sent a new M-Pesa prompt"
    CASH_COLLECTED = "cash_collected", "Recorded cash as collected"
    CASH_NOT_COLLECTED = "cash_not_collected", "Recorded cash as not collected"
    REVIEW_RESOLVED = "review_resolved", "Resolved a payment under review"
    RECEIPT_ENTERED = "receipt_entered", "Entered an M-Pesa receipt"
    CALLBACK_ATTACHED = "callback_attached", "Attached an unmatched callback"
    INBOX_REPROCESSED = "inbox_reprocessed", "Processed a callback inbox row again"
    ORDER_CANCELLED = "order_cancelled", "Cancelled an order"
    RECEIPT_FROM_STATEMENT = "receipt_from_statement", "Filled a receipt from the M-PESA statement"
    # Statement reconciliation
    STATEMENT_IMPORTED = "statement_imported", "Imported an M-PESA statement"
    STATEMENT_LINE_ATTACHED = "statement_line_attached", "Attached a statement line to a payment"
    RECONCILIATION_EXPECTED = "reconciliation_expected", "Marked a reconciliation exception as expected"
    RECONCILIATION_REFUND_OPENED = "reconciliation_refund_opened", "Opened a refund for a double payment"
    # Refunds
    REFUND_REQUESTED = "refund_requested", "Requested a refund"
    REFUND_APPROVED = "refund_approved", "Approved a refund"
    REFUND_REJECTED = "refund_rejected", "Rejected a refund"
    REFUND_RESENT = "refund_resent", "Sent a refund again"
    REFUND_RESOLVED = "refund_resolved", "Resolved a refund by hand"
    REFUND_QUERIED = "refund_queried", "Asked M-Pesa about a refund"
    # Customers and alerts
    NOTIFICATION_RESENT = "notification_resent", "Sent a notification again"
    ALERT_ACKNOWLEDGED = "alert_acknowledged", "Acknowledged an alert"
    ALERT_RESOLVED = "alert_resolved", "Resolved an alert"
    # Data leaving the system
    EXPORT_CREATED = "export_created", "Exported a list"
    EXPORT_DOWNLOADED = "export_downloaded", "Downloaded an export"
    # Records edited in the admin (templates, alert rules, report subscriptions, users, roles)
    CREATED = "created", "Created"
    CHANGED = "changed", "Changed"
    DELETED = "deleted", "Deleted"
    PERMISSIONS_CHANGED = "permissions_changed", "Changed roles or permissions"
    # Access
    TOKEN_ISSUED = "token_issued", "Issued an API token"
    TOKEN_REVOKED = "token_revoked", "Revoked an API token"
    LOGIN_SUCCEEDED = "login_succeeded", "Signed in"
    LOGIN_FAILED = "login_failed", "Failed to sign in"
    LOGIN_LOCKED_OUT = "login_locked_out", "Locked out after failed sign-ins"
    LOGGED_OUT = "logged_out", "Signed out"


class AuditEntryQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AuditImmutable("Audit records cannot be changed.")

    def delete(self):
        raise AuditImmutable("Audit records cannot be deleted.")

    # bulk_update would bypass update(); refuse it too.
    def bulk_update(self, objs, fields, batch_size=None):
        raise AuditImmutable("Audit records cannot be changed.")


class AuditEntry(models.Model):
    at = models.DateTimeField(default=timezone.now, db_index=True)
    # PROTECT: a person with a trail is deactivated, not deleted. `actor_name` keeps the name they had.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="audit_entries",
        help_text="Empty for the system itself (a scheduled task, a Daraja answer).",
    )
    actor_name = models.CharField(max_length=150, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True, verbose_name="IP address")
    action = models.CharField(max_length=32, choices=AuditAction.choices, db_index=True)
    content_type = models.ForeignKey(
        ContentType, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True, verbose_name="object")
    # {"field": {"before": ..., "after": ...}} for the fields that changed.
    changes = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    reason = models.TextField(blank=True, help_text="The reason or note the person gave.")
    # What else identifies the action: an export's filters and row count, a login's username, ...
    data = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-pk"]
        verbose_name = "audit record"
        verbose_name_plural = "audit trail"
        indexes = [
            models.Index(fields=["content_type", "object_id", "-at"], name="audit_object_timeline"),
            models.Index(fields=["actor", "-at"], name="audit_actor_timeline"),
        ]
        permissions = [("view_all_auditentry", "Can see every person's audit records")]

    def __str__(self) -> str:
        who = self.actor_name or "system"
        return f"{who}: {self.get_action_display()} {self.object_repr}".strip()

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AuditImmutable("Audit records cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditImmutable("Audit records cannot be deleted.")
