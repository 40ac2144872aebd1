"""django-q2 entry points: module-level, JSON-able arguments and results, one service call each."""

from payments import reconciliation, refunds


def refund_submit(refund_id: int) -> str:
    return refunds.refund_submit(refund_id=refund_id).status


def reconcile_payments() -> dict:
    return reconciliation.payments_sweep()


def reprocess_inbox() -> dict:
    return reconciliation.inbox_sweep()


def reconcile_refunds() -> dict:
    return refunds.refunds_sweep()
