"""What the organisation's M-PESA statement says about a payment: an authenticated source of money state.

The statement is what actually moved, so a line can close a payment's "receipt pending" and staff may
attach a line to an attempt whose result we never heard. The statement code (the `statements` app) calls
these; payments never imports it, so the permission of the people who resolve reconciliation exceptions
is checked by its name.
"""

import datetime as dt
from decimal import Decimal, InvalidOperation

from django.db import transaction

from audit.models import AuditAction
from audit.services import audit_record, changes_between, field_values
from payments.daraja.results import StkResult, clean_receipt_number
from payments.exceptions import IllegalTransition, PaymentError, PaymentInvalid, ReceiptInUse
from payments.models import (
    PAID_STATUSES,
    EventKind,
    EventSource,
    Payment,
    PaymentMethod,
    PaymentStatus,
    ReviewReason,
    SettledBy,
)
from payments.permissions import require_perm
from payments.services.results import (
    PAYMENT_AUDIT_FIELDS,
    _apply_success,
    _awaits_result,
    receipt_assign,
)
from payments.state import event_record, lock_payment, payment_transition

RESOLVE_PERMISSION = "statements.resolve_reconciliationitem"


def _receipt_of(receipt: str) -> str:
    receipt_number = clean_receipt_number(receipt)
    if not receipt_number:
        raise PaymentInvalid("An M-Pesa receipt number is 8 to 20 letters and digits.", field="receipt")
    return receipt_number


def _amount_of(amount) -> Decimal:
    try:
        value = Decimal(str(amount))
    except InvalidOperation as exc:
        raise PaymentInvalid("The statement amount is not a number.", field="amount") from exc
    if not value.is_finite():
        raise PaymentInvalid("The statement amount is not a number.", field="amount")
    return value


def _expected(payment: Payment) -> Decimal:
    return payment.paid_amount if payment.paid_amount is not None else payment.amount


def _summary(receipt_number: str, amount: Decimal, completed_at: dt.datetime, line_ref: str) -> dict:
    return {
        "MpesaReceiptNumber": receipt_number,
        "Amount": str(amount),
        "CompletedAt": completed_at.isoformat() if completed_at else None,
        "line": line_ref,
    }


def _fill_pending_receipt(
    payment: Payment,
    *,
    receipt_number: str,
    completed_at: dt.datetime | None,
    kind: str,
    actor,
    message: str,
    data: dict,
) -> None:
    """A locked, paid payment still waiting for its receipt takes the statement's."""
    receipt_assign(payment, receipt_number)
    payment.receipt_pending = False
    payment.transaction_date = payment.transaction_date or completed_at
    payment.save(update_fields=["receipt_pending", "transaction_date", "updated_at"])
    event_record(payment, kind=kind, source=EventSource.STATEMENT, actor=actor, message=message, data=data)


def payment_receipt_from_statement(
    *,
    payment_id: int,
    receipt: str,
    amount: Decimal,
    completed_at: dt.datetime,
    actor=None,
    line_ref: str = "",
) -> Payment:
    """A statement line is the receipt of a payment completed on an STK Query answer (receipt pending).

    Called by the statement reconciliation (an imported statement is an authenticated source); `actor` is
    the person who imported it, None for the system (Pull Transactions). The same receipt again changes
    nothing. An amount other than what the payment took is recorded as a disagreement and refused.
    """
    receipt_number = _receipt_of(receipt)
    amount = _amount_of(amount)
    refusal: PaymentError | None = None
    with transaction.atomic():
        payment = lock_payment(payment_id)
        if payment.mpesa_receipt_number == receipt_number and not payment.receipt_pending:
            return payment
        if payment.status not in PAID_STATUSES or not payment.receipt_pending:
            raise IllegalTransition(
                "Only completed payments still waiting for their receipt take one from the statement."
            )
        data = _summary(receipt_number, amount, completed_at, line_ref)
        if amount != _expected(payment):
            # Kept as evidence even though nothing changes: the transaction commits, then we refuse.
            event_record(
                payment,
                kind=EventKind.DISAGREEMENT,
                source=EventSource.STATEMENT,
                actor=actor,
                message=f"Statement line {receipt_number} shows KES {amount}, the payment took "
                f"KES {_expected(payment)}.",
                data=data,
            )
            refusal = PaymentInvalid(
                f"The statement line is KES {amount}; the payment took KES {_expected(payment)}.",
                field="amount",
            )
        else:
            before = field_values(payment, PAYMENT_AUDIT_FIELDS)
            _fill_pending_receipt(
                payment,
                receipt_number=receipt_number,
                completed_at=completed_at,
                kind=EventKind.RECEIPT_FROM_STATEMENT,
                actor=actor,
                message=f"Receipt {receipt_number} from the M-PESA statement",
                data=data,
            )
            audit_record(
                action=AuditAction.RECEIPT_FROM_STATEMENT,
                actor=actor,
                obj=payment,
                changes=changes_between(before, field_values(payment, PAYMENT_AUDIT_FIELDS)),
                data={"line": line_ref},
            )
    if refusal is not None:
        raise refusal
    return payment


@transaction.atomic
def payment_statement_attach(
    *,
    payment_id: int,
    receipt: str,
    amount: Decimal,
    completed_at: dt.datetime,
    actor,
    note: str = "",
    line_ref: str = "",
) -> Payment:
    """Staff attach a statement line (money that arrived) to the attempt it paid.

    - paid, receipt pending: the payment takes the line's receipt;
    - open, or a push whose outcome was never known: completed with the line's receipt, as a successful
      result would complete it (settled by staff);
    - failed: money arrived after we called it failed, so it goes to review (late payment) with the
      receipt, where a person decides to honour the order or refund;
    - anything else is refused. The line's amount must be what the payment asked for.
    """
    require_perm(actor, RESOLVE_PERMISSION, "You are not allowed to attach statement lines to payments.")
    receipt_number = _receipt_of(receipt)
    amount = _amount_of(amount)
    note = " ".join((note or "").split())
    payment = lock_payment(payment_id)
    if payment.method != PaymentMethod.MPESA:
        raise IllegalTransition("Only M-Pesa payments take an M-PESA statement line.")
    if payment.mpesa_receipt_number == receipt_number and not payment.receipt_pending:
        return payment
    if payment.mpesa_receipt_number:
        raise IllegalTransition(
            f"Payment #{payment.pk} already has receipt {payment.mpesa_receipt_number}.", field="receipt"
        )
    if amount != _expected(payment):
        raise PaymentInvalid(
            f"The statement line is KES {amount}; the payment is for KES {_expected(payment)}.",
            field="amount",
        )
    owner = Payment.objects.filter(mpesa_receipt_number=receipt_number).exclude(pk=payment.pk).first()
    if owner is not None:
        raise ReceiptInUse(f"Receipt {receipt_number} belongs to payment #{owner.pk}.", field="receipt")

    before = field_values(payment, PAYMENT_AUDIT_FIELDS)
    data = {**_summary(receipt_number, amount, completed_at, line_ref), "note": note}
    message = f"Statement line {receipt_number} attached" + (f": {note}" if note else "")
    if payment.status in PAID_STATUSES and payment.receipt_pending:
        _fill_pending_receipt(
            payment,
            receipt_number=receipt_number,
            completed_at=completed_at,
            kind=EventKind.STATEMENT_ATTACHED,
            actor=actor,
            message=message,
            data=data,
        )
    elif _awaits_result(payment):
        event_record(
            payment,
            kind=EventKind.STATEMENT_ATTACHED,
            source=EventSource.STATEMENT,
            actor=actor,
            message=message,
            data=data,
        )
        record = {"source": EventSource.STATEMENT, "actor": actor, "inbox": None, "data": data}
        if payment.status == PaymentStatus.PENDING:
            payment_transition(
                payment,
                PaymentStatus.INITIATED,
                kind=EventKind.PUSH_ACCEPTED,
                message="Push confirmed by the M-PESA statement",
                **record,
            )
        # A person settled it, on the statement's evidence (payment_transition keeps a settled_by it finds).
        payment.settled_by = payment.settled_by or SettledBy.STAFF
        _apply_success(
            payment,
            StkResult(
                checkout_request_id=payment.checkout_request_id or "",
                result_code="0",
                result_desc="Paid, as the M-PESA statement shows",
                amount=amount,
                receipt_number=receipt_number,
                transaction_date=completed_at,
            ),
            record,
        )
    elif payment.status == PaymentStatus.FAILED:
        receipt_assign(payment, receipt_number)
        payment_transition(
            payment,
            PaymentStatus.NEEDS_REVIEW,
            kind=EventKind.STATEMENT_ATTACHED,
            source=EventSource.STATEMENT,
            actor=actor,
            message=f"The M-PESA statement shows this failed attempt paid (receipt {receipt_number})"
            + (f": {note}" if note else ""),
            data=data,
            review_reason=ReviewReason.LATE_PAYMENT,
            paid_amount=amount,
            transaction_date=completed_at,
        )
    else:
        hint = " (resolve its review instead)" if payment.status == PaymentStatus.NEEDS_REVIEW else ""
        raise IllegalTransition(
            f"A {payment.get_status_display().lower()} payment takes no statement line{hint}."
        )
    audit_record(
        action=AuditAction.STATEMENT_LINE_ATTACHED,
        actor=actor,
        obj=payment,
        changes=changes_between(before, field_values(payment, PAYMENT_AUDIT_FIELDS)),
        reason=note,
        data={"line": line_ref, "receipt": receipt_number},
    )
    return payment
