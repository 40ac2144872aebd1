"""Which payment or refund a statement line is: worked out by the database, a period at a time.

- A customer payment line is the payment with its receipt number (one UPDATE for the whole period).
- A line whose receipt we do not know has candidates: M-Pesa attempts without a receipt, of the same
  amount, to a number with the digits the statement shows (it masks the middle: "2547*****149"), started
  (Daraja accepted the push) at most STATEMENT_MATCH_WINDOW_MINUTES before the line completed, and with
  the A/C No. as account reference when both are known. When exactly one of a line's candidates completed
  on an STK Query with its receipt still pending, and no other line names that payment, the line is that
  receipt: the statement is the authenticated source that closes "receipt pending" (a failed earlier
  attempt of the same order is no rival: Daraja said which one was paid). Every other candidate is only a
  suggestion for staff (an expired attempt, one still open, one under review).
- Money out (reversal and B2C lines) is a refund: by its receipt (the refund's transaction id), or, for a
  succeeded refund whose receipt we never learnt, by what links it when that is unambiguous (the
  reversed payment's receipt and the amount; the phone digits, the amount and the time for B2C).
- Charges are summed by the reconciliation, never matched.
"""

import dataclasses
import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.db.models import (
    Case,
    DateTimeField,
    Exists,
    ExpressionWrapper,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Length
from django.db.models.lookups import Exact, IsNull
from django.utils import timezone

from payments.exceptions import PaymentError
from payments.models import PAID_STATUSES, Payment, PaymentMethod, Refund, RefundMethod, RefundStatus
from payments.services import payment_receipt_from_statement
from statements.models import LineKind, MatchMethod, StatementLine

logger = logging.getLogger(__name__)

# Lines with another status (failed, reversed, pending) did not move money: reconciliation ignores them.
COUNTED = Q(transaction_status="") | Q(transaction_status__iexact="completed")
MONEY_OUT_KINDS = (LineKind.REVERSAL, LineKind.B2C)
SETTLED_REFUND_STATUSES = (RefundStatus.SUCCEEDED, RefundStatus.OVER_REFUNDED)
# A line with no visible digit of the other party's number says nothing about whose it is.
HAS_PHONE_DIGITS = ~Q(party_phone_prefix="", party_phone_suffix="")
UPDATE_CHUNK = 500


@dataclasses.dataclass
class MatchCounts:
    by_receipt: int = 0
    receipts_filled: int = 0
    refunds_by_receipt: int = 0
    refunds_linked: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class SubqueryCount(Subquery):
    """How many rows a correlated queryset has (slice it to stop counting early)."""

    template = "(SELECT COUNT(*) FROM (%(subquery)s) _counted)"
    output_field = IntegerField()


# --- what a period holds ---------------------------------------------------------------------------
def period_lines(*, shortcode: str, period_start: dt.datetime, period_end: dt.datetime) -> QuerySet:
    """The lines of a shortcode completed in the period that moved money (failed ones are left out)."""
    return StatementLine.objects.filter(
        shortcode=shortcode, completed_at__gte=period_start, completed_at__lte=period_end
    ).filter(COUNTED)


def customer_payment_lines(**period) -> QuerySet:
    return period_lines(**period).filter(kind=LineKind.CUSTOMER_PAYMENT)


def money_out_lines(**period) -> QuerySet:
    return period_lines(**period).filter(kind__in=MONEY_OUT_KINDS)


# The statement gives whole seconds, and Safaricom's clock is not ours: a push we recorded as accepted a
# moment after the line says the customer paid is still that payment.
CLOCK_SLACK = dt.timedelta(seconds=60)


def match_window() -> dt.timedelta:
    return dt.timedelta(minutes=settings.STATEMENT_MATCH_WINDOW_MINUTES)


def _shifted(reference, delta: dt.timedelta):
    return ExpressionWrapper(reference + Value(delta), output_field=DateTimeField())


def _phone_fits(phone_field: str) -> Q:
    """The number in `phone_field` shows the outer line's visible digits (and has its length, if known)."""
    return (
        Q(**{f"{phone_field}__startswith": OuterRef("party_phone_prefix")})
        & Q(**{f"{phone_field}__endswith": OuterRef("party_phone_suffix")})
        & (Q(IsNull(OuterRef("party_phone_length"), True)) | Q(phone_length=OuterRef("party_phone_length")))
    )


# --- customer payments -----------------------------------------------------------------------------
def candidate_payments() -> QuerySet:
    """The attempts an outer customer-payment line (referenced with OuterRef) may be, best first.

    Attempts with a receipt are out: their receipt would have matched the line if it were theirs.
    """
    earliest = _shifted(OuterRef("completed_at"), -match_window())
    completed = _shifted(OuterRef("completed_at"), CLOCK_SLACK)
    return (
        Payment.objects.alias(
            phone_length=Length("phone"),
            started=Coalesce("initiated_at", "created_at"),
            # Not `mpesa_receipt_number IS NULL`: answered from the receipt index, it would read every
            # failed attempt there ever was; the time range below is the selective one.
            receipt=Coalesce("mpesa_receipt_number", Value("")),
        )
        .filter(method=PaymentMethod.MPESA, receipt="", amount=OuterRef("paid_in"))
        .filter(
            # Two ranges rather than one on COALESCE: each is answered from an index on its own column.
            Q(initiated_at__gte=earliest, initiated_at__lte=completed)
            | Q(initiated_at__isnull=True, created_at__gte=earliest, created_at__lte=completed)
        )
        .filter(_phone_fits("phone"))
        .filter(
            Q(account_reference="")
            | Q(Exact(OuterRef("account_number"), ""))
            | Q(account_reference__iexact=OuterRef("account_number"))
        )
        .exclude(Exists(StatementLine.objects.filter(payment_id=OuterRef("pk"))))
        .order_by("-started", "-pk")
    )


def unmatched_customer_lines() -> QuerySet:
    return StatementLine.objects.filter(kind=LineKind.CUSTOMER_PAYMENT, payment__isnull=True).filter(COUNTED)


def lines_naming_payment(*, shortcode: str) -> QuerySet:
    """Unmatched lines of the shortcode for which an outer payment (annotated with `started`) is a
    candidate: the payment's amount, completed within the window after its push, and its digits."""
    started = OuterRef("started")
    return (
        unmatched_customer_lines()
        .filter(HAS_PHONE_DIGITS)
        .filter(
            shortcode=shortcode,
            paid_in=OuterRef("amount"),
            completed_at__gte=_shifted(started, -CLOCK_SLACK),
            completed_at__lte=_shifted(started, match_window()),
        )
        .filter(Exists(candidate_payments().filter(pk=OuterRef(OuterRef("pk")))))
    )


def lines_with_candidates(lines: QuerySet, *, among: Q | None = None) -> QuerySet:
    """Annotate unmatched customer-payment lines with `candidates` (0, 1, or 2 meaning "more than one")
    and `candidate_id` (the best), counting only the candidates that are `among` when given."""
    candidates = candidate_payments() if among is None else candidate_payments().filter(among)
    return (
        lines.filter(payment__isnull=True)
        .filter(HAS_PHONE_DIGITS)
        .annotate(
            candidates=SubqueryCount(candidates.values("pk")[:2]),
            candidate_id=Subquery(candidates.values("pk")[:1]),
        )
    )


def unique_candidates(lines: QuerySet, *, shortcode: str, among: Q | None = None) -> list[tuple[int, int]]:
    """(line pk, payment pk) for lines with one candidate `among` those given, which no other line names."""
    single = dict(
        lines_with_candidates(lines, among=among).filter(candidates=1).values_list("pk", "candidate_id")
    )
    payments = Payment.objects.all() if among is None else Payment.objects.filter(among)
    named_once: set[int] = set()
    candidates = sorted(set(single.values()))
    # Asked from the payment's side, a chunk of payments per query (not once per line).
    for start in range(0, len(candidates), UPDATE_CHUNK):
        named_once.update(
            payments.filter(pk__in=candidates[start : start + UPDATE_CHUNK])
            .annotate(started=Coalesce("initiated_at", "created_at"))
            .annotate(claimants=SubqueryCount(lines_naming_payment(shortcode=shortcode).values("pk")[:2]))
            .filter(claimants=1)
            .values_list("pk", flat=True)
        )
    return [(line, payment) for line, payment in single.items() if payment in named_once]


def match_receipts(*, shortcode: str, period_start: dt.datetime, period_end: dt.datetime) -> int:
    """Customer payment lines take the payment with their receipt number: one UPDATE for the period."""
    payment_with_receipt = (
        Payment.objects.filter(method=PaymentMethod.MPESA, mpesa_receipt_number=OuterRef("receipt"))
        .exclude(Exists(StatementLine.objects.filter(payment_id=OuterRef("pk"))))
        .values("pk")[:1]
    )
    return (
        customer_payment_lines(shortcode=shortcode, period_start=period_start, period_end=period_end)
        .filter(payment__isnull=True)
        .filter(Exists(payment_with_receipt))
        .update(
            payment_id=Subquery(payment_with_receipt),
            match_method=MatchMethod.RECEIPT,
            matched_at=timezone.now(),
        )
    )


def fill_pending_receipts(
    *, shortcode: str, period_start: dt.datetime, period_end: dt.datetime, actor=None
) -> int:
    """Lines that are, unambiguously, the payment of an attempt completed with its receipt pending."""
    lines = customer_payment_lines(shortcode=shortcode, period_start=period_start, period_end=period_end)
    # Only the attempts Daraja said were paid compete for a line here: beside a retry completed on an STK
    # Query, the order's failed attempt of the same amount and number is no rival (were it paid too, the
    # statement would show a second line, and that one is listed for staff).
    pending = Q(status__in=PAID_STATUSES, receipt_pending=True)
    pairs = unique_candidates(lines, shortcode=shortcode, among=pending)
    found = {
        pk: (receipt, paid_in, completed_at)
        for pk, receipt, paid_in, completed_at in StatementLine.objects.filter(
            pk__in=[line for line, _ in pairs]
        ).values_list("pk", "receipt", "paid_in", "completed_at")
    }
    filled = 0
    # One transaction per payment, locked before its line (the lock order: payment first).
    for line_id, payment_id in pairs:
        receipt, paid_in, completed_at = found[line_id]
        try:
            with transaction.atomic():
                payment_receipt_from_statement(
                    payment_id=payment_id,
                    receipt=receipt,
                    amount=paid_in,
                    completed_at=completed_at,
                    actor=actor,
                    line_ref=str(line_id),
                )
                filled += StatementLine.objects.filter(pk=line_id, payment__isnull=True).update(
                    payment_id=payment_id,
                    match_method=MatchMethod.DETAILS,
                    matched_at=timezone.now(),
                )
        except PaymentError as exc:
            # Left unmatched: the reconciliation lists the line with this payment as a suggestion.
            logger.info("statement line %s not matched to payment %s: %s", line_id, payment_id, exc.message)
    return filled


# --- refunds ---------------------------------------------------------------------------------------
def _refund_without_line() -> Q:
    return ~Q(Exists(StatementLine.objects.filter(refund_id=OuterRef("pk"))))


def candidate_reversals() -> QuerySet:
    """Succeeded reversals an outer reversal line may be: the reversed receipt and the amount agree, and
    the refund's own receipt is unknown or the line's."""
    return (
        Refund.objects.filter(
            method=RefundMethod.REVERSAL,
            status__in=SETTLED_REFUND_STATUSES,
            original_receipt=OuterRef("linked_transaction_id"),
            amount=OuterRef("withdrawn"),
        )
        .filter(Q(transaction_id="") | Q(transaction_id=OuterRef("receipt")))
        .filter(_refund_without_line())
        .order_by("pk")
    )


def candidate_b2c_refunds() -> QuerySet:
    """Succeeded B2C refunds with no receipt an outer B2C line may be: same amount, paid to a number with
    the line's visible digits, between the send and (a match window after) the success we recorded."""
    completed = OuterRef("completed_at")
    return (
        Refund.objects.alias(phone_length=Length("payment__phone"))
        .filter(
            method=RefundMethod.B2C,
            status__in=SETTLED_REFUND_STATUSES,
            transaction_id="",
            amount=OuterRef("withdrawn"),
            submitted_at__lte=_shifted(completed, CLOCK_SLACK),
            completed_at__gte=_shifted(completed, -match_window()),
        )
        .filter(_phone_fits("payment__phone"))
        .filter(_refund_without_line())
        .order_by("pk")
    )


def _unmatched_out_lines(kind: str) -> QuerySet:
    return StatementLine.objects.filter(kind=kind, refund__isnull=True).filter(COUNTED)


def _unique_refund_pairs(lines: QuerySet, kind: str, candidates, *, shortcode: str) -> list[tuple[int, int]]:
    """(line pk, refund pk) for lines with one candidate refund that no other line of the kind names."""
    single = dict(
        lines.filter(kind=kind, refund__isnull=True)
        .annotate(
            candidates=SubqueryCount(candidates().values("pk")[:2]),
            candidate_id=Subquery(candidates().values("pk")[:1]),
        )
        .filter(candidates=1)
        .values_list("pk", "candidate_id")
    )
    claimants = (
        _unmatched_out_lines(kind)
        .filter(shortcode=shortcode, withdrawn=OuterRef("amount"))
        .filter(Exists(candidates().filter(pk=OuterRef(OuterRef("pk")))))
    )
    refund_ids = sorted(set(single.values()))
    named_once: set[int] = set()
    for start in range(0, len(refund_ids), UPDATE_CHUNK):
        named_once.update(
            Refund.objects.filter(pk__in=refund_ids[start : start + UPDATE_CHUNK])
            .annotate(claimants=SubqueryCount(claimants.values("pk")[:2]))
            .filter(claimants=1)
            .values_list("pk", flat=True)
        )
    return [(line, refund) for line, refund in single.items() if refund in named_once]


def _assign_refunds(pairs: list[tuple[int, int]], method: str) -> int:
    updated = 0
    now = timezone.now()
    for start in range(0, len(pairs), UPDATE_CHUNK):
        chunk = pairs[start : start + UPDATE_CHUNK]
        updated += StatementLine.objects.filter(
            pk__in=[line for line, _ in chunk], refund__isnull=True
        ).update(
            refund_id=Case(
                *(When(pk=line, then=Value(refund)) for line, refund in chunk), output_field=IntegerField()
            ),
            match_method=method,
            matched_at=now,
        )
    return updated


def match_refund_receipts(*, shortcode: str, period_start: dt.datetime, period_end: dt.datetime) -> int:
    """Reversal and B2C lines take the refund whose M-Pesa receipt (transaction id) they carry."""
    refund_with_receipt = (
        Refund.objects.filter(transaction_id=OuterRef("receipt"))
        .filter(_refund_without_line())
        .values("pk")[:1]
    )
    return (
        money_out_lines(shortcode=shortcode, period_start=period_start, period_end=period_end)
        .filter(refund__isnull=True)
        .filter(Exists(refund_with_receipt))
        .update(
            refund_id=Subquery(refund_with_receipt),
            match_method=MatchMethod.RECEIPT,
            matched_at=timezone.now(),
        )
    )


def match_refunds_linked(*, shortcode: str, period_start: dt.datetime, period_end: dt.datetime) -> int:
    lines = money_out_lines(shortcode=shortcode, period_start=period_start, period_end=period_end)
    reversals = _unique_refund_pairs(
        lines.exclude(linked_transaction_id=""), LineKind.REVERSAL, candidate_reversals, shortcode=shortcode
    )
    b2c = _unique_refund_pairs(
        lines.filter(HAS_PHONE_DIGITS), LineKind.B2C, candidate_b2c_refunds, shortcode=shortcode
    )
    return _assign_refunds(reversals + b2c, MatchMethod.LINKED)


# --- everything, in order --------------------------------------------------------------------------
def match_lines(
    *, shortcode: str, period_start: dt.datetime, period_end: dt.datetime, actor=None
) -> MatchCounts:
    """Match the period's lines: receipts first (they are certain), then what only details can link."""
    period = {"shortcode": shortcode, "period_start": period_start, "period_end": period_end}
    counts = MatchCounts()
    with transaction.atomic():
        counts.by_receipt = match_receipts(**period)
        counts.refunds_by_receipt = match_refund_receipts(**period)
        counts.refunds_linked = match_refunds_linked(**period)
    counts.receipts_filled = fill_pending_receipts(**period, actor=actor)
    logger.info("statement %s matched: %s", shortcode, counts.as_dict())
    return counts
