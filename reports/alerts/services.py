"""The only code that changes alerts: the minute's evaluation, acknowledging and resolving.

Lifecycle: a rule's condition holds -> an alert opens (with the figures that opened it) and ALERT_EMAILS
(and ALERT_SMS_NUMBERS, when the rule says SMS) are told; while it stays open and nobody acknowledges it,
a reminder goes out every `remind_after_minutes`; once the condition has been clear for
`resolve_after_minutes` it resolves by itself (or staff resolve it with a note) and they are told again.

At most one unresolved alert per rule and scope: a partial unique constraint settles two evaluations
running at once (the schedule and `manage.py evaluate_alerts`, or two workers); the loser's insert fails
and it leaves the winner's alert alone. Messages go through the notification outbox in the same
transaction as the change, one per alert, event (and reminder) and recipient, sent after commit and
retried like customer messages.
"""

import datetime as dt
import hashlib
import logging
from collections import Counter

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditAction
from audit.services import audit_record, changes_between, field_values
from common.phone import InvalidPhoneNumber, normalize_msisdn
from notifications.context import alert_context
from notifications.models import Channel, Notification, NotificationEvent
from notifications.services import channel_enabled, notification_queue
from reports.alerts.checks import CHECKS, Evaluation, Finding
from reports.dashboard import percent
from reports.models import ALERT_ACTIVE_STATUSES, Alert, AlertRule, AlertStatus
from reports.periods import NAIROBI

logger = logging.getLogger(__name__)

ACKNOWLEDGE_PERMISSION = "reports.acknowledge_alert"
RESOLVE_PERMISSION = "reports.resolve_alert"
# What staff change on an alert; their audit record keeps the before/after of these.
ALERT_AUDIT_FIELDS = ("status", "acknowledged_by", "resolved_by", "resolution_note")
DEDUPE_KEY_MAX = 200


class AlertError(Exception):
    """An alert change that cannot be made (already resolved, a note missing)."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


# --- evaluation --------------------------------------------------------------------------------------
def alert_evaluate_all(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Run every enabled rule once and move alerts along: open, remind, clear, resolve.

    Each alert changes in a transaction of its own, so one rule that fails (logged) neither stops the
    others nor undoes what they did. Returns counts of what happened, for the task result and the command.
    """
    now = now or timezone.now()
    evaluation = Evaluation(now)
    done: Counter = Counter()
    active = {
        (alert.rule_id, alert.scope): alert.pk
        for alert in Alert.objects.filter(status__in=ALERT_ACTIVE_STATUSES).only("pk", "rule_id", "scope")
    }
    rules = list(AlertRule.objects.all())
    for rule in rules:
        mine = {scope: pk for (rule_id, scope), pk in active.items() if rule_id == rule.pk}
        if not rule.enabled:
            for alert_id in mine.values():
                done[_alert_clear(alert_id, None, now, switched_off=True)] += 1
            continue
        try:
            findings = {finding.scope: finding for finding in CHECKS[rule.kind](rule, evaluation)}
        except Exception:
            logger.exception("Alert rule %r (%s) could not be evaluated", rule.name, rule.kind)
            done["errors"] += 1
            continue
        done["rules"] += 1
        for scope, finding in findings.items():
            if not finding.firing:
                continue
            if scope in mine:
                done[_alert_still_firing(mine[scope], finding, now)] += 1
            else:
                done["opened" if _alert_open(rule, finding, now) else "already_open"] += 1
        for scope, alert_id in mine.items():
            finding = findings.get(scope)
            if finding is None or not finding.firing:
                done[_alert_clear(alert_id, finding, now)] += 1
    done.pop("", None)
    return dict(done)


def _alert_open(rule: AlertRule, finding: Finding, now: dt.datetime) -> Alert | None:
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                rule=rule,
                scope=finding.scope,
                status=AlertStatus.OPEN,
                title=finding.title[:300],
                figures=finding.figures,
                latest_figures=finding.figures,
                opened_at=now,
                last_seen_at=now,
            )
            _notify(alert, NotificationEvent.ALERT_OPENED)
    except IntegrityError:
        # Another evaluation opened it a moment ago (alert_one_active_per_rule_scope): theirs stands.
        logger.info("Alert for %r (%s) already opened by another evaluation", rule.name, finding.scope)
        return None
    logger.warning("Alert #%s opened (%s): %s", alert.pk, rule.name, alert.title)
    return alert


def _locked(alert_id: int) -> Alert | None:
    """The alert, row-locked, if it is still unresolved."""
    return Alert.objects.select_for_update().filter(pk=alert_id, status__in=ALERT_ACTIVE_STATUSES).first()


def _alert_still_firing(alert_id: int, finding: Finding, now: dt.datetime) -> str:
    with transaction.atomic():
        alert = _locked(alert_id)
        if alert is None:
            return ""
        alert.title = finding.title[:300]  # what is wrong now; `figures` keeps what opened it
        alert.latest_figures = finding.figures
        alert.last_seen_at = now
        alert.clear_since = None
        every = alert.rule.remind_after_minutes
        due = (
            alert.status == AlertStatus.OPEN
            and every
            and now - (alert.last_reminded_at or alert.opened_at) >= dt.timedelta(minutes=every)
        )
        if due:
            alert.reminders_sent += 1
            alert.last_reminded_at = now
        alert.save(
            update_fields=[
                "title",
                "latest_figures",
                "last_seen_at",
                "clear_since",
                "reminders_sent",
                "last_reminded_at",
            ]
        )
        if due:
            _notify(alert, NotificationEvent.ALERT_REMINDER, reminder=alert.reminders_sent)
            return "reminded"
    return "still_open"


def _alert_clear(
    alert_id: int, finding: Finding | None, now: dt.datetime, *, switched_off: bool = False
) -> str:
    """The condition does not hold (or its rule is off): resolve once it has been clear long enough."""
    with transaction.atomic():
        alert = _locked(alert_id)
        if alert is None:
            return ""
        if finding is not None:
            alert.latest_figures = finding.figures
        if alert.clear_since is None:
            alert.clear_since = now
        wait = dt.timedelta(minutes=alert.rule.resolve_after_minutes)
        if switched_off:
            _resolve(alert, now=now, actor=None, note="Resolved by itself: its rule was switched off.")
            return "resolved"
        if now - alert.clear_since >= wait:
            since = timezone.localtime(alert.clear_since, NAIROBI)
            _resolve(
                alert,
                now=now,
                actor=None,
                note=f"Resolved by itself: the condition has been clear since {since:%H:%M} "
                f"({alert.rule.resolve_after_minutes} min or more).",
            )
            return "resolved"
        alert.save(update_fields=["latest_figures", "clear_since"])
    return "clearing"


def _resolve(alert: Alert, *, now: dt.datetime, actor, note: str) -> None:
    """Inside the caller's transaction, on the locked alert."""
    alert.status = AlertStatus.RESOLVED
    alert.resolved_at = now
    alert.resolved_by = actor
    alert.resolution_note = note
    alert.save()
    _notify(alert, NotificationEvent.ALERT_RESOLVED)
    logger.warning("Alert #%s resolved: %s", alert.pk, note)


# --- staff -------------------------------------------------------------------------------------------
def _require(actor, permission: str) -> None:
    if not (actor is not None and actor.is_active and actor.is_staff and actor.has_perm(permission)):
        raise PermissionDenied(f"You do not have the permission {permission}.")


def alert_acknowledge(*, alert_id: int, actor) -> Alert:
    """Someone is on it: reminders stop; the alert still resolves by itself once the condition clears."""
    _require(actor, ACKNOWLEDGE_PERMISSION)
    with transaction.atomic():
        alert = Alert.objects.select_for_update().filter(pk=alert_id).first()
        if alert is None:
            raise AlertError(f"There is no alert #{alert_id}.")
        if alert.status == AlertStatus.ACKNOWLEDGED:
            who = alert.acknowledged_by.get_username() if alert.acknowledged_by else "someone"
            raise AlertError(f"Alert #{alert.pk} is already acknowledged by {who}.")
        if alert.status != AlertStatus.OPEN:
            raise AlertError(f"Alert #{alert.pk} is {alert.get_status_display().lower()}.")
        before = field_values(alert, ALERT_AUDIT_FIELDS)
        alert.status = AlertStatus.ACKNOWLEDGED
        alert.acknowledged_at = timezone.now()
        alert.acknowledged_by = actor
        alert.save(update_fields=["status", "acknowledged_at", "acknowledged_by"])
        audit_record(
            action=AuditAction.ALERT_ACKNOWLEDGED,
            actor=actor,
            obj=alert,
            changes=changes_between(before, field_values(alert, ALERT_AUDIT_FIELDS)),
        )
    logger.info("Alert #%s acknowledged by %s", alert.pk, actor.get_username())
    return alert


def alert_resolve(*, alert_id: int, actor, note: str) -> Alert:
    """Staff close an alert with a note (what was done). If the condition still holds, the next
    evaluation opens a new alert: acknowledging is the way to say "we know"."""
    _require(actor, RESOLVE_PERMISSION)
    note = (note or "").strip()
    if not note:
        raise AlertError("Say what was done (or why nothing needs doing).", field="note")
    with transaction.atomic():
        alert = Alert.objects.select_for_update().filter(pk=alert_id).first()
        if alert is None:
            raise AlertError(f"There is no alert #{alert_id}.")
        if alert.status not in ALERT_ACTIVE_STATUSES:
            raise AlertError(f"Alert #{alert.pk} is already resolved.")
        before = field_values(alert, ALERT_AUDIT_FIELDS)
        _resolve(alert, now=timezone.now(), actor=actor, note=f"Resolved by {actor.get_username()}: {note}")
        audit_record(
            action=AuditAction.ALERT_RESOLVED,
            actor=actor,
            obj=alert,
            changes=changes_between(before, field_values(alert, ALERT_AUDIT_FIELDS)),
            reason=note,
        )
    return alert


# --- messages ----------------------------------------------------------------------------------------
RATE_KEYS = {"attempt_success", "technical_success", "query_share", "share"}
LABELS = {
    "window_minutes": "Window (minutes)",
    "finished": "Finished attempts",
    "failed_not_by_customer": "Failed, not by the customer",
    "min_finished": "Judged from (finished attempts)",
    "min_settled": "Judged from (settled attempts)",
    "min_pushes": "Judged from (accepted pushes)",
    "pushes_accepted": "Pushes accepted by Daraja",
    "callbacks_received": "Callbacks received",
    "settled_by_callback": "Settled by callback",
    "settled_by_query": "Settled by STK Query",
    "query_share": "Settled by STK Query (share)",
    "top_codes": "Result codes",
    "by_function": "By task",
    "payments": "Payments not on the statement",
    "amount_kes": "Amount (KES)",
    "oldest_completed": "Oldest completed at",
    "min_payments": "Fires from (payments)",
    "list": "Admin list",
}


def _figure(key: str, value) -> str:
    if isinstance(value, float) and (key in RATE_KEYS or (key == "threshold" and value <= 1)):
        return percent(value)
    if key == "list" and value:
        return settings.SITE_BASE_URL + value
    return "–" if value is None else str(value)


def describe_figures(figures: dict) -> list[str]:
    """The figures as lines people read: "Finished attempts: 25", rates as percentages."""
    lines = []
    for key, value in figures.items():
        if key == "baseline" and isinstance(value, dict):
            lines.append(f"Same hours of the previous {value.get('days')} days:")
            lines.extend(
                f"- {line}" for line in describe_figures({k: v for k, v in value.items() if k != "days"})
            )
        elif isinstance(value, dict):
            lines.append(f"{LABELS.get(key, key.replace('_', ' ').capitalize())}:")
            lines.extend(f"- {k}: {_figure(k, v)}" for k, v in value.items())
        else:
            lines.append(f"{LABELS.get(key, key.replace('_', ' ').capitalize())}: {_figure(key, value)}")
    return lines


def _emails() -> list[str]:
    return [address.strip() for address in settings.ALERT_EMAILS if address.strip()]


def _sms_numbers() -> list[str]:
    numbers = []
    for raw in settings.ALERT_SMS_NUMBERS:
        if not raw.strip():
            continue
        try:
            numbers.append(normalize_msisdn(raw))
        except InvalidPhoneNumber:
            logger.error("An ALERT_SMS_NUMBERS entry is not a Kenyan mobile number: it gets no alerts")
    return numbers


def _dedupe_key(event: str, subject: str, channel: str, recipient: str) -> str:
    key = f"{event}:{subject}:{channel}:{recipient.lower()}"
    if len(key) <= DEDUPE_KEY_MAX:
        return key
    return f"{event}:{subject}:{channel}:{hashlib.sha256(recipient.lower().encode()).hexdigest()}"


def _notify(alert: Alert, event: str, *, reminder: int = 0) -> list[Notification]:
    """Outbox rows for everyone to tell, inside the caller's transaction (sent after commit)."""
    recipients = [(Channel.EMAIL, address) for address in _emails()]
    if alert.rule.sms:
        recipients += [(Channel.SMS, number) for number in _sms_numbers()]
    if not recipients:
        logger.warning("Alert #%s: ALERT_EMAILS and ALERT_SMS_NUMBERS are empty, nobody was told", alert.pk)
        return []
    figures = alert.figures if event == NotificationEvent.ALERT_OPENED else alert.latest_figures
    context = alert_context(
        alert_id=alert.pk,
        rule_name=alert.rule.name,
        title=alert.title,
        details="\n".join(describe_figures(figures)),
        opened_at=f"{timezone.localtime(alert.opened_at, NAIROBI):%-d %b %Y %H:%M}",
        resolution=alert.resolution_note,
        admin_url=settings.SITE_BASE_URL + reverse("admin:reports_alert_change", args=[alert.pk]),
    )
    subject = f"alert-{alert.pk}" + (f"-reminder-{reminder}" if reminder else "")
    enabled = {channel: channel_enabled(event=event, channel=channel) for channel in Channel.values}
    queued = []
    for channel, recipient in recipients:
        if not enabled[channel]:
            continue
        notification = notification_queue(
            event=event,
            channel=channel,
            recipient=recipient,
            language="en",
            context=context,
            dedupe_key=_dedupe_key(event, subject, channel, recipient),
        )
        if notification is not None:
            queued.append(notification)
    return queued
