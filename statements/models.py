"""The organisation's M-PESA statement, stored line by line, and what reconciling it against our records found.

Callbacks and status queries are what Daraja told us; the statement is what actually moved. A line is
identified by its shortcode, receipt number and kind (a charge shares its transaction's receipt), so importing a file twice (or two files whose periods
overlap, or the Pull Transactions job and a file) never stores a line twice.
"""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q


class LineKind(models.TextChoices):
    CUSTOMER_PAYMENT = "customer_payment", "Customer payment"
    REVERSAL = "reversal", "Reversal"
    B2C = "b2c", "B2C payment"
    CHARGE = "charge", "Charge"
    TRANSFER = "transfer", "Transfer / settlement"
    OTHER = "other", "Other"


class ImportSource(models.TextChoices):
    UPLOAD = "upload", "Uploaded in the admin"
    COMMAND = "command", "import_statement command"
    PULL = "pull", "Pull Transactions API"


class StatementImport(models.Model):
    """One file (or one Pull Transactions window) brought in: where it came from and what it held."""

    shortcode = models.CharField(max_length=12)
    source = models.CharField(max_length=8, choices=ImportSource.choices)
    account_name = models.CharField(max_length=200, blank=True)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    file_name = models.CharField(max_length=255, blank=True)
    file_sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    file_format = models.CharField(max_length=8, blank=True)
    imported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    lines_read = models.PositiveIntegerField(default=0)
    lines_new = models.PositiveIntegerField(default=0)
    lines_known = models.PositiveIntegerField(
        default=0, help_text="Lines already stored by an earlier import (same shortcode and receipt)."
    )
    summary = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "statement import"
        permissions = [("import_statement", "Can import M-PESA statements")]

    def __str__(self) -> str:
        return (
            f"Statement import #{self.pk} · {self.shortcode} · {self.file_name or self.get_source_display()}"
        )


class MatchMethod(models.TextChoices):
    NONE = "", "-"
    RECEIPT = "receipt", "Same receipt number"
    LINKED = "linked", "Linked transaction / refund ids"
    DETAILS = "details", "Phone, amount and time (one candidate)"
    STAFF = "staff", "Attached by staff"


class StatementLine(models.Model):
    statement_import = models.ForeignKey(
        StatementImport,
        on_delete=models.PROTECT,
        related_name="lines",
        help_text="The import that first brought this line.",
    )
    shortcode = models.CharField(max_length=12)
    receipt = models.CharField(max_length=32)
    kind = models.CharField(max_length=16, choices=LineKind.choices, db_index=True)
    completed_at = models.DateTimeField()
    initiated_at = models.DateTimeField(null=True, blank=True)
    details = models.CharField(max_length=300, blank=True)
    transaction_status = models.CharField(max_length=32, blank=True)
    paid_in = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    withdrawn = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    balance = models.DecimalField(max_digits=16, decimal_places=2, null=True, blank=True)
    balance_confirmed = models.BooleanField(null=True, blank=True)
    reason_type = models.CharField(max_length=100, blank=True)
    other_party = models.CharField(max_length=200, blank=True, help_text="As the statement shows it.")
    # The digits of the other party's number the statement shows ("2547*****149" -> "2547", "149", 12).
    party_phone_prefix = models.CharField(max_length=12, blank=True)
    party_phone_suffix = models.CharField(max_length=12, blank=True)
    party_phone_length = models.PositiveSmallIntegerField(null=True, blank=True)
    party_name = models.CharField(max_length=150, blank=True)
    linked_transaction_id = models.CharField(max_length=32, blank=True, db_index=True)
    account_number = models.CharField(max_length=64, blank=True, help_text="A/C No.")
    raw = models.JSONField(default=dict, blank=True, help_text="The row as the file had it.")
    payment = models.ForeignKey(
        "payments.Payment",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="statement_lines",
    )
    refund = models.ForeignKey(
        "payments.Refund",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="statement_lines",
    )
    match_method = models.CharField(max_length=8, choices=MatchMethod.choices, blank=True, default="")
    matched_at = models.DateTimeField(null=True, blank=True)
    matched_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-completed_at", "-id"]
        verbose_name = "statement line"
        constraints = [
            # A charge is listed under the receipt of the transaction it was charged for, so the kind is
            # part of what identifies a line (the portal's own statements show both rows with one receipt).
            models.UniqueConstraint(
                fields=["shortcode", "receipt", "kind"], name="statement_line_receipt_unique"
            ),
            # One statement line per payment and per refund: money is matched once.
            models.UniqueConstraint(
                fields=["payment"], condition=Q(payment__isnull=False), name="statement_line_one_per_payment"
            ),
            models.UniqueConstraint(
                fields=["refund"], condition=Q(refund__isnull=False), name="statement_line_one_per_refund"
            ),
        ]
        indexes = [
            models.Index(fields=["shortcode", "completed_at"], name="statement_line_period"),
            models.Index(fields=["receipt"], name="statement_line_receipt"),
        ]

    def __str__(self) -> str:
        return f"{self.receipt} · {self.get_kind_display()} · KES {self.paid_in or -self.withdrawn}"

    @property
    def amount(self) -> Decimal:
        """Money in is positive, money out negative."""
        return self.paid_in - self.withdrawn


class ReconciliationRun(models.Model):
    """One comparison of the statement with our records for a shortcode and period, and its totals."""

    shortcode = models.CharField(max_length=12)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    statement_import = models.ForeignKey(
        StatementImport, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    totals = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "reconciliation run"

    def __str__(self) -> str:
        return f"Reconciliation #{self.pk} · {self.shortcode}"


class ItemKind(models.TextChoices):
    UNRECORDED_LINE = "unrecorded_line", "Received but not recorded"
    MISSING_FROM_STATEMENT = "missing_from_statement", "Completed but not on the statement"
    AMOUNT_DIFFERENCE = "amount_difference", "Amount differs"
    DOUBLE_PAYMENT = "double_payment", "Order paid twice"
    REFUND_WITHOUT_LINE = "refund_without_line", "Refund not on the statement"
    LINE_WITHOUT_REFUND = "line_without_refund", "Money out with no refund"


class ItemStatus(models.TextChoices):
    OPEN = "open", "Open"
    RESOLVED = "resolved", "Resolved by staff"
    CLEARED = "cleared", "Cleared by a later run"


class Resolution(models.TextChoices):
    NONE = "", "-"
    ATTACHED = "attached", "Attached to a payment"
    EXPECTED = "expected", "Marked as expected"
    REFUND_OPENED = "refund_opened", "Refund opened"


class ReconciliationItem(models.Model):
    """One exception staff work through. Kept across runs: `key` names what it is about, so a later run
    finds it again instead of adding another, and clears it when the difference is gone."""

    key = models.CharField(max_length=120, unique=True)
    kind = models.CharField(max_length=24, choices=ItemKind.choices, db_index=True)
    status = models.CharField(
        max_length=8, choices=ItemStatus.choices, default=ItemStatus.OPEN, db_index=True
    )
    shortcode = models.CharField(max_length=12)
    line = models.ForeignKey(
        StatementLine, null=True, blank=True, on_delete=models.PROTECT, related_name="items"
    )
    payment = models.ForeignKey(
        "payments.Payment", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    refund = models.ForeignKey(
        "payments.Refund", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    suggested_payment = models.ForeignKey(
        "payments.Payment",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="A payment with the same phone digits and amount near that time: staff confirm it.",
    )
    amount = models.DecimalField(
        max_digits=14, decimal_places=2, help_text="The money in question (the difference, for amounts)."
    )
    occurred_at = models.DateTimeField(db_index=True)
    detail = models.CharField(max_length=300, blank=True)
    first_run = models.ForeignKey(ReconciliationRun, on_delete=models.PROTECT, related_name="+")
    last_run = models.ForeignKey(ReconciliationRun, on_delete=models.PROTECT, related_name="items")
    resolution = models.CharField(max_length=16, choices=Resolution.choices, blank=True, default="")
    note = models.TextField(blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        verbose_name = "reconciliation exception"
        verbose_name_plural = "reconciliation exceptions"
        indexes = [models.Index(fields=["status", "kind"], name="recon_item_status_kind")]
        permissions = [("resolve_reconciliationitem", "Can resolve reconciliation exceptions")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} · KES {self.amount}"
