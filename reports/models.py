"""Scheduled report emails: who gets which report when (ReportSubscription), what each run did (ReportRun)
and the attachments too large for email that a run kept for download (ReportFile)."""

import datetime as dt

from django.conf import settings
from django.db import models
from django.db.models import Q


class Frequency(models.TextChoices):
    DAILY = "daily", "Daily (covers the previous day)"
    WEEKLY = "weekly", "Weekly (covers the previous Monday–Sunday)"
    MONTHLY = "monthly", "Monthly on the 1st (covers the previous month)"


class Weekday(models.IntegerChoices):
    """Python's numbering (Monday = 0), not cron's."""

    MONDAY = 0, "Monday"
    TUESDAY = 1, "Tuesday"
    WEDNESDAY = 2, "Wednesday"
    THURSDAY = 3, "Thursday"
    FRIDAY = 4, "Friday"
    SATURDAY = 5, "Saturday"
    SUNDAY = 6, "Sunday"


class ReportFormat(models.TextChoices):
    CSV = "csv", "CSV"
    XLSX = "xlsx", "Excel (XLSX)"
    BOTH = "both", "CSV and Excel"


class ReportSubscription(models.Model):
    """A report email sent on a schedule (a django-q2 CRON schedule kept in step by
    reports.report_services.report_subscription_save)."""

    name = models.CharField(max_length=100)
    frequency = models.CharField(max_length=8, choices=Frequency.choices, default=Frequency.DAILY)
    send_at = models.TimeField(default=dt.time(7, 0), help_text="Africa/Nairobi time.")
    weekday = models.PositiveSmallIntegerField(
        choices=Weekday.choices, default=Weekday.MONDAY, help_text="Weekly reports only."
    )
    file_format = models.CharField(
        "attachments", max_length=4, choices=ReportFormat.choices, default=ReportFormat.BOTH
    )
    recipients = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="report_subscriptions",
        limit_choices_to={"is_staff": True, "is_active": True},
        help_text="Staff users (their email address).",
    )
    extra_emails = models.TextField(
        "other addresses", blank=True, help_text="Further addresses, one per line or comma-separated."
    )
    active = models.BooleanField(default=True, help_text="Off: the schedule is paused.")
    schedule = models.OneToOneField(
        "django_q.Schedule",
        null=True,
        blank=True,
        editable=False,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "pk"]

    def __str__(self):
        return self.name


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class RunTrigger(models.TextChoices):
    SCHEDULE = "schedule", "Schedule"
    ADMIN = "admin", "Send now (admin)"
    COMMAND = "command", "send_report command"


class ReportRun(models.Model):
    """One attempt at building and sending a report email."""

    subscription = models.ForeignKey(
        ReportSubscription, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    trigger = models.CharField(max_length=8, choices=RunTrigger.choices)
    frequency = models.CharField(max_length=8, choices=Frequency.choices)
    period_first = models.DateField()
    period_last = models.DateField()
    file_format = models.CharField("attachments", max_length=4, choices=ReportFormat.choices)
    attempt = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(max_length=8, choices=RunStatus.choices, default=RunStatus.RUNNING)
    recipients = models.JSONField(default=list, blank=True)
    attachments = models.JSONField(
        default=list, blank=True, help_text="Each file: name, rows, bytes, and whether it was stored instead."
    )
    error = models.TextField(blank=True)
    retry_at = models.DateTimeField(null=True, blank=True, help_text="When the next attempt is scheduled.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-pk"]
        constraints = [
            # A scheduled task delivered twice (the ORM broker hands out a task again after Q_CLUSTER
            # retry seconds, and a month's report can take longer) claims the same row and stops.
            models.UniqueConstraint(
                fields=["subscription", "period_first", "period_last", "attempt"],
                condition=Q(trigger="schedule"),
                name="report_run_once_per_scheduled_attempt",
            )
        ]
        indexes = [models.Index(fields=["status", "started_at"], name="report_run_status")]

    def __str__(self):
        return f"Report {self.period_first}–{self.period_last} ({self.get_status_display()})"


class ReportFile(models.Model):
    """An attachment larger than REPORT_MAX_ATTACHMENT_BYTES, kept for staff to download."""

    run = models.ForeignKey(ReportRun, on_delete=models.CASCADE, related_name="files")
    name = models.CharField(max_length=200)
    file = models.FileField(upload_to="reports/%Y/%m/", max_length=255)
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    rows = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self):
        return self.name


# --- Alerts -------------------------------------------------------------------------------------------
class AlertKind(models.TextChoices):
    SUCCESS_RATE = "success_rate", "Success rate drop"
    CALLBACK_SILENCE = "callback_silence", "Callback silence"
    QUERY_SHARE = "query_share", "Settled by STK Query instead of callback"
    FAILURE_SPIKE = "failure_spike", "Failure spike (one class or result code)"
    STUCK_ITEMS = "stuck_items", "Stuck items"
    TASK_FAILURES = "task_failures", "Background task failures"
    QUEUE_BACKLOG = "queue_backlog", "Task queue not draining"
    NOTIFICATION_FAILURES = "notification_failures", "SMS / email failures"
    MISSING_FROM_STATEMENT = "missing_from_statement", "Completed but not on the statement"


class AlertRule(models.Model):
    """What to watch and when to speak up. Seeded by a migration (reports.alerts.defaults), edited in the
    admin; reports.alerts.checks reads each field as its kind explains (KIND_HELP there)."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=24, choices=AlertKind.choices)
    enabled = models.BooleanField(default=True)
    window_minutes = models.PositiveIntegerField(
        default=30,
        help_text="How far back the rule looks, in minutes. Stuck items and the task queue: how long an "
        "item may wait before it counts.",
    )
    min_volume = models.PositiveIntegerField(
        default=20,
        help_text="Below this much activity in the window the rule stays quiet: finished attempts (success "
        "rate, failure spike), accepted pushes (callback silence), attempts settled by callback or query "
        "(query share), messages tried (SMS / email failures), items or tasks (the others).",
    )
    threshold = models.FloatField(
        null=True,
        blank=True,
        help_text="Success rate: the lowest acceptable attempt success (0.50 = 50%). Query share, failure "
        "spike, SMS / email failures: the highest acceptable share (0..1). Task queue on Redis: the most "
        "tasks that may wait. Empty: not checked.",
    )
    technical_threshold = models.FloatField(
        null=True, blank=True, help_text="Success rate only: the lowest acceptable technical success (0..1)."
    )
    baseline_points = models.FloatField(
        null=True,
        blank=True,
        help_text="Success rate: also fire when a rate is more than this many points (0.20 = 20 points) "
        "below the same hours of the previous days; query share: above. Empty: no comparison.",
    )
    baseline_days = models.PositiveSmallIntegerField(
        default=7, help_text="How many previous days the comparison above reads (the same hours of each)."
    )
    grace_seconds = models.PositiveIntegerField(
        default=0,
        help_text="Callback silence: pushes younger than this are not counted yet (M-Pesa needs time to "
        "answer).",
    )
    remind_after_minutes = models.PositiveIntegerField(
        default=60, help_text="Remind again while an alert stays open and unacknowledged. 0: never."
    )
    resolve_after_minutes = models.PositiveIntegerField(
        default=10, help_text="An alert resolves by itself once its condition has been clear this long."
    )
    sms = models.BooleanField(
        "SMS", default=True, help_text="Also text the on-call numbers (ALERT_SMS_NUMBERS), besides email."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind", "name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        errors = {}
        shares = ("technical_threshold", "baseline_points")
        if self.kind != AlertKind.QUEUE_BACKLOG:
            shares = ("threshold", *shares)
        for name in shares:
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                errors[name] = "A share or rate between 0 and 1 (0.5 = 50%)."
        if self.kind == AlertKind.QUEUE_BACKLOG and self.threshold is not None and self.threshold < 0:
            errors["threshold"] = "A number of tasks, 0 or more."
        if not self.window_minutes:
            errors["window_minutes"] = "At least one minute."
        if self.kind == AlertKind.CALLBACK_SILENCE and self.grace_seconds >= self.window_minutes * 60:
            errors["grace_seconds"] = "The grace must be shorter than the window."
        if errors:
            raise ValidationError(errors)


class AlertStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


# Not resolved yet: at most one such alert per rule and scope.
ALERT_ACTIVE_STATUSES = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)


class Alert(models.Model):
    """A rule's condition held: open -> acknowledged (someone is on it) -> resolved (by itself once the
    condition clears for the rule's while, or by staff with a note). Changed only by reports.alerts.services."""

    rule = models.ForeignKey(AlertRule, on_delete=models.PROTECT, related_name="alerts")
    scope = models.CharField(
        max_length=64,
        blank=True,
        help_text="What the alert is about within its rule, e.g. class:system, code:1025, sms, "
        "payments_under_review; empty when the rule has one subject.",
    )
    status = models.CharField(
        max_length=16, choices=AlertStatus.choices, default=AlertStatus.OPEN, db_index=True
    )
    title = models.CharField(max_length=300)
    figures = models.JSONField(default=dict, blank=True, help_text="The figures that opened it.")
    latest_figures = models.JSONField(
        default=dict, blank=True, help_text="The figures at the last evaluation."
    )
    opened_at = models.DateTimeField(db_index=True)
    last_seen_at = models.DateTimeField(help_text="The last evaluation at which the condition held.")
    clear_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The condition has not held since then (resolves after the rule's while).",
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty when it resolved by itself.",
    )
    resolution_note = models.TextField(blank=True)
    reminders_sent = models.PositiveIntegerField(default=0)
    last_reminded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-pk"]
        constraints = [
            # Two evaluations at once (the schedule and `evaluate_alerts`, or two workers) both see no open
            # alert; the second insert fails here instead of opening a duplicate and messaging twice.
            models.UniqueConstraint(
                fields=["rule", "scope"],
                condition=Q(status__in=["open", "acknowledged"]),
                name="alert_one_active_per_rule_scope",
            )
        ]
        permissions = [
            ("acknowledge_alert", "Can acknowledge alerts"),
            ("resolve_alert", "Can resolve alerts by hand"),
        ]

    def __str__(self) -> str:
        return f"Alert #{self.pk}: {self.title}"

    @property
    def is_active(self) -> bool:
        return self.status in ALERT_ACTIVE_STATUSES
