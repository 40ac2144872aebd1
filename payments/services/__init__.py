"""The only code that changes payment state (refunds have their own package, `payments.refunds`).

Every transition goes through `payments.state`: it locks the payment row, checks the edge is legal, writes
a PaymentEvent and sends `payment_status_changed` inside the transaction. HTTP calls to Daraja never run
inside a transaction: the attempt is committed before the push, and the answer is applied in a new one.
"""

from payments.services.attempts import (
    payment_create,
    payment_initiate_stk,
    payment_mark_collected,
    payment_mark_not_collected,
    payment_retry,
)
from payments.services.callbacks import callback_attach, legacy_callback_apply, stk_callback_apply
from payments.services.queries import (
    payment_query_enqueue,
    payment_query_requested,
    payment_query_status,
    query_throttle_acquire,
)
from payments.services.results import payment_apply_result, payment_receipt_enter
from payments.services.review import ReviewOutcome, payment_review_resolve
from payments.services.statement import payment_receipt_from_statement, payment_statement_attach

__all__ = [
    "ReviewOutcome",
    "callback_attach",
    "legacy_callback_apply",
    "payment_apply_result",
    "payment_create",
    "payment_initiate_stk",
    "payment_mark_collected",
    "payment_mark_not_collected",
    "payment_query_enqueue",
    "payment_query_requested",
    "payment_query_status",
    "payment_receipt_enter",
    "payment_receipt_from_statement",
    "payment_retry",
    "payment_review_resolve",
    "payment_statement_attach",
    "query_throttle_acquire",
    "stk_callback_apply",
]
