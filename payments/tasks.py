"""django-q2 entry points: module-level, JSON-able arguments and results, one service call each."""

from payments import inbox, reconciliation, refunds, services


def refund_submit(refund_id: int, claimed: bool = False) -> str:
    return refunds.refund_submit(refund_id=refund_id, claimed=claimed).status


def refund_check_status(refund_id: int) -> str:
    return refunds.refund_check_status(refund_id=refund_id, claimed=True).status


def payment_reconcile(payment_id: int) -> str:
    return reconciliation.payment_reconcile(payment_id=payment_id).status


def payment_query(payment_id: int) -> str:
    return services.payment_query_status(payment_id=payment_id).status


def reconcile_payments() -> dict:
    return reconciliation.payments_sweep()


def reprocess_inbox() -> dict:
    return reconciliation.inbox_sweep()


def reconcile_refunds() -> dict:
    return refunds.refunds_sweep()


def inbox_apply(inbox_id: int) -> str:
    return inbox.inbox_process(inbox_id=inbox_id).status


def inbox_count_duplicate(inbox_id: int) -> None:
    inbox.inbox_count_duplicate(inbox_id=inbox_id)
