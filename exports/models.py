"""A list exported from the admin: who asked, which list with which filters, and the file once written."""

from django.conf import settings
from django.db import models


class ExportFormat(models.TextChoices):
    CSV = "csv", "CSV"
    XLSX = "xlsx", "Excel (XLSX)"


class ExportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Being written"
    READY = "ready", "Ready to download"
    FAILED = "failed", "Failed"
    EXPIRED = "expired", "Expired"


class Export(models.Model):
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="exports"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # "payments.payment": the admin list it was exported from.
    list_label = models.CharField(max_length=100)
    # The list's query string (filters, search, ordering), so the same rows can be read again.
    query = models.TextField(blank=True)
    format = models.CharField(max_length=4, choices=ExportFormat.choices)
    full_phones = models.BooleanField(
        default=False, help_text="Phone numbers in full (the requester may see them)."
    )
    status = models.CharField(max_length=10, choices=ExportStatus.choices, default=ExportStatus.QUEUED)
    row_count = models.PositiveIntegerField(null=True, blank=True)
    file = models.FileField(upload_to="exports/%Y/%m/", blank=True)
    size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("export_lists", "Can export lists (payments, orders, refunds, notifications)")]

    def __str__(self) -> str:
        return f"Export #{self.pk} of {self.list_label} ({self.get_format_display()})"
