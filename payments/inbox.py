"""Every inbound Daraja request: stored raw first, then applied by the service its kind belongs to.

The view, the admin's "process again" and the inbox sweeper all go through `inbox_process`, which parses
the stored body by kind and hands it to that kind's handler (STK callback, STK callback on the original
unauthenticated path, async Result, queue timeout). Processing is idempotent: a processed row is left
alone, and only the transaction that applies a result marks its row processed (holding the row's lock,
after the payment's). A status written outside that transaction (unmatched, failed, rejected) never
overwrites a concurrent `processed`.
"""

import dataclasses
import hashlib
import json
import logging
import traceback
from collections.abc import Callable, Iterable

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from audit.models import AuditAction
from audit.services import audit_record, changes_between, field_values
from common.outage import outage_kind, outage_log
from payments.daraja.async_results import parse_queue_timeout, parse_result
from payments.daraja.results import CallbackFormatError, StkResult, parse_stk_callback
from payments.models import CallbackInbox, EventKind, EventSource, InboxKind, InboxStatus
from payments.permissions import require_perm
from payments.state import event_record, lock_inbox, lock_payment

logger = logging.getLogger(__name__)

SETTLED = (InboxStatus.PROCESSED, InboxStatus.REJECTED)
STK_KINDS = (InboxKind.STK_CALLBACK, InboxKind.STK_CALLBACK_LEGACY)
ASYNC_KINDS = (InboxKind.RESULT, InboxKind.QUEUE_TIMEOUT)


@dataclasses.dataclass(frozen=True)
class KindHandler:
    parse: Callable[[object], object]
    correlation: Callable[[object], str]
    apply: Callable[[CallbackInbox, object], bool]  # False: nothing it belongs to (yet)
    unmatched: str


def _async_correlation(parsed) -> str:
    return parsed.originator_conversation_id or parsed.conversation_id or parsed.transaction_id


def _handlers() -> dict[str, KindHandler]:
    # Imported here: the services import this module to store rows and re-match them.
    from payments.refunds.results import queue_timeout_apply, result_apply
    from payments.services.callbacks import legacy_callback_apply, stk_callback_apply

    stk = {"parse": parse_stk_callback, "correlation": lambda result: result.checkout_request_id}
    return {
        InboxKind.STK_CALLBACK: KindHandler(
            **stk, apply=stk_callback_apply, unmatched="No payment has this CheckoutRequestID (yet)."
        ),
        InboxKind.STK_CALLBACK_LEGACY: KindHandler(
            **stk, apply=legacy_callback_apply, unmatched="No payment has this CheckoutRequestID (yet)."
        ),
        InboxKind.RESULT: KindHandler(
            parse=parse_result,
            correlation=_async_correlation,
            apply=result_apply,
            unmatched="No refund or status request has these ids (yet).",
        ),
        InboxKind.QUEUE_TIMEOUT: KindHandler(
            parse=parse_queue_timeout,
            correlation=_async_correlation,
            apply=queue_timeout_apply,
            unmatched="No refund or status request has these ids (yet).",
        ),
    }


# --- storing ------------------------------------------------------------------------------------
def inbox_store(
    *,
    kind: str,
    body: bytes,
    headers: dict,
    source_ip: str | None,
    path: str,
    status: str = InboxStatus.RECEIVED,
    error: str = "",
    body_size: int | None = None,
) -> CallbackInbox:
    # NUL is replaced: PostgreSQL text columns refuse it, and a refused insert would lose the request.
    text = body[: settings.MPESA_CALLBACK_MAX_BYTES].decode("utf-8", errors="replace")
    text = text.replace("\x00", "\ufffd")
    return CallbackInbox.objects.create(
        kind=kind,
        status=status,
        body=text,
        body_size=len(body) if body_size is None else body_size,
        body_sha256=hashlib.sha256(body).hexdigest() if body else "",
        headers=headers,
        source_ip=source_ip,
        path=path[:255],
        error=error,
    )


def inbox_malformed(*, kind: str, body: bytes) -> str:
    """Why a body can never be applied (empty, not JSON, not the shape of its kind), or "" when it can.

    Pure parsing, no database: the front door refuses what no later processing could use.
    """
    if not body.strip():
        return "Empty body"
    try:
        data = json.loads(body)
    except ValueError:
        return "Body is not JSON"
    try:
        _handlers()[kind].parse(data)
    except (ValueError, CallbackFormatError) as exc:
        return f"Malformed: {exc}"
    return ""


def inbox_duplicate_of(*, kind: str, body: bytes) -> int | None:
    """The row a byte-identical STK callback repeats, by one indexed lookup: processed, or stored and
    waiting to be applied. None when the body is new, or its first copy stopped (unmatched, failed,
    rejected), and it must be stored and processed on its own.

    A duplicate storm must not grow the inbox without bound (faults.md row 39).
    """
    if kind not in STK_KINDS:
        return None
    # One statement by hand: building it with the ORM cost as much as running it, on the path every
    # Daraja request takes before its answer. MIN, not ORDER BY id LIMIT 1, which may walk the primary
    # key of a large inbox instead of looking the digest up in its index.
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT MIN(id) FROM {CallbackInbox._meta.db_table}"  # noqa: S608 - our table name, no input
            " WHERE body_sha256 = %s AND kind = %s AND status IN (%s, %s)",
            [hashlib.sha256(body).hexdigest(), kind, InboxStatus.PROCESSED, InboxStatus.RECEIVED],
        )
        return cursor.fetchone()[0]


def inbox_count_duplicate(*, inbox_id: int) -> None:
    """Count one repeat on the original row; its payment's history shows it as a duplicate_result event
    (faults.md row 1). Changes no money state.

    An original still waiting to be applied is applied first (idempotent, whoever else is on it), so the
    repeat is recorded after the result it repeats.
    """
    original = inbox_process(inbox_id=inbox_id)
    payment_id = original.payment_id
    with transaction.atomic():
        # The lock order everywhere: the payment, then its inbox row.
        payment = lock_payment(payment_id) if payment_id is not None else None
        original = lock_inbox(inbox_id)
        original.duplicates += 1
        original.last_received_at = timezone.now()
        original.save(update_fields=["duplicates", "last_received_at"])
        if payment is not None:
            event_record(
                payment,
                kind=EventKind.DUPLICATE_RESULT,
                source=EventSource.CALLBACK,
                inbox=original,
                message=f"Byte-identical repeat #{original.duplicates} of callback inbox #{original.pk}",
            )


def inbox_repeat_received(*, inbox_id: int) -> None:
    """A repeat of the processed row `inbox_id` came in: counted by a task in the worker mode (the answer
    waits for nothing but the lookup), else now, and now too when the queue is down."""
    if apply_in_worker() and inbox_enqueue("payments.tasks.inbox_count_duplicate", inbox_id):
        return
    inbox_count_duplicate(inbox_id=inbox_id)


def apply_in_worker() -> bool:
    """MPESA_CALLBACK_APPLY: "worker" answers Daraja once the raw request is stored and leaves applying
    it to a django-q2 task; "request" applies it before answering."""
    return settings.MPESA_CALLBACK_APPLY == "worker"


def inbox_enqueue(func: str, inbox_id: int) -> bool:
    """Hand a stored row to the task queue. A broker that is down loses nothing: the row is already
    committed, and the inbox sweeper applies rows left `received` after INBOX_RETRY_AFTER."""
    from common.queue import enqueue

    try:
        # save=False: a success needs no result row (django-q2 prunes saved results under a lock);
        # a failure is still kept.
        enqueue(func, inbox_id, task_name=f"inbox-{inbox_id}", save=False)
    except Exception as exc:
        if outage_kind(exc):
            outage_log.record(outage_kind(exc), exc, f"queueing inbox #{inbox_id}")
        else:
            logger.warning(
                "Could not queue inbox #%s; the inbox sweeper will apply it", inbox_id, exc_info=True
            )
        return False
    return True


# --- status changes -----------------------------------------------------------------------------
def inbox_mark(inbox_id: int, *, status: str, error: str = "", **fields) -> bool:
    """Set a status outside the applying transaction; never over a concurrent `processed`."""
    return bool(
        CallbackInbox.objects.filter(pk=inbox_id)
        .exclude(status=InboxStatus.PROCESSED)
        .update(status=status, error=error[:8000], **fields)
    )


def inbox_mark_processed(inbox: CallbackInbox, *, payment_id: int | None) -> None:
    """Inside the transaction that applied it, with the row locked (after its payment)."""
    inbox.payment_id = payment_id
    inbox.status = InboxStatus.PROCESSED
    inbox.processed_at = timezone.now()
    inbox.error = ""
    inbox.save(update_fields=["payment", "status", "processed_at", "error"])


# --- processing ---------------------------------------------------------------------------------
def stk_result_of(inbox: CallbackInbox) -> StkResult:
    return parse_stk_callback(json.loads(inbox.body))


def _claims(result: StkResult) -> dict:
    """What a callback says, kept on its row: candidates for unmatched rows are found by it."""
    return {
        "ResultCode": result.result_code,
        "MpesaReceiptNumber": result.receipt_number,
        "Amount": None if result.amount is None else str(result.amount),
        "TransactionDate": result.transaction_date.isoformat() if result.transaction_date else None,
        "PhoneNumber": result.phone,
    }


def inbox_process(*, inbox_id: int) -> CallbackInbox:
    """Parse and apply one stored request. Safe to run again: a processed row is left alone."""
    inbox = CallbackInbox.objects.get(pk=inbox_id)
    if inbox.status in SETTLED:
        return inbox
    handler = _handlers()[inbox.kind]
    try:
        parsed = handler.parse(json.loads(inbox.body))
    except (ValueError, CallbackFormatError) as exc:
        inbox_mark(
            inbox.pk, status=InboxStatus.REJECTED, error=f"Malformed: {exc}", processed_at=timezone.now()
        )
        return CallbackInbox.objects.get(pk=inbox.pk)
    fields = {"correlation_id": handler.correlation(parsed)[:64], "attempts": F("attempts") + 1}
    if isinstance(parsed, StkResult):
        fields["claimed"] = _claims(parsed)
    CallbackInbox.objects.filter(pk=inbox.pk).update(**fields)
    inbox.refresh_from_db()
    try:
        if not handler.apply(inbox, parsed):
            inbox_mark(inbox.pk, status=InboxStatus.UNMATCHED, error=handler.unmatched)
            # What it belongs to may have committed its id, and looked for unmatched rows, between our
            # lookup and this update: look once more, so that one side always sees the other.
            if not handler.apply(CallbackInbox.objects.get(pk=inbox.pk), parsed):
                logger.warning("%s kept as unmatched (inbox #%s)", inbox.get_kind_display(), inbox.pk)
    except Exception:
        inbox_mark(inbox.pk, status=InboxStatus.FAILED, error=traceback.format_exc()[-8000:])
        logger.exception("Processing inbox #%s failed", inbox.pk)
    return CallbackInbox.objects.get(pk=inbox.pk)


def inbox_reprocess_unmatched(*, kinds: Iterable[str], correlation_ids: Iterable[str]) -> None:
    """A request can arrive before we stored the id it carries; it waits as unmatched until then."""
    ids = [value for value in correlation_ids if value]
    if not ids:
        return
    for inbox_id in CallbackInbox.objects.filter(
        kind__in=tuple(kinds), status=InboxStatus.UNMATCHED, correlation_id__in=ids
    ).values_list("pk", flat=True):
        inbox_process(inbox_id=inbox_id)


def inbox_process_again(*, inbox_id: int, actor) -> CallbackInbox:
    """Staff process a quarantined, failed or unmatched row again (e.g. after Safaricom's IPs changed)."""
    require_perm(actor, "payments.reprocess_inbox", "You are not allowed to process inbox entries again.")
    with transaction.atomic():
        # Only the row is locked here (no payment lock after it): processing takes its locks afterwards.
        stored = CallbackInbox.objects.select_for_update().filter(pk=inbox_id).first()
        if stored is not None and stored.status != InboxStatus.PROCESSED:
            # The person's part: the row goes back to received (when it had stopped) and is processed now.
            # What processing then does is Daraja's word, recorded on the row and the payment's history.
            before = field_values(stored, ("status",))
            previous_error = (stored.error.strip().splitlines() or [""])[-1][:300]
            if stored.status in (InboxStatus.REJECTED, InboxStatus.UNMATCHED, InboxStatus.FAILED):
                stored.status = InboxStatus.RECEIVED
                stored.error = ""
                stored.save(update_fields=["status", "error"])
            audit_record(
                action=AuditAction.INBOX_REPROCESSED,
                actor=actor,
                obj=stored,
                changes=changes_between(before, field_values(stored, ("status",))),
                data={"kind": stored.kind, "attempts": stored.attempts, "previous_error": previous_error},
            )
    inbox = inbox_process(inbox_id=inbox_id)
    logger.info("Inbox #%s processed again by staff: %s", inbox.pk, inbox.status)
    return inbox
