"""What the statement reconciliation found, for the admin, the attention list, alerts and the daily report."""

import datetime as dt
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db.models import (
    Count,
    DateTimeField,
    Exists,
    ExpressionWrapper,
    OuterRef,
    QuerySet,
    Value,
)
from django.utils import timezone

from payments.models import PAID_STATUSES, Payment, PaymentMethod
from statements.models import (
    ItemKind,
    ItemStatus,
    ReconciliationItem,
    ReconciliationRun,
    StatementImport,
    StatementLine,
)


def payments_missing_from_statement(
    *, now: dt.datetime | None = None, shortcode: str | None = None
) -> QuerySet[Payment]:
    """Paid M-Pesa payments an imported statement should show and does not: "we think we were paid but
    were not", the serious one.

    A payment counts once the imported statements of its shortcode reach back to its completion and on to
    STATEMENT_MISSING_GRACE_MINUTES after it (so a payment a minute before a file's end is not flagged
    early), and it has no line. One the staff marked as expected is left out. Our STK pushes are paid to
    MPESA_SHORTCODE, so another shortcode has none.
    """
    shortcode = shortcode or settings.MPESA_SHORTCODE
    if shortcode != settings.MPESA_SHORTCODE:
        return Payment.objects.none()
    now = now or timezone.now()
    grace = dt.timedelta(minutes=settings.STATEMENT_MISSING_GRACE_MINUTES)
    imports = StatementImport.objects.filter(shortcode=shortcode)
    after_grace = ExpressionWrapper(OuterRef("completed_at") + Value(grace), output_field=DateTimeField())
    return (
        Payment.objects.filter(
            method=PaymentMethod.MPESA,
            status__in=PAID_STATUSES,
            completed_at__lte=now - grace,
        )
        .filter(Exists(imports.filter(period_start__lte=OuterRef("completed_at"))))
        .filter(Exists(imports.filter(period_end__gte=after_grace)))
        .exclude(Exists(StatementLine.objects.filter(payment_id=OuterRef("pk"))))
        .exclude(
            Exists(
                ReconciliationItem.objects.filter(
                    kind=ItemKind.MISSING_FROM_STATEMENT,
                    status=ItemStatus.RESOLVED,
                    payment_id=OuterRef("pk"),
                )
            )
        )
    )


def open_items() -> QuerySet[ReconciliationItem]:
    return ReconciliationItem.objects.filter(status=ItemStatus.OPEN)


def open_items_count() -> int:
    return open_items().count()


def open_items_by_kind() -> dict[str, int]:
    """Open exceptions per kind, every kind present (0 when none), in the order of ItemKind."""
    counts = dict(open_items().order_by().values("kind").annotate(n=Count("pk")).values_list("kind", "n"))
    return {kind: counts.get(kind, 0) for kind in ItemKind.values}


def _money(value) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None else None
    except InvalidOperation:
        return None


def run_summary(run: ReconciliationRun) -> dict:
    """A run for display: its period, totals (money as Decimal), whether the difference is explained to the
    shilling, and its exceptions now, per kind and status."""
    totals = run.totals or {}
    money = {
        key: _money(value)
        for key, value in totals.items()
        if isinstance(value, str) and _money(value) is not None
    }
    rows = (
        ReconciliationItem.objects.filter(last_run=run)
        .order_by()
        .values("kind", "status")
        .annotate(n=Count("pk"))
        .values_list("kind", "status", "n")
    )
    by_kind = {kind: {status: 0 for status in ItemStatus.values} for kind in ItemKind.values}
    for kind, status, count in rows:
        by_kind.setdefault(kind, {})[status] = count
    difference, explained = money.get("difference"), money.get("explained")
    return {
        "run": run.pk,
        "shortcode": run.shortcode,
        "period_start": run.period_start,
        "period_end": run.period_end,
        "statement_import": run.statement_import_id,
        "created_at": run.created_at,
        "money": money,
        "counts": totals.get("counts", {}),
        "balanced": difference is not None and difference == explained,
        "items": by_kind,
        "open": sum(statuses.get(ItemStatus.OPEN, 0) for statuses in by_kind.values()),
    }
