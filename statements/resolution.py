"""Staff resolving reconciliation exceptions: attach a line to a payment, mark an exception as expected, or
refund a double payment. Each checks statements.resolve_reconciliationitem itself, changes payments and
refunds only through their services, and is audited in the same transaction.

Lock order (payments.state): the payment first, then the exception and its statement line.
"""

from django.db import transaction
from django.utils import timezone

from audit.models import AuditAction
from audit.services import audit_record, changes_between, field_values
from payments.exceptions import PaymentError, PaymentNotFound, PaymentPermissionDenied
from payments.models import Payment, PaymentMethod, Refund
from payments.refunds import refund_request
from payments.services import payment_statement_attach
from payments.state import lock_payment
from statements.exceptions import ReconciliationError, StatementPermissionDenied
from statements.models import (
    ItemKind,
    ItemStatus,
    MatchMethod,
    ReconciliationItem,
    Resolution,
    StatementLine,
)

PERMISSION = "statements.resolve_reconciliationitem"
ITEM_AUDIT_FIELDS = ("status", "resolution", "note", "resolved_by", "refund", "payment")


def _require_resolver(actor) -> None:
    if actor is None or not actor.is_active or not actor.has_perm(PERMISSION):
        raise StatementPermissionDenied("You are not allowed to resolve reconciliation exceptions.")


def _clean_note(note: str) -> str:
    return " ".join((note or "").split())


def _item_of(item_id: int) -> ReconciliationItem:
    item = ReconciliationItem.objects.filter(pk=item_id).first()
    if item is None:
        raise ReconciliationError("No such reconciliation exception.")
    return item


def _lock_open_item(item_id: int, *, kinds: tuple[str, ...] | None = None) -> ReconciliationItem:
    item = ReconciliationItem.objects.select_for_update().filter(pk=item_id).first()
    if item is None:
        raise ReconciliationError("No such reconciliation exception.")
    if item.status != ItemStatus.OPEN:
        raise ReconciliationError(f"This exception is already {item.get_status_display().lower()}.")
    if kinds is not None and item.kind not in kinds:
        raise ReconciliationError(f"A “{item.get_kind_display()}” exception cannot be resolved that way.")
    return item


def _resolve(item: ReconciliationItem, *, resolution: str, actor, note: str, action: str, **fields) -> None:
    before = field_values(item, ITEM_AUDIT_FIELDS)
    for name, value in fields.items():
        setattr(item, name, value)
    item.status = ItemStatus.RESOLVED
    item.resolution = resolution
    item.note = note
    item.resolved_by = actor
    item.resolved_at = timezone.now()
    item.save()
    audit_record(
        action=action,
        actor=actor,
        obj=item,
        changes=changes_between(before, field_values(item, ITEM_AUDIT_FIELDS)),
        reason=note,
        data={"kind": item.kind, "key": item.key},
    )


def _as_statement_error(exc: PaymentError) -> Exception:
    if isinstance(exc, PaymentPermissionDenied):
        return StatementPermissionDenied(exc.message)
    return ReconciliationError(exc.message)


def item_attach(*, item_id: int, payment_id: int, actor, note: str = "") -> ReconciliationItem:
    """Money received but not recorded: the line is this payment's (staff know it from the customer, the
    order, or the suggestion). The payment takes the line's receipt through the payment services (its
    receipt pending is filled in, an open attempt is completed, a failed one goes to review)."""
    _require_resolver(actor)
    note = _clean_note(note)
    try:
        with transaction.atomic():
            payment = lock_payment(payment_id)
            item = _lock_open_item(item_id, kinds=(ItemKind.UNRECORDED_LINE,))
            line = StatementLine.objects.select_for_update().get(pk=item.line_id)
            _check_attachable(line, payment)
            payment = payment_statement_attach(
                payment_id=payment.pk,
                receipt=line.receipt,
                amount=line.paid_in,
                completed_at=line.completed_at,
                actor=actor,
                note=note,
                line_ref=str(line.pk),
            )
            line.payment = payment
            line.match_method = MatchMethod.STAFF
            line.matched_at = timezone.now()
            line.matched_by = actor
            line.save(update_fields=["payment", "match_method", "matched_at", "matched_by"])
            _resolve(
                item,
                resolution=Resolution.ATTACHED,
                actor=actor,
                note=note,
                action=AuditAction.STATEMENT_LINE_ATTACHED,
                payment=payment,
            )
    except PaymentNotFound as exc:
        raise ReconciliationError("No such payment.", field="payment_id") from exc
    except PaymentError as exc:
        raise _as_statement_error(exc) from exc
    return item


def _check_attachable(line: StatementLine, payment: Payment) -> None:
    if line.payment_id is not None:
        raise ReconciliationError(f"Line {line.receipt} is already matched to payment #{line.payment_id}.")
    if payment.method != PaymentMethod.MPESA:
        raise ReconciliationError(
            f"Payment #{payment.pk} is {payment.get_method_display()}: only M-Pesa payments take a line.",
            field="payment_id",
        )
    if line.paid_in != payment.amount:
        raise ReconciliationError(
            f"Line {line.receipt} is KES {line.paid_in}; payment #{payment.pk} is for KES {payment.amount}.",
            field="payment_id",
        )
    other = StatementLine.objects.filter(payment_id=payment.pk).exclude(pk=line.pk).first()
    if other is not None:
        raise ReconciliationError(
            f"Payment #{payment.pk} already has statement line {other.receipt}.", field="payment_id"
        )
    if payment.mpesa_receipt_number and payment.mpesa_receipt_number != line.receipt:
        raise ReconciliationError(
            f"Payment #{payment.pk} already has receipt {payment.mpesa_receipt_number}.", field="payment_id"
        )


def item_mark_expected(*, item_id: int, actor, note: str) -> ReconciliationItem:
    """Nothing is wrong (a paybill payment not from the shop, a transfer staff made): the exception is
    closed with a note saying why. Payments and refunds are left as they are."""
    _require_resolver(actor)
    note = _clean_note(note)
    if not note:
        raise ReconciliationError("Say why this is expected; the note stays on the exception.", field="note")
    with transaction.atomic():
        item = _lock_open_item(item_id)
        _resolve(
            item,
            resolution=Resolution.EXPECTED,
            actor=actor,
            note=note,
            action=AuditAction.RECONCILIATION_EXPECTED,
        )
    return item


def item_open_refund(*, item_id: int, actor, reason: str) -> Refund:
    """An order paid twice: request a refund of the extra attempt (the refund service checks its own
    permission and sends it, or waits for a second person's approval above the threshold)."""
    _require_resolver(actor)
    payment_id = _item_of(item_id).payment_id
    if payment_id is None:
        raise ReconciliationError("This exception names no payment to refund.")
    try:
        with transaction.atomic():
            lock_payment(payment_id)
            item = _lock_open_item(item_id, kinds=(ItemKind.DOUBLE_PAYMENT,))
            if item.payment_id != payment_id:
                raise ReconciliationError("The exception changed meanwhile; open it again.")
            refund = refund_request(
                payment_id=payment_id,
                amount=None,
                reason=reason,
                actor=actor,
                internal_note=f"Order paid twice (reconciliation exception #{item.pk}).",
            )
            _resolve(
                item,
                resolution=Resolution.REFUND_OPENED,
                actor=actor,
                note=" ".join(reason.split()),
                action=AuditAction.RECONCILIATION_REFUND_OPENED,
                refund=refund,
            )
    except PaymentError as exc:
        raise _as_statement_error(exc) from exc
    return refund
