"""Refunds: the only code that changes refund state.

States: requested -> approved -> submitting -> submitted -> succeeded | failed, plus rejected (a checker
said no), unknown (the request may have reached Safaricom but we do not know what happened: read timeout,
5xx, a worker that died mid-call, a queue timeout, no Result in time) and over_refunded (money went out
that no longer fit the payment: recover it from the customer).

Rules:
- Record before send: a refund is committed as `submitting` before the HTTP call, so a crash leaves a row
  the sweeper sees. It is never sent again blindly: `submitting` and `submitted` refunds that go quiet
  become `unknown`, and `unknown` is settled by a Result (matched on our ids or, for a reversal, on
  OriginalTransactionID), by Transaction Status, or by staff. Only a refund Daraja told us it did not
  process (busy, unreachable) goes back to `approved` to be sent again.
- The payment row is locked for every change that touches money (request, submission, success): at most
  one refund in flight per payment (also a partial unique constraint), and succeeded + in-flight never
  exceed the amount, re-checked right before money is sent.
- Lock order (payments.state): payment, then refund, then inbox row.

Modules by concern: lifecycle (request), approval, submission, results, status_check, resolution, sweep.
"""

from payments.refunds.approval import refund_approve, refund_reject, refund_submit_enqueue
from payments.refunds.lifecycle import REFUNDABLE_PAYMENT_STATUSES, refund_request, refundable_amount
from payments.refunds.resolution import refund_resolve
from payments.refunds.results import (
    queue_timeout_apply,
    refund_apply_queue_timeout,
    refund_apply_result,
    result_apply,
)
from payments.refunds.status_check import (
    refund_apply_status_result,
    refund_check_enqueue,
    refund_check_status,
)
from payments.refunds.submission import refund_resend_reversal, refund_submit
from payments.refunds.sweep import refunds_sweep

__all__ = [
    "REFUNDABLE_PAYMENT_STATUSES",
    "queue_timeout_apply",
    "refund_apply_queue_timeout",
    "refund_apply_result",
    "refund_apply_status_result",
    "refund_approve",
    "refund_check_enqueue",
    "refund_check_status",
    "refund_reject",
    "refund_request",
    "refund_resend_reversal",
    "refund_resolve",
    "refund_submit",
    "refund_submit_enqueue",
    "refundable_amount",
    "refunds_sweep",
    "result_apply",
]
