"""What a finance report says, and the email (or HTML page) that says it.

Every figure comes from reports.selectors (the summary of the period and of the one before it, the
dashboard's KPI cards built from them, FORMULAS), the attention counts from reports.attention, what the
M-PESA statement's reconciliation left open from statements.selectors, and the open alerts from the
alerts part when it is installed. Nothing here changes state or sends anything:
reports.report_services does that.
"""

import datetime as dt
import logging
from dataclasses import dataclass, field, replace
from decimal import Decimal
from urllib.parse import urlencode

from anymail.message import attach_inline_image
from django.apps import apps
from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.core.mail import EmailMultiAlternatives
from django.db.models import Count, Sum
from django.db.models.functions import Coalesce
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from reports import selectors
from reports.attention import AttentionItem, attention_items
from reports.dashboard import Kpi, kpis, percent
from reports.periods import NAIROBI, Period
from reports.report_periods import comparison_period
from statements import selectors as statement_selectors
from statements.models import ItemKind

logger = logging.getLogger(__name__)

RATES = ("attempt_success", "technical_success", "order_conversion")
RATE_TITLES = {
    "attempt_success": "Attempt success",
    "technical_success": "Technical success",
    "order_conversion": "Order conversion",
}
MAX_ALERTS = 20
MAX_MISSING_LISTED = 5


@dataclass(frozen=True)
class OpenAlert:
    title: str
    status: str  # e.g. "Open", "Acknowledged"
    opened_at: dt.datetime | None
    url: str


@dataclass(frozen=True)
class ReportFileInfo:
    """An attachment as the email describes it: attached, or stored and linked."""

    name: str
    rows: int
    size: int
    download_url: str = ""


@dataclass(frozen=True)
class MissingPayment:
    """A completed payment the imported statement does not show, as the report lists it."""

    reference: str
    phone: str  # masked
    amount: Decimal
    completed_at: dt.datetime | None
    url: str


@dataclass(frozen=True)
class ExceptionCount:
    kind: str
    label: str
    count: int
    url: str


@dataclass(frozen=True)
class StatementFigures:
    """What reconciling the M-PESA statement left for a person: every figure from statements.selectors."""

    missing_count: int = 0
    missing_amount: Decimal = Decimal("0.00")
    missing: list[MissingPayment] = field(default_factory=list)  # the oldest few
    open_by_kind: list[ExceptionCount] = field(default_factory=list)

    @property
    def open_total(self) -> int:
        return sum(row.count for row in self.open_by_kind)

    @property
    def missing_more(self) -> int:
        return self.missing_count - len(self.missing)


@dataclass(frozen=True)
class ReportFigures:
    period: Period
    previous_period: Period
    summary: selectors.Summary
    previous: selectors.Summary
    kpis: list[Kpi]
    refunds_paid_count: int
    attention: list[AttentionItem]
    alerts: list[OpenAlert]
    generated_at: dt.datetime
    formulas: dict = field(default_factory=lambda: selectors.FORMULAS)
    statement: StatementFigures = field(default_factory=StatementFigures)

    @property
    def rates(self) -> list[dict]:
        return [
            {
                "key": key,
                "title": RATE_TITLES[key],
                "value": percent(getattr(self.summary, key)),
                "previous": percent(getattr(self.previous, key)),
                "formula": selectors.FORMULAS[key],
            }
            for key in RATES
        ]

    @property
    def attention_open(self) -> list[AttentionItem]:
        return [item for item in self.attention if item.count]


class _EveryPermission:
    """The attention list as a superuser sees it: a report goes to people who act on any of it."""

    is_active = True
    is_staff = True
    is_superuser = True

    def has_perm(self, perm, obj=None) -> bool:
        return True


def absolute_url(path: str) -> str:
    return f"{settings.SITE_BASE_URL}{path}" if path.startswith("/") else path


def open_alerts_for_report(limit: int = MAX_ALERTS) -> list[OpenAlert]:
    """Open alerts for the report, newest first; [] when the alerts part (model reports.Alert, migration
    reports/0002_alerts) is not installed.

    It reads the Alert model through the app registry, so the report has no import of the alerts code:
    an alert counts unless its `status` is "resolved" (open and acknowledged ones do; without a status,
    while `resolved_at` is empty); its title is str(alert), its time `opened_at` (else `created_at`).
    """
    try:
        alert_model = apps.get_model("reports", "Alert")
    except LookupError:
        return []
    fields = {f.name for f in alert_model._meta.get_fields()}
    alerts = alert_model.objects.all()
    if "status" in fields:
        alerts = alerts.exclude(status="resolved")
    elif "resolved_at" in fields:
        alerts = alerts.filter(resolved_at__isnull=True)
    else:
        raise FieldDoesNotExist("reports.Alert has neither `status` nor `resolved_at`: which are open?")
    opened = next((name for name in ("opened_at", "created_at") if name in fields), None)
    alerts = alerts.order_by(f"-{opened}", "-pk") if opened else alerts.order_by("-pk")
    found = []
    for alert in alerts[:limit]:
        try:
            url = absolute_url(reverse("admin:reports_alert_change", args=[alert.pk]))
        except NoReverseMatch:
            url = ""
        found.append(
            OpenAlert(
                title=str(alert),
                status=alert.get_status_display() if hasattr(alert, "get_status_display") else "",
                opened_at=getattr(alert, opened) if opened else None,
                url=url,
            )
        )
    return found


def statement_figures(limit: int = MAX_MISSING_LISTED) -> StatementFigures:
    """Completed but not on the statement (count, amount, the oldest few), and the open reconciliation
    exceptions by kind, each with its admin link."""
    missing = statement_selectors.payments_missing_from_statement()
    found = missing.aggregate(count=Count("pk"), amount=Sum(Coalesce("paid_amount", "amount")))
    listed = [
        MissingPayment(
            reference=payment.order.reference,
            phone=payment.masked_phone,
            amount=payment.paid_amount if payment.paid_amount is not None else payment.amount,
            completed_at=payment.completed_at,
            url=absolute_url(reverse("admin:payments_payment_change", args=[payment.pk])),
        )
        for payment in missing.select_related("order").order_by("completed_at", "pk")[:limit]
    ]
    exceptions = reverse("admin:statements_reconciliationitem_changelist")
    labels = dict(ItemKind.choices)
    open_by_kind = [
        ExceptionCount(
            kind=kind,
            label=labels.get(kind, kind),
            count=count,
            url=absolute_url(f"{exceptions}?{urlencode({'kind__exact': kind, 'status': 'open'})}"),
        )
        for kind, count in statement_selectors.open_items_by_kind().items()
        if count
    ]
    return StatementFigures(
        missing_count=found["count"],
        missing_amount=found["amount"] or Decimal("0.00"),
        missing=listed,
        open_by_kind=open_by_kind,
    )


def report_figures(
    period: Period,
    filters: selectors.Filters = selectors.NO_FILTERS,
    *,
    previous_period: Period | None = None,
) -> ReportFigures:
    previous_period = previous_period or comparison_period(period)
    current = selectors.summary(period, filters)
    previous = selectors.summary(previous_period, filters, detail=False)
    attention = [replace(item, url=absolute_url(item.url)) for item in attention_items(_EveryPermission())]
    return ReportFigures(
        period=period,
        previous_period=previous_period,
        summary=current,
        previous=previous,
        kpis=kpis(current, previous),
        refunds_paid_count=selectors.refunds_paid_out(period, filters).count(),
        attention=attention,
        alerts=open_alerts_for_report(),
        generated_at=timezone.now(),
        statement=statement_figures(),
    )


def file_stem(period: Period) -> str:
    if period.first == period.last:
        return f"payments-{period.first:%Y-%m-%d}"
    return f"payments-{period.first:%Y-%m-%d}-to-{period.last:%Y-%m-%d}"


def subject(figures: ReportFigures, title: str = "") -> str:
    summary = figures.summary
    lead = title or "Payments report"
    return (
        f"{lead} · {figures.period.label}: KES {summary.collected:,.2f} collected, "
        f"attempt success {percent(summary.attempt_success)}"
    )


def render_report(
    figures: ReportFigures,
    *,
    chart_src: str,
    files: list[ReportFileInfo] = (),
    title: str = "",
    for_email: bool = True,
) -> tuple[str, str]:
    """(html, text). `chart_src` is "cid:..." in an email, a data: URI in a downloaded page."""
    context = {
        "figures": figures,
        "summary": figures.summary,
        "title": title or "Payments report",
        "chart_src": chart_src,
        "files": list(files),
        "for_email": for_email,
        "timezone": str(NAIROBI),
        "dashboard_url": absolute_url(
            f"{reverse('admin:index')}?from={figures.period.first:%Y-%m-%d}&to={figures.period.last:%Y-%m-%d}"
        ),
        "generated_at": timezone.localtime(figures.generated_at, NAIROBI),
    }
    html = render_to_string("reports/email/report.html", context)
    text = render_to_string("reports/email/report.txt", context)
    return html, text


def build_report_email(
    figures: ReportFigures,
    *,
    to: list[str],
    chart_png: bytes,
    attachments: list[tuple[ReportFileInfo, bytes, str]],
    stored: list[ReportFileInfo] = (),
    title: str = "",
) -> EmailMultiAlternatives:
    """The email: text part, HTML part with the chart inline (Content-ID), and the files small enough
    to attach; `stored` ones are listed with their download link instead."""
    message = EmailMultiAlternatives(
        subject=subject(figures, title),
        from_email=settings.NOTIFICATIONS_FROM_EMAIL,
        to=to,
    )
    # MIMEImage parts are deprecated in Django 6 (RemovedInDjango2028Warning); Anymail's helper makes
    # an inline MIMEPart with a Content-ID that every Anymail ESP and Django's SMTP/file backends send.
    content_id = attach_inline_image(
        message, chart_png, filename="chart.png", subtype="png", idstring="chart"
    )
    files = [info for info, _content, _type in attachments] + list(stored)
    html, text = render_report(figures, chart_src=f"cid:{content_id}", files=files, title=title)
    message.body = text
    message.attach_alternative(html, "text/html")
    for info, content, content_type in attachments:
        message.attach(info.name, content, content_type)
    return message


# --- the XLSX summary sheet -------------------------------------------------------------------------------
def xlsx_summary_sheet(figures: ReportFigures):
    """Draws the workbook's first sheet: the same figures as the email, typed (money and rates as
    numbers), each with its formula."""

    def draw(workbook, formats):
        sheet = workbook.add_worksheet("Summary")
        sheet.set_column(0, 0, 30)
        sheet.set_column(1, 3, 16)
        sheet.set_column(4, 4, 90, formats["wrap"])
        summary, previous = figures.summary, figures.previous
        row = 0
        sheet.write(row, 0, f"Payments report {figures.period.label}", formats["title"])
        row += 1
        sheet.write(row, 0, "Period (Africa/Nairobi, inclusive)")
        sheet.write_datetime(row, 1, _midnight(figures.period.first), formats["date"])
        sheet.write_datetime(row, 2, _midnight(figures.period.last), formats["date"])
        row += 1
        sheet.write(row, 0, "Compared with")
        sheet.write_datetime(row, 1, _midnight(figures.previous_period.first), formats["date"])
        sheet.write_datetime(row, 2, _midnight(figures.previous_period.last), formats["date"])
        row += 1
        sheet.write(row, 0, "Generated (Africa/Nairobi)")
        sheet.write_datetime(
            row,
            1,
            timezone.localtime(figures.generated_at, NAIROBI).replace(tzinfo=None),
            formats["datetime"],
        )
        row += 2
        sheet.write_row(row, 0, ["Figure", "This period", "Previous period", "Change", "How it is computed"],
                        formats["header"])  # fmt: skip
        rows = [
            ("Collected (KES)", summary.collected, previous.collected, "money", "collected"),
            ("Refunded (KES)", summary.refunded, previous.refunded, "money", "refunded"),
            ("Net (KES)", summary.net, previous.net, "money", "net"),
            ("Attempts", summary.attempts_total, previous.attempts_total, None, None),
            ("Completed attempts", summary.attempts_completed, previous.attempts_completed, None, None),
            ("Failed attempts", summary.attempts_failed, previous.attempts_failed, None, None),
            ("In flight", summary.attempts_in_flight, previous.attempts_in_flight, None, "in_flight"),
            ("Under review", summary.attempts_under_review, previous.attempts_under_review, None, None),
            ("Paid orders", summary.orders_paid, previous.orders_paid, None, "paid_orders"),
            *[
                (RATE_TITLES[key], getattr(summary, key), getattr(previous, key), "percent", key)
                for key in RATES
            ],
            ("Refunds in flight (KES)", summary.refunds_in_flight, None, "money", "refunds_in_flight"),
            ("Cash awaiting collection (KES)", summary.cod_awaiting, None, "money", "cod_awaiting"),
            ("Time to result p50 (s)", summary.time_to_result_p50, None, None, "time_to_result"),
            ("Time to result p90 (s)", summary.time_to_result_p90, None, None, "time_to_result"),
        ]
        changes = {kpi.key: kpi.change for kpi in figures.kpis}  # the dashboard's cards, keyed like FORMULAS
        for title, now, before, kind, formula in rows:
            row += 1
            cell_format = formats.get(kind) if kind else None
            sheet.write(row, 0, title)
            _number(sheet, row, 1, now, cell_format)
            _number(sheet, row, 2, before, cell_format)
            sheet.write(row, 3, changes.get(formula, ""))
            sheet.write(row, 4, selectors.FORMULAS[formula] if formula else "")
        row += 2
        sheet.write(row, 0, "Settled by", formats["bold"])
        sheet.write(row, 4, selectors.FORMULAS["settled_by"])
        for choice, count in summary.settled_by.items():
            row += 1
            sheet.write(row, 0, choice)
            sheet.write_number(row, 1, count)
        row += 2
        sheet.write_row(row, 0, ["Failures by reason", "Count", "Result code", "Class"], formats["header"])
        for failure in summary.failures:
            row += 1
            sheet.write_row(
                row, 0, [failure.reason, failure.count, failure.result_code, failure.failure_class]
            )
        row += 2
        sheet.write_row(row, 0, ["Day", "Attempts", "Completed", "Failed", "Collected (KES)",
                                 "Refunded (KES)", "Attempt success"], formats["header"])  # fmt: skip
        for day in summary.daily:
            row += 1
            sheet.write_datetime(row, 0, _midnight(day.date), formats["date"])
            sheet.write_row(row, 1, [day.attempts, day.completed, day.failed])
            sheet.write_number(row, 4, float(day.collected), formats["money"])
            sheet.write_number(row, 5, float(day.refunded), formats["money"])
            _number(sheet, row, 6, day.attempt_success, formats["percent"])
        row += 2
        sheet.write(row, 0, "The Payments sheet", formats["bold"])
        sheet.write(
            row,
            4,
            "One row per payment created in the period, plus payments created earlier whose money came in "
            "during it. Rows with 'Counted in attempts' TRUE are the attempts above; the sum of 'Paid' over "
            "rows with 'Counted in collected' TRUE is Collected. Times are Africa/Nairobi; phones masked.",
        )

    return draw


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min)


def _number(sheet, row: int, col: int, value, cell_format) -> None:
    if value is None:
        sheet.write_blank(row, col, None, cell_format)
    elif isinstance(value, Decimal):
        sheet.write_number(row, col, float(value), cell_format)
    else:
        sheet.write_number(row, col, value, cell_format)
