"""The only code that creates, sends and updates notifications.

Outbox: the `notification_queue_for_*` functions run inside the transaction of the status change (they are
called by the signal receivers), write one Notification row per message with a unique dedupe key, and
enqueue the send with `transaction.on_commit`: a rollback leaves neither a row nor a message.

Sending claims the row with a conditional UPDATE (queued -> sending), so two workers, a redelivered task
and the sweeper never both send it. Retries: temporary errors wait min(2^(n-1) * 30 s, 1 h) after attempt n,
up to NOTIFICATIONS_MAX_ATTEMPTS, then the row is failed; permanent errors are rejected at once; a send whose
outcome is unknown (timeout after the provider may have accepted it) is resent at most once.
"""

import datetime as dt
import logging
import time
from collections.abc import Callable
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from audit.models import AuditAction
from audit.services import audit_record, changes_between, field_values
from common.phone import InvalidPhoneNumber, normalize_msisdn
from notifications.channels import (
    OutcomeUnknownError,
    PermanentSendError,
    SendResult,
    TransientSendError,
)
from notifications.context import order_context, payment_context, refund_context
from notifications.defaults import default_text
from notifications.exceptions import NotificationInFlight, NotificationPermissionDenied
from notifications.masking import mask_recipient
from notifications.models import (
    EVENT_CHANNELS,
    AttemptOutcome,
    Channel,
    MessageTemplate,
    Notification,
    NotificationAttempt,
    NotificationEvent,
    NotificationRule,
    NotificationStatus,
)
from notifications.rendering import render_message

logger = logging.getLogger(__name__)


NS = NotificationStatus
PAYMENT_EVENTS = {
    "initiated": NotificationEvent.PAYMENT_INITIATED,
    "completed": NotificationEvent.PAYMENT_COMPLETED,
    "failed": NotificationEvent.PAYMENT_FAILED,
}
# How long a freshly queued row waits before the sweeper sends it, should the on_commit enqueue be lost.
ENQUEUE_GRACE = dt.timedelta(seconds=60)


# --- retry policy -------------------------------------------------------------------------------
def retry_delay(attempts: int) -> dt.timedelta:
    """Wait after the n-th failed attempt: 30 s, 60 s, 120 s ... capped at NOTIFICATIONS_RETRY_MAX_SECONDS."""
    seconds = settings.NOTIFICATIONS_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0)
    return dt.timedelta(seconds=min(seconds, settings.NOTIFICATIONS_RETRY_MAX_SECONDS))


# --- queueing (inside the caller's transaction) ----------------------------------------------------
def channel_enabled(*, event: str, channel: str) -> bool:
    enabled = (
        NotificationRule.objects.filter(event=event, channel=channel)
        .values_list("enabled", flat=True)
        .first()
    )
    return enabled is not False  # no rule row: on, like the seeded rules


def template_for(*, event: str, channel: str, language: str) -> MessageTemplate | None:
    """The admin's template in the customer's language, else in English, else the shipped text (unsaved)."""
    templates = {
        t.language: t
        for t in MessageTemplate.objects.filter(event=event, channel=channel, language__in=[language, "en"])
    }
    if language in templates or "en" in templates:
        return templates.get(language) or templates["en"]
    for candidate in (language, "en"):
        shipped = default_text(event, channel, candidate)
        if shipped:
            subject, body = shipped
            return MessageTemplate(
                event=event, channel=channel, language=candidate, subject=subject, body=body
            )
    return None


def notification_queue(
    *,
    event: str,
    channel: str,
    recipient: str,
    language: str,
    context: dict,
    dedupe_key: str,
    payment=None,
    order=None,
    refund_id: int | None = None,
) -> Notification | None:
    """Write one outbox row (once per dedupe key) and send it after commit. Returns None when no template."""
    template = template_for(event=event, channel=channel, language=language)
    if template is None:
        logger.error("No %s template for %s: nothing queued (%s)", channel, event, dedupe_key)
        return None
    rendered = render_message(
        channel=channel,
        subject=template.subject,
        body=template.body,
        html_body=template.html_body,
        context=context,
    )
    notification, created = Notification.objects.get_or_create(
        dedupe_key=dedupe_key,
        defaults={
            "event": event,
            "channel": channel,
            "template": template if template.pk else None,
            "recipient": recipient,
            "language": template.language,
            "subject": rendered.subject,
            "body": rendered.text,
            "html_body": rendered.html,
            "payment": payment,
            "order": order,
            "refund_id": refund_id,
            "next_attempt_at": timezone.now() + ENQUEUE_GRACE,
        },
    )
    if created:
        logger.info(
            "Queued %s %s to %s (notification #%s)",
            event,
            channel,
            mask_recipient(channel, recipient),
            notification.pk,
        )
        transaction.on_commit(partial(notification_enqueue, notification_id=notification.pk), robust=True)
    return notification


def _sms_number(*candidates: str) -> str:
    """The first usable Kenyan mobile number among the candidates, as 2547XXXXXXXX."""
    for raw in candidates:
        if not raw:
            continue
        try:
            return normalize_msisdn(raw)
        except InvalidPhoneNumber:
            continue
    return ""


def _queue_for_order_contact(
    *,
    event: str,
    subject_key: str,
    order,
    sms_to: str,
    context_for: Callable[[str], dict],
    payment=None,
    refund_id=None,
) -> list[Notification]:
    """Messages to the contact the order was placed with: its email, language and SMS choice.

    Never the Customer row or the API user: one storefront token places every customer's orders, and a
    customer row is shared by everyone who gave that phone.
    """
    language = order.contact_language or "en"
    context = context_for(language)
    queued = []
    for channel in EVENT_CHANNELS[event]:
        if not channel_enabled(event=event, channel=channel):
            continue
        if channel == Channel.SMS:
            if order.contact_sms_opt_out or not sms_to:
                continue
            recipient = sms_to
        else:
            if not order.contact_email:
                continue
            recipient = order.contact_email
        notification = notification_queue(
            event=event,
            channel=channel,
            recipient=recipient,
            language=language,
            context=context,
            dedupe_key=f"{event}:{subject_key}:{channel}",
            payment=payment,
            order=order,
            refund_id=refund_id,
        )
        if notification is not None:
            queued.append(notification)
    return queued


def notification_queue_for_payment(*, payment, to_status: str) -> list[Notification]:
    """M-Pesa attempts: prompt sent, paid, failed. Once per payment (a retry is a new payment).

    The SMS goes to the number this attempt prompted (a retry may use another phone), else the order's.
    """
    event = PAYMENT_EVENTS.get(to_status)
    if event is None or payment.method != "mpesa":
        return []
    order = payment.order
    return _queue_for_order_contact(
        event=event,
        subject_key=f"payment-{payment.pk}",
        order=order,
        sms_to=_sms_number(payment.phone, order.contact_phone),
        context_for=lambda language: payment_context(payment, language=language),
        payment=payment,
    )


def notification_queue_for_order(*, order, to_status: str, reason: str = "") -> list[Notification]:
    """Cash-on-delivery orders confirmed, and cancelled orders. Once per order."""
    if to_status == "CONFIRMED" and order.payment_method == "cod":
        event = NotificationEvent.ORDER_CONFIRMED
    elif to_status == "CANCELLED":
        event = NotificationEvent.ORDER_CANCELLED
    else:
        return []
    return _queue_for_order_contact(
        event=event,
        subject_key=f"order-{order.pk}",
        order=order,
        sms_to=_sms_number(order.contact_phone),
        context_for=lambda language: order_context(order, language=language, reason_code=reason),
    )


def notification_queue_for_refund(*, refund, to_status: str) -> list[Notification]:
    """Refund succeeded: tell the customer. Refund failed: tell staff (NOTIFICATIONS_STAFF_EMAILS)."""
    payment = getattr(refund, "payment", None)
    order = getattr(payment, "order", None)
    refund_id = getattr(refund, "pk", None)
    if to_status == "succeeded" and order is not None:
        return _queue_for_order_contact(
            event=NotificationEvent.REFUND_SUCCEEDED,
            subject_key=f"refund-{refund_id}",
            order=order,
            # The refunded attempt's number: the one that paid, and the one the money goes back to.
            sms_to=_sms_number(getattr(payment, "phone", ""), order.contact_phone),
            context_for=lambda language: refund_context(refund, language=language),
            payment=payment,
            refund_id=refund_id,
        )
    if to_status == "failed":
        if not channel_enabled(event=NotificationEvent.REFUND_FAILED, channel=Channel.EMAIL):
            return []
        addresses = [a.strip() for a in settings.NOTIFICATIONS_STAFF_EMAILS if a.strip()]
        if not addresses:
            logger.warning(
                "Refund #%s failed and NOTIFICATIONS_STAFF_EMAILS is empty: nobody told", refund_id
            )
            return []
        context = refund_context(refund, language="en")
        queued = []
        for address in addresses:
            notification = notification_queue(
                event=NotificationEvent.REFUND_FAILED,
                channel=Channel.EMAIL,
                recipient=address,
                language="en",
                context=context,
                dedupe_key=f"{NotificationEvent.REFUND_FAILED}:refund-{refund_id}:email:{address.lower()}",
                payment=payment,
                order=order,
                refund_id=refund_id,
            )
            if notification is not None:
                queued.append(notification)
        return queued
    return []


# --- sending -------------------------------------------------------------------------------------
def notification_enqueue(*, notification_id: int) -> None:
    """Hand the send to django-q2. Never raises: if the broker is down, the sweeper sends it later."""
    from common.queue import enqueue

    try:
        enqueue("notifications.tasks.notification_send_task", notification_id, group="notifications")
    except Exception:
        logger.exception("Could not enqueue notification #%s; the sweeper will retry", notification_id)


def _deliver(notification: Notification) -> SendResult:
    if notification.channel == Channel.SMS:
        from notifications.channels.sms import send_sms

        return send_sms(to=notification.recipient, text=notification.body)
    from notifications.channels.email import send_email

    return send_email(
        to=notification.recipient,
        subject=notification.subject,
        text=notification.body,
        html=notification.html_body,
        tags=[notification.event],
        metadata={"notification_id": str(notification.pk), "event": notification.event},
    )


def notification_send(*, notification_id: int) -> Notification:
    """Claim a queued notification and send it once. A row that is not queued is left alone."""
    now = timezone.now()
    claimed = Notification.objects.filter(pk=notification_id, status=NS.QUEUED).update(
        status=NS.SENDING, attempts=F("attempts") + 1, claimed_at=now, updated_at=now
    )
    notification = Notification.objects.get(pk=notification_id)
    if not claimed:
        return notification
    started = time.monotonic()
    fields: dict = {"claimed_at": None, "updated_at": timezone.now()}
    attempts = notification.attempts
    try:
        result = _deliver(notification)
    except PermanentSendError as exc:
        outcome, detail = exc.status, exc.message
        fields.update(status=exc.status, last_error=detail, next_attempt_at=None, failed_at=timezone.now())
        fields.update(provider=exc.provider, provider_status=exc.provider_status)
    except TransientSendError as exc:
        detail = exc.message
        fields.update(last_error=detail, provider=exc.provider)
        if attempts >= settings.NOTIFICATIONS_MAX_ATTEMPTS:
            outcome = AttemptOutcome.FAILED
            fields.update(status=NS.FAILED, next_attempt_at=None, failed_at=timezone.now())
            detail = f"{detail} (gave up after {attempts} attempts)"
            fields["last_error"] = detail
        else:
            outcome = AttemptOutcome.RETRY
            fields.update(status=NS.QUEUED, next_attempt_at=timezone.now() + retry_delay(attempts))
    except Exception as exc:
        # OutcomeUnknownError, or a bug after the request left: the provider may have the message.
        if not isinstance(exc, OutcomeUnknownError):
            logger.exception("Unexpected error sending notification #%s", notification_id)
        outcome = AttemptOutcome.UNCERTAIN
        detail = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"[:400]
        fields.update(_after_uncertain(notification, detail))
        fields["provider"] = getattr(exc, "provider", "") or notification.provider
    else:
        outcome, detail = AttemptOutcome.SENT, result.message_id
        fields.update(
            status=NS.SENT,
            provider=result.provider,
            provider_message_id=result.message_id,
            provider_status=result.provider_status,
            cost=result.cost,
            cost_currency=result.cost_currency,
            last_error="",
            next_attempt_at=None,
            sent_at=timezone.now(),
        )
    # Only the claim we hold may finish the row (the sweeper may have declared a stuck claim dead).
    finished = Notification.objects.filter(pk=notification_id, status=NS.SENDING, attempts=attempts).update(
        **fields
    )
    if not finished:
        logger.warning(
            "Notification #%s changed while it was being sent; outcome kept in its log", notification_id
        )
    NotificationAttempt.objects.create(
        notification_id=notification_id,
        number=attempts,
        outcome=outcome,
        provider=fields.get("provider", ""),
        detail=str(detail)[:500],
        duration_ms=int((time.monotonic() - started) * 1000),
    )
    logger.info(
        "Notification #%s (%s %s to %s) attempt %s: %s",
        notification_id,
        notification.event,
        notification.channel,
        notification.masked_recipient,
        attempts,
        outcome,
    )
    notification.refresh_from_db()
    return notification


def _after_uncertain(notification: Notification, detail: str) -> dict:
    """The provider may have accepted it: one resend at most, then 'outcome unknown' (faults.md row 34)."""
    uncertain = notification.uncertain_attempts + 1
    fields = {"uncertain_attempts": uncertain, "last_error": detail}
    if uncertain >= 2 or notification.attempts >= settings.NOTIFICATIONS_MAX_ATTEMPTS:
        fields.update(status=NS.UNKNOWN, next_attempt_at=None)
        fields["last_error"] = f"{detail} (not resent again: it may already have arrived)"
    else:
        fields.update(status=NS.QUEUED, next_attempt_at=timezone.now() + retry_delay(notification.attempts))
    return fields


def notification_sweep(*, limit: int = 200) -> dict[str, int]:
    """Periodic: recover claims whose worker died, and enqueue every queued row that is due."""
    now = timezone.now()
    stale_before = now - dt.timedelta(seconds=settings.NOTIFICATIONS_SENDING_STALE_SECONDS)
    recovered = 0
    for notification in Notification.objects.filter(status=NS.SENDING, claimed_at__lt=stale_before)[:limit]:
        fields = _after_uncertain(notification, "The sender stopped while sending (worker died or timed out)")
        if fields["status"] == NS.QUEUED:
            fields["next_attempt_at"] = now
        recovered += Notification.objects.filter(
            pk=notification.pk, status=NS.SENDING, attempts=notification.attempts
        ).update(claimed_at=None, updated_at=now, **fields)
    due = list(
        Notification.objects.filter(status=NS.QUEUED, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    # Not due again for a while: a slow queue must not collect one more copy of the task every minute.
    Notification.objects.filter(pk__in=due, status=NS.QUEUED).update(next_attempt_at=now + ENQUEUE_GRACE)
    for notification_id in due:
        notification_enqueue(notification_id=notification_id)
    return {"due": len(due), "recovered": recovered}


RESEND_AUDIT_FIELDS = ("status", "attempts", "last_error", "resend_count")


@transaction.atomic
def notification_resend(*, notification_id: int, actor) -> Notification:
    """Staff send a message again: same row (the dedupe key stays), a fresh round of attempts, who did it."""
    if actor is None or not actor.is_active or not actor.has_perm("notifications.resend_notification"):
        raise NotificationPermissionDenied("You are not allowed to send messages again.")
    notification = Notification.objects.select_for_update().get(pk=notification_id)
    if notification.status in (NS.QUEUED, NS.SENDING):
        raise NotificationInFlight(f"Notification #{notification.pk} is already {notification.status}.")
    now = timezone.now()
    before = field_values(notification, RESEND_AUDIT_FIELDS)
    notification.status = NS.QUEUED
    notification.attempts = 0
    notification.uncertain_attempts = 0
    notification.last_error = ""
    notification.next_attempt_at = now + ENQUEUE_GRACE
    notification.failed_at = None
    notification.resend_count += 1
    notification.resent_by = actor
    notification.resent_at = now
    notification.save()
    if actor is not None:
        audit_record(
            action=AuditAction.NOTIFICATION_RESENT,
            actor=actor,
            obj=notification,
            changes=changes_between(before, field_values(notification, RESEND_AUDIT_FIELDS)),
        )
    logger.info("Notification #%s queued again by %s", notification.pk, getattr(actor, "username", actor))
    transaction.on_commit(partial(notification_enqueue, notification_id=notification.pk), robust=True)
    return notification


# --- delivery reports -----------------------------------------------------------------------------
# Africa's Talking delivery report `status` (ecosystem.md §5.3). Sent/Submitted/Buffered are on the way.
AT_FINAL_STATUSES = {
    "Success": NS.DELIVERED,
    "Failed": NS.FAILED,
    "Rejected": NS.REJECTED,
    "AbsentSubscriber": NS.FAILED,
    "Expired": NS.FAILED,
}
# Anymail tracking event types. opened/clicked prove delivery; the rest only update provider_status.
EMAIL_FINAL_STATUSES = {
    "delivered": NS.DELIVERED,
    "bounced": NS.FAILED,
    "failed": NS.FAILED,
    "rejected": NS.REJECTED,
}
EMAIL_PROOF_OF_DELIVERY = {"opened", "clicked"}


def _report_may_set(current: str, reported: str) -> bool:
    """Delivered is final: a late or out-of-order report never undoes it. While a message is queued or being
    (re)sent, a failure report is about an earlier send and must not cancel this one; proof of delivery
    still counts (it stops a needless resend)."""
    if current == NS.DELIVERED:
        return False
    if current in (NS.QUEUED, NS.SENDING):
        return reported == NS.DELIVERED
    return True


@transaction.atomic
def notification_delivery_report_apply(
    *,
    channel: str,
    provider_message_id: str,
    provider_status: str,
    new_status: str | None,
    reason: str = "",
    recipient: str = "",
    notification_id: int | None = None,
) -> Notification | None:
    """Apply a provider's delivery report. Repeats change nothing; an unknown id returns None."""
    candidates = Notification.objects.select_for_update().filter(channel=channel)
    notification = None
    if provider_message_id:
        matches = candidates.filter(provider_message_id=provider_message_id).order_by("-id")
        if recipient:
            notification = matches.filter(recipient__iexact=recipient).first()
        notification = notification or matches.first()
    if notification is None and notification_id:
        notification = candidates.filter(pk=notification_id).first()
    if notification is None:
        return None
    now = timezone.now()
    fields: dict = {}
    if provider_status and provider_status != notification.provider_status:
        fields["provider_status"] = provider_status[:64]
    if new_status and new_status != notification.status and _report_may_set(notification.status, new_status):
        fields["status"] = new_status
        if new_status == NS.DELIVERED:
            fields["delivered_at"] = now
        else:
            fields["failed_at"] = now
            fields["last_error"] = (reason or provider_status)[:500]
    if fields:
        for name, value in fields.items():
            setattr(notification, name, value)
        notification.save(update_fields=[*fields, "updated_at"])
    return notification
