"""Reconciling a shortcode's statement with our payments and refunds, one period at a time.

A run matches the period's lines (statements.matching), then lists what still differs as exceptions that
staff work through (ReconciliationItem). An exception is kept across runs by a key naming its subject
("unrecorded_line:<line>", "missing_from_statement:<payment>", ...): a later run finds the same one again
instead of adding another, clears an open one whose difference is gone, and never reopens one that staff
resolved.

The run's totals explain the difference between the statement and our records to the shilling:

    statement_paid_in = matched_in + unmatched_in                (customer payment lines)
    our_completed     = matched_completed + missing_amount       (what we recorded for that money)
    difference        = statement_paid_in - our_completed
                      = unmatched_in - missing_amount + amount_differences_total  (= explained)
    statement_paid_out = refunds_matched + lines_without_refund  (reversal and B2C lines)

`matched_completed` is what our payments matched to the period's lines say they took; the payments
missing from the statement are those completed in the period (as far as the imported statements reach,
less STATEMENT_MISSING_GRACE_MINUTES, so a payment a minute before a file's end is not flagged early).
"""

import dataclasses
import datetime as dt
import logging
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import (
    Case,
    Count,
    DecimalField,
    Exists,
    ExpressionWrapper,
    F,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    When,
)
from django.db.models.functions import Coalesce

from payments.models import PAID_STATUSES, Payment, PaymentMethod, Refund, RefundMethod
from statements.exceptions import ReconciliationError
from statements.matching import (
    COUNTED,
    HAS_PHONE_DIGITS,
    SETTLED_REFUND_STATUSES,
    MatchCounts,
    candidate_payments,
    customer_payment_lines,
    match_lines,
    money_out_lines,
    period_lines,
)
from statements.models import (
    ImportSource,
    ItemKind,
    ItemStatus,
    LineKind,
    ReconciliationItem,
    ReconciliationRun,
    StatementImport,
    StatementLine,
)

logger = logging.getLogger(__name__)

MONEY = DecimalField(max_digits=16, decimal_places=2)
CENT = Decimal("0.01")
ZERO = Decimal("0")
UPSERT_BATCH = 1000


def expected_amount(prefix: str = ""):
    """What a payment took: the amount the result reported, else the amount asked."""
    return Coalesce(f"{prefix}paid_amount", f"{prefix}amount", output_field=MONEY)


def money(value: Decimal | None) -> str:
    return f"{(value or ZERO).quantize(CENT)}"


@dataclasses.dataclass(frozen=True)
class Period:
    shortcode: str
    start: dt.datetime
    end: dt.datetime
    pulled: bool = False  # a Pull Transactions window: customer payments only

    @property
    def lines(self) -> dict:
        return {"shortcode": self.shortcode, "period_start": self.start, "period_end": self.end}

    @property
    def is_payments_shortcode(self) -> bool:
        """Our STK pushes are paid to MPESA_SHORTCODE: its statement is where our payments show."""
        return self.shortcode == settings.MPESA_SHORTCODE

    @property
    def refund_methods(self) -> list[str]:
        methods = []
        if self.is_payments_shortcode:
            methods.append(RefundMethod.REVERSAL)  # a reversal leaves from the shortcode that was paid
        if settings.MPESA_B2C_SHORTCODE and self.shortcode == settings.MPESA_B2C_SHORTCODE:
            methods.append(RefundMethod.B2C)
        return methods

    def covered(self, *, money_out: bool = False) -> tuple[dt.datetime, dt.datetime] | None:
        """Completion times whose line must be on the statement by now: the period (and the grace before
        it), as far as this period and every imported statement of the shortcode reach, less the grace.

        With `money_out`, only statement files count: Pull Transactions lists customer payments (C2B)
        alone, so a pulled window says nothing about reversals and B2C payments.
        """
        grace = dt.timedelta(minutes=settings.STATEMENT_MISSING_GRACE_MINUTES)
        if money_out and self.pulled:
            return None
        imports = StatementImport.objects.filter(shortcode=self.shortcode)
        if money_out:
            imports = imports.exclude(source=ImportSource.PULL)
        reach = imports.aggregate(first=Min("period_start"), last=Max("period_end"))
        covered_from = min(self.start, reach["first"] or self.start)
        covered_until = max(self.end, reach["last"] or self.end)
        low, high = max(self.start - grace, covered_from), min(self.end, covered_until - grace)
        return (low, high) if low <= high else None


# --- what differs ----------------------------------------------------------------------------------
def missing_payments(period: Period) -> QuerySet:
    """Paid M-Pesa payments of the shortcode completed in the covered part of the period, with no line."""
    covered = period.covered()
    if not period.is_payments_shortcode or covered is None:
        return Payment.objects.none()
    return Payment.objects.filter(
        method=PaymentMethod.MPESA,
        status__in=PAID_STATUSES,
        completed_at__gte=covered[0],
        completed_at__lte=covered[1],
    ).exclude(Exists(StatementLine.objects.filter(payment_id=OuterRef("pk"))))


def refunds_missing(period: Period) -> QuerySet:
    covered = period.covered(money_out=True)
    if not period.refund_methods or covered is None:
        return Refund.objects.none()
    return Refund.objects.filter(
        method__in=period.refund_methods,
        status__in=SETTLED_REFUND_STATUSES,
        completed_at__gte=covered[0],
        completed_at__lte=covered[1],
    ).exclude(Exists(StatementLine.objects.filter(refund_id=OuterRef("pk"))))


def _examined_order_ids(period: Period) -> list[QuerySet]:
    """Orders with an attempt matched to one of the period's lines or completed in the period."""
    examined = [
        customer_payment_lines(**period.lines).filter(payment__isnull=False).values("payment__order_id")
    ]
    if period.is_payments_shortcode:
        examined.append(
            Payment.objects.filter(
                method=PaymentMethod.MPESA, completed_at__gte=period.start, completed_at__lte=period.end
            ).values("order_id")
        )
    return examined


def _in_examined_orders(period: Period, field: str) -> Q:
    condition = Q()
    for order_ids in _examined_order_ids(period):
        condition |= Q(**{f"{field}__in": Subquery(order_ids)})
    return condition


def _double_payments(period: Period) -> QuerySet:
    """Per order paid more than once (attempts still holding money after refunds): attempts, total, the
    largest attempt, the latest attempt and when money last arrived."""
    orders_payments = Payment.objects.filter(_in_examined_orders(period, "order_id"))
    has_line = Exists(StatementLine.objects.filter(payment_id=OuterRef("pk")).filter(COUNTED))
    net = ExpressionWrapper(expected_amount() - F("refunded_amount"), output_field=MONEY)
    return (
        orders_payments.filter(method=PaymentMethod.MPESA)
        .filter(Q(status__in=PAID_STATUSES) | Q(has_line))
        .alias(net=net)
        .filter(net__gt=0)
        .order_by()
        .values("order_id")
        .annotate(
            attempts=Count("pk"),
            total=Sum("net"),
            largest=Max("net"),
            latest=Max("pk"),
            last_at=Max(Coalesce("completed_at", "created_at")),
        )
        .filter(attempts__gte=2)
    )


def find_exceptions(period: Period, run: ReconciliationRun) -> list[ReconciliationItem]:
    """Every exception the period holds now, as unsaved items of this run."""
    items: list[ReconciliationItem] = []

    def item(kind: str, subject: int, **fields) -> None:
        items.append(
            ReconciliationItem(
                key=f"{kind}:{subject}",
                kind=kind,
                shortcode=period.shortcode,
                first_run=run,
                last_run=run,
                **fields,
            )
        )

    suggestion = Case(When(HAS_PHONE_DIGITS, then=Subquery(candidate_payments().values("pk")[:1])))
    unrecorded = (
        customer_payment_lines(**period.lines)
        .filter(payment__isnull=True)
        .annotate(suggested=suggestion)
        .values_list("pk", "receipt", "paid_in", "completed_at", "suggested")
    )
    for pk, receipt, paid_in, completed_at, suggested in unrecorded.iterator(chunk_size=2000):
        item(
            ItemKind.UNRECORDED_LINE,
            pk,
            line_id=pk,
            suggested_payment_id=suggested,
            amount=paid_in,
            occurred_at=completed_at,
            detail=f"{receipt}: KES {paid_in} received; no payment recorded"
            + (f" (perhaps payment #{suggested})" if suggested else ""),
        )

    differing = (
        customer_payment_lines(**period.lines)
        .filter(payment__isnull=False)
        .annotate(expected=expected_amount("payment__"))
        .exclude(paid_in=F("expected"))
        .values_list("pk", "receipt", "paid_in", "completed_at", "payment_id", "expected")
    )
    for pk, receipt, paid_in, completed_at, payment_id, expected in differing.iterator(chunk_size=2000):
        item(
            ItemKind.AMOUNT_DIFFERENCE,
            pk,
            line_id=pk,
            payment_id=payment_id,
            amount=paid_in - expected,
            occurred_at=completed_at,
            detail=f"{receipt}: the statement shows KES {paid_in}, payment #{payment_id} took KES {expected}",
        )

    missing = (
        missing_payments(period)
        .annotate(expected=expected_amount())
        .values_list("pk", "mpesa_receipt_number", "expected", "completed_at")
    )
    for pk, receipt, expected, completed_at in missing.iterator(chunk_size=2000):
        item(
            ItemKind.MISSING_FROM_STATEMENT,
            pk,
            payment_id=pk,
            amount=expected,
            occurred_at=completed_at,
            detail=f"Payment #{pk} ({receipt or 'receipt pending'}) completed for KES {expected} "
            "but is not on the statement",
        )

    for row in _double_payments(period):
        extra = row["total"] - row["largest"]
        item(
            ItemKind.DOUBLE_PAYMENT,
            row["order_id"],
            payment_id=row["latest"],
            amount=extra,
            occurred_at=row["last_at"],
            detail=f"Order #{row['order_id']} was paid by {row['attempts']} M-Pesa attempts: KES {extra} "
            "more than once",
        )

    for pk, method, amount, completed_at in refunds_missing(period).values_list(
        "pk", "method", "amount", "completed_at"
    ):
        item(
            ItemKind.REFUND_WITHOUT_LINE,
            pk,
            refund_id=pk,
            amount=amount,
            occurred_at=completed_at,
            detail=f"Refund #{pk} ({method}) of KES {amount} succeeded but is not on the statement",
        )

    out = (
        money_out_lines(**period.lines)
        .filter(refund__isnull=True)
        .values_list("pk", "receipt", "kind", "withdrawn", "completed_at")
    )
    for pk, receipt, kind, withdrawn, completed_at in out.iterator(chunk_size=2000):
        item(
            ItemKind.LINE_WITHOUT_REFUND,
            pk,
            line_id=pk,
            amount=withdrawn,
            occurred_at=completed_at,
            detail=f"{receipt}: KES {withdrawn} paid out ({LineKind(kind).label.lower()}) with no refund recorded",
        )
    return items


def exception_scope(period: Period) -> Q:
    """The items whose subject this run examined: those it does not find again are no longer a problem."""
    in_period = {"line__completed_at__gte": period.start, "line__completed_at__lte": period.end}
    scope = Q(
        kind__in=(ItemKind.UNRECORDED_LINE, ItemKind.AMOUNT_DIFFERENCE, ItemKind.LINE_WITHOUT_REFUND),
        line__shortcode=period.shortcode,
        **in_period,
    )
    covered = period.covered()
    if covered is not None and period.is_payments_shortcode:
        scope |= Q(
            kind=ItemKind.MISSING_FROM_STATEMENT,
            payment__completed_at__gte=covered[0],
            payment__completed_at__lte=covered[1],
        )
    refunds_covered = period.covered(money_out=True)
    if refunds_covered is not None and period.refund_methods:
        scope |= Q(
            kind=ItemKind.REFUND_WITHOUT_LINE,
            refund__method__in=period.refund_methods,
            refund__completed_at__gte=refunds_covered[0],
            refund__completed_at__lte=refunds_covered[1],
        )
    scope |= Q(kind=ItemKind.DOUBLE_PAYMENT) & _in_examined_orders(period, "payment__order_id")
    return scope


def _upsert(items: list[ReconciliationItem], run: ReconciliationRun) -> None:
    ReconciliationItem.objects.bulk_create(
        items,
        batch_size=UPSERT_BATCH,
        update_conflicts=True,
        unique_fields=["key"],
        # Not status, resolution, refund or first_run: what staff did and when it was first seen stay.
        update_fields=["last_run", "amount", "detail", "suggested_payment", "occurred_at", "updated_at"],
    )
    # Back again after a run had cleared it; a resolved one stays resolved.
    ReconciliationItem.objects.filter(last_run=run, status=ItemStatus.CLEARED).update(status=ItemStatus.OPEN)


# --- totals ----------------------------------------------------------------------------------------
def _sum_of(items: list[ReconciliationItem], kind: str) -> Decimal:
    return sum((i.amount for i in items if i.kind == kind), ZERO)


def run_totals(
    period: Period, items: list[ReconciliationItem], counts: MatchCounts, run: ReconciliationRun, cleared: int
) -> dict:
    customer = customer_payment_lines(**period.lines).aggregate(
        lines=Count("pk"),
        matched=Count("pk", filter=Q(payment__isnull=False)),
        total_in=Sum("paid_in"),
        matched_in=Sum("paid_in", filter=Q(payment__isnull=False)),
        unmatched_in=Sum("paid_in", filter=Q(payment__isnull=True)),
        matched_completed=Sum(expected_amount("payment__"), filter=Q(payment__isnull=False)),
    )
    ours = Payment.objects.filter(
        Q(pk__in=Subquery(customer_payment_lines(**period.lines).values("payment_id")))
        | Q(pk__in=Subquery(missing_payments(period).values("pk")))
    ).aggregate(total=Sum(expected_amount()))
    out = money_out_lines(**period.lines).aggregate(
        lines=Count("pk"),
        paid_out=Sum("withdrawn"),
        refunds_matched=Sum("withdrawn", filter=Q(refund__isnull=False)),
    )
    charges = (
        period_lines(**period.lines)
        .filter(kind=LineKind.CHARGE)
        .aggregate(lines=Count("pk"), charged=Sum("withdrawn"), given_back=Sum("paid_in"))
    )
    missing_amount = _sum_of(items, ItemKind.MISSING_FROM_STATEMENT)
    differences = _sum_of(items, ItemKind.AMOUNT_DIFFERENCE)
    paid_in = customer["total_in"] or ZERO
    unmatched_in = customer["unmatched_in"] or ZERO
    our_completed = ours["total"] or ZERO
    difference = paid_in - our_completed
    explained = unmatched_in - missing_amount + differences
    if difference != explained:
        logger.error(
            "reconciliation run %s does not balance: difference %s, explained %s",
            run.pk,
            difference,
            explained,
        )
    by_status = dict(
        ReconciliationItem.objects.filter(last_run=run)
        .order_by()
        .values("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    return {
        "statement_paid_in": money(paid_in),
        "matched_in": money(customer["matched_in"]),
        "unmatched_in": money(unmatched_in),
        "our_completed": money(our_completed),
        "matched_completed": money(customer["matched_completed"]),
        "missing_amount": money(missing_amount),
        "amount_differences_total": money(differences),
        "difference": money(difference),
        "explained": money(explained),
        "balanced": difference == explained,
        "statement_paid_out": money(out["paid_out"]),
        "refunds_matched": money(out["refunds_matched"]),
        "lines_without_refund": money(_sum_of(items, ItemKind.LINE_WITHOUT_REFUND)),
        "refunds_without_line": money(_sum_of(items, ItemKind.REFUND_WITHOUT_LINE)),
        "double_payments_total": money(_sum_of(items, ItemKind.DOUBLE_PAYMENT)),
        "charges_total": money((charges["charged"] or ZERO) - (charges["given_back"] or ZERO)),
        "counts": {
            "customer_payment_lines": customer["lines"],
            "matched_lines": customer["matched"],
            "unmatched_lines": customer["lines"] - customer["matched"],
            "money_out_lines": out["lines"],
            "charge_lines": charges["lines"],
        },
        "matched_now": counts.as_dict(),
        "items": {kind: sum(1 for i in items if i.kind == kind) for kind in ItemKind.values},
        "statuses": {
            "open": by_status.get(ItemStatus.OPEN, 0),
            "resolved": by_status.get(ItemStatus.RESOLVED, 0),
            "cleared": cleared,
        },
    }


# --- runs ------------------------------------------------------------------------------------------
def reconcile(
    *,
    shortcode: str,
    period_start: dt.datetime,
    period_end: dt.datetime,
    actor=None,
    statement_import: StatementImport | None = None,
) -> ReconciliationRun:
    """Match the period's lines, then record what still differs and the totals that explain it.

    `actor` is the person who imported the statement (None: the system, e.g. Pull Transactions); a receipt
    the statement fills in is recorded in their name.
    """
    if not shortcode:
        raise ReconciliationError("Which shortcode's statement? None was given.", field="shortcode")
    if period_end < period_start:
        raise ReconciliationError("The period ends before it starts.", field="period_end")
    period = Period(
        shortcode=shortcode,
        start=period_start,
        end=period_end,
        pulled=statement_import is not None and statement_import.source == ImportSource.PULL,
    )
    run = ReconciliationRun.objects.create(
        shortcode=shortcode,
        period_start=period_start,
        period_end=period_end,
        statement_import=statement_import,
        started_by=actor,
    )
    counts = match_lines(**period.lines, actor=actor)
    with transaction.atomic():
        items = find_exceptions(period, run)
        _upsert(items, run)
        cleared = (
            ReconciliationItem.objects.filter(shortcode=shortcode, status=ItemStatus.OPEN)
            .filter(exception_scope(period))
            .exclude(last_run=run)
            .update(status=ItemStatus.CLEARED, last_run=run)
        )
        run.totals = run_totals(period, items, counts, run, cleared)
        run.save(update_fields=["totals"])
    logger.info(
        "reconciliation run %s (%s): %s exceptions, %s cleared", run.pk, shortcode, len(items), cleared
    )
    return run


def reconcile_import(statement_import: StatementImport, *, actor=None) -> ReconciliationRun:
    """Reconcile the period an import covers (as the file states it, else from its first to last line)."""
    start, end = statement_import.period_start, statement_import.period_end
    if start is None or end is None:
        reach = statement_import.lines.aggregate(first=Min("completed_at"), last=Max("completed_at"))
        start = start or reach["first"] or statement_import.created_at
        end = end or reach["last"] or statement_import.created_at
    return reconcile(
        shortcode=statement_import.shortcode,
        period_start=start,
        period_end=max(start, end),
        actor=actor if actor is not None else statement_import.imported_by,
        statement_import=statement_import,
    )
