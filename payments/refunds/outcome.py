"""Money that went out: a refund's success, and what happens when it no longer fits the payment."""

import logging

from payments.daraja.async_results import AsyncResult
from payments.models import (
    CallbackInbox,
    EventKind,
    Payment,
    PaymentStatus,
    Refund,
    RefundEventKind,
    RefundStatus,
)
from payments.refunds.lifecycle import REFUNDABLE_PAYMENT_STATUSES, refund_base
from payments.state import event_record, payment_transition, refund_transition

logger = logging.getLogger(__name__)


def refund_succeed(
    payment: Payment,
    refund: Refund,
    *,
    source: str,
    inbox: CallbackInbox | None,
    data: dict,
    message: str,
    actor=None,
    transaction_id: str = "",
    **fields,
) -> str:
    """Record that a locked refund's money went out, and (partially) refund the locked payment.

    Money that went out is never dropped: when it no longer fits what the payment can give back (another
    refund already succeeded, e.g. a late success of one that had been settled as failed), the refund ends
    as `over_refunded` and staff recover the difference from the customer. Returns the refund's status.
    """
    transaction_id = _free_transaction_id(refund, transaction_id, source=source, inbox=inbox)
    if transaction_id:
        fields["transaction_id"] = transaction_id
    new_total = payment.refunded_amount + refund.amount
    base = refund_base(payment)
    if new_total > base:
        overflow = (
            f"KES {refund.amount} paid out, but KES {payment.refunded_amount} of KES {base} was "
            "already refunded: the customer got money twice; recover it and check the M-Pesa statement"
        )
        logger.error("Refund #%s over-refunded payment #%s", refund.pk, payment.pk)
        refund_transition(
            refund,
            RefundStatus.OVER_REFUNDED,
            kind=RefundEventKind.OVER_REFUNDED,
            source=source,
            actor=actor,
            inbox=inbox,
            data=data,
            message=f"{message}. {overflow}",
            **fields,
        )
        event_record(
            payment,
            kind=EventKind.DISAGREEMENT,
            source=source,
            actor=actor,
            inbox=inbox,
            message=f"Refund #{refund.pk}: {overflow}",
            data={"refund": refund.pk},
        )
        return refund.status
    refund_transition(
        refund,
        RefundStatus.SUCCEEDED,
        kind=RefundEventKind.RESULT_APPLIED,
        source=source,
        actor=actor,
        inbox=inbox,
        data=data,
        message=message,
        **fields,
    )
    target = PaymentStatus.REFUNDED if new_total >= base else PaymentStatus.PARTIALLY_REFUNDED
    event_message = f"Refund #{refund.pk}: KES {refund.amount} returned" + (
        f", receipt {refund.transaction_id}" if refund.transaction_id else ""
    )
    event_data = {
        "refund": refund.pk,
        "TransactionID": refund.transaction_id,
        "refunded_amount": str(new_total),
    }
    if payment.status in REFUNDABLE_PAYMENT_STATUSES:
        payment_transition(
            payment,
            target,
            kind=EventKind.REFUNDED,
            source=source,
            actor=actor,
            inbox=inbox,
            message=event_message,
            data=event_data,
            refunded_amount=new_total,
        )
    else:
        # The payment moved on (e.g. into review) meanwhile: keep the money right, leave its status alone.
        Payment.objects.filter(pk=payment.pk).update(refunded_amount=new_total)
        payment.refunded_amount = new_total
        event_record(
            payment,
            kind=EventKind.REFUNDED,
            source=source,
            actor=actor,
            inbox=inbox,
            message=event_message,
            data=event_data,
        )
    return refund.status


def _free_transaction_id(refund: Refund, transaction_id: str, *, source: str, inbox) -> str:
    """A refund's M-Pesa receipt is unique; one already on another refund is kept as evidence only.

    (Two Results racing for one receipt would still meet the unique constraint, which rolls the second back
    for its inbox row to be processed again.)
    """
    transaction_id = (transaction_id or "")[:32]
    if not transaction_id or transaction_id == refund.transaction_id:
        return transaction_id
    other = Refund.objects.filter(transaction_id=transaction_id).exclude(pk=refund.pk).first()
    if other is None:
        return transaction_id
    event_record(
        refund,
        kind=RefundEventKind.DISAGREEMENT,
        source=source,
        inbox=inbox,
        message=f"Receipt {transaction_id} is already refund #{other.pk}'s; not copied here.",
    )
    return refund.transaction_id


def result_summary(result: AsyncResult) -> dict:
    return {
        "ResultType": result.result_type,
        "ResultCode": result.result_code,
        "ResultDesc": result.result_desc,
        "OriginatorConversationID": result.originator_conversation_id,
        "ConversationID": result.conversation_id,
        "TransactionID": result.transaction_id,
        "ResultParameters": {key: str(value)[:128] for key, value in result.parameters.items()},
    }


def refund_disagree(
    payment: Payment, refund: Refund, *, source: str, inbox, data: dict, message: str
) -> None:
    """Sources disagree about a refund: recorded on both histories, changes nothing."""
    logger.error("Refund #%s: %s", refund.pk, message)
    event_record(
        refund, kind=RefundEventKind.DISAGREEMENT, source=source, inbox=inbox, data=data, message=message
    )
    event_record(
        payment,
        kind=EventKind.DISAGREEMENT,
        source=source,
        inbox=inbox,
        message=f"Refund #{refund.pk}: {message}",
        data={"refund": refund.pk},
    )
