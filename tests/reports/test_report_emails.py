"""Report emails: what `send_report` sends, with figures that agree with reports.selectors to the cent, on
the hand-built history of tests/reports/dataset.py (10 and 11 November 2026, Nairobi days)."""

import csv
import datetime as dt
import io
from decimal import Decimal
from email import message_from_bytes

import openpyxl
import pandas as pd
import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from reports import selectors
from reports.models import ReportFile, ReportRun, RunStatus, RunTrigger
from reports.periods import Period
from reports.report_email import open_alerts_for_report
from reports.report_services import report_send
from tests.reports import dataset

NOVEMBER_10_11 = Period(dt.date(2026, 11, 10), dt.date(2026, 11, 11))
NOVEMBER_11 = Period(dt.date(2026, 11, 11), dt.date(2026, 11, 11), "day")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
def history(api_user):
    return dataset.build(api_user)


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def send(period=NOVEMBER_10_11, *, file_format="both", to=("finance@example.com",), frequency="daily"):
    return report_send(
        period=period, frequency=frequency, to=list(to), file_format=file_format, trigger=RunTrigger.COMMAND
    )


def attachments(message) -> dict[str, tuple[bytes, str]]:
    """{filename: (content bytes, mimetype)} of the regular attachments (not the inline chart)."""
    found = {}
    for attachment in message.attachments:
        if hasattr(attachment, "get_content_type"):  # the inline image (a MIMEPart)
            continue
        content = attachment.content
        found[attachment.filename] = (
            content.encode() if isinstance(content, str) else content,
            attachment.mimetype,
        )
    return found


def csv_rows(content: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(content.decode("utf-8-sig"))))


@pytest.mark.django_db
def test_the_email_has_an_html_summary_a_text_part_an_inline_chart_and_both_files(history, media):
    run = send()

    assert run.status == RunStatus.SENT, run.error
    (message,) = mail.outbox
    assert message.to == ["finance@example.com"]
    assert "10 – 11 Nov 2026" in message.subject and "KES 500.00 collected" in message.subject
    html = dict((mimetype, content) for content, mimetype in message.alternatives)["text/html"]
    assert "Collected (KES)" in html and "500.00" in html
    assert selectors.FORMULAS["technical_success"] in html  # rates with their formulas
    assert "Cancelled by the customer" in html and "M-Pesa busy" in html  # failures by reason
    assert "Refunds in flight (1)" in html
    assert "Collected (KES): 500.00" in message.body  # the plain-text part
    assert "Technical success 50.0%" in message.body

    raw = message.message().as_bytes()
    parsed = message_from_bytes(raw)
    images = [part for part in parsed.walk() if part.get_content_type() == "image/png"]
    assert len(images) == 1
    content_id = images[0]["Content-ID"].strip("<>")
    assert f'src="cid:{content_id}"' in html
    assert images[0].get_payload(decode=True).startswith(b"\x89PNG\r\n\x1a\n")
    assert set(attachments(message)) == {
        "payments-2026-11-10-to-2026-11-11.csv",
        "payments-2026-11-10-to-2026-11-11.xlsx",
    }
    assert [item["stored"] for item in run.attachments] == [False, False]


@pytest.mark.django_db
def test_the_csv_reconciles_with_the_summary_row_for_row(history, media):
    send(file_format="csv")
    figures = selectors.summary(NOVEMBER_10_11)

    ((name, (content, mimetype)),) = attachments(mail.outbox[0]).items()
    rows = csv_rows(content)
    assert mimetype == "text/csv"
    attempts = [row for row in rows if row["Counted in attempts"] == "yes"]
    collected = [row for row in rows if row["Counted in collected"] == "yes"]
    assert len(attempts) == figures.attempts_total == 7
    assert sum(Decimal(row["Paid (KES)"]) for row in collected) == figures.collected == Decimal("500.00")
    assert sum(row["Status"] == "failed" for row in attempts) == figures.attempts_failed
    # Every payment created in the period (COD too) plus A5, created the day before and paid in it.
    assert len(rows) == 10
    a5 = next(row for row in rows if row["Payment ID"] == str(history["A5"].pk))
    assert (a5["Created (Nairobi)"], a5["Completed (Nairobi)"]) == (
        "2026-11-09 23:59:59",
        "2026-11-10 00:00:10",
    )
    assert (a5["Counted in attempts"], a5["Counted in collected"]) == ("no", "yes")
    a1 = next(row for row in rows if row["Payment ID"] == str(history["A1"].pk))
    assert (a1["Result code"], a1["Reason"], a1["Failure class"]) == (
        "1032",
        "Cancelled by the customer",
        "customer",
    )
    a2 = next(row for row in rows if row["Payment ID"] == str(history["A2"].pk))
    assert (a2["Paid (KES)"], a2["Refunded (KES)"], a2["Settled by"]) == ("100.00", "100.00", "callback")
    assert a2["M-Pesa receipt"].startswith("SDS") and a2["Order reference"] == history["A2"].order.reference
    assert {row["Phone"] for row in rows} == {"2547*****149"}  # masked, never the number


@pytest.mark.django_db
def test_the_xlsx_opens_with_pandas_with_typed_columns_and_a_summary_sheet(history, media):
    send(file_format="xlsx")
    figures = selectors.summary(NOVEMBER_10_11)

    ((name, (content, mimetype)),) = attachments(mail.outbox[0]).items()
    assert mimetype == XLSX and name.endswith(".xlsx")
    sheets = pd.read_excel(io.BytesIO(content), sheet_name=None, engine="openpyxl")
    assert list(sheets) == ["Summary", "Payments"]
    payments = sheets["Payments"]
    assert pd.api.types.is_datetime64_any_dtype(payments["Created (Nairobi)"])
    assert pd.api.types.is_datetime64_any_dtype(payments["Completed (Nairobi)"])
    for column in ("Amount (KES)", "Paid (KES)", "Refunded (KES)"):
        assert pd.api.types.is_numeric_dtype(payments[column]), column
    assert payments["Counted in attempts"].dtype == bool
    assert int(payments["Counted in attempts"].sum()) == figures.attempts_total
    collected = payments.loc[payments["Counted in collected"], "Paid (KES)"].sum()
    assert Decimal(str(round(collected, 2))) == figures.collected
    assert payments["Created (Nairobi)"].min() == pd.Timestamp("2026-11-09 23:59:59")

    # Money cells are numbers shown with 2 decimals (openpyxl reads whole amounts back as int).
    cell = openpyxl.load_workbook(io.BytesIO(content), read_only=True)["Payments"]["F2"]
    assert (cell.value, cell.number_format) == (50, "#,##0.00")

    summary = sheets["Summary"]
    collected_row = summary[summary.iloc[:, 0] == "Collected (KES)"].iloc[0]
    assert collected_row.iloc[1] == 500.0
    assert selectors.FORMULAS["collected"] in set(summary.iloc[:, 4].dropna())


@pytest.mark.django_db
def test_an_attachment_over_the_limit_is_stored_and_linked_for_staff(
    history, media, settings, client, admin_user
):
    settings.REPORT_MAX_ATTACHMENT_BYTES = 1_000  # the CSV of 10 rows (~1.7 kB) is over it
    run = send(file_format="csv")

    assert run.status == RunStatus.SENT
    (message,) = mail.outbox
    assert attachments(message) == {}
    stored = ReportFile.objects.get(run=run)
    url = reverse("reports:file-download", args=[stored.pk])
    html = dict((mimetype, content) for content, mimetype in message.alternatives)["text/html"]
    assert f"{settings.SITE_BASE_URL}{url}" in html and "too large to attach" in html
    assert f"{settings.SITE_BASE_URL}{url}" in message.body
    assert run.attachments == [{"name": stored.name, "rows": 10, "bytes": stored.size, "stored": True}]

    assert client.get(url).status_code == 302  # signed out: to the login page
    client.force_login(admin_user)
    response = client.get(url)
    assert response.status_code == 200
    downloaded = b"".join(response.streaming_content)
    assert len(csv_rows(downloaded)) == 10 and len(downloaded) == stored.size
    assert client.post(url).status_code == 405  # GET only


@pytest.mark.django_db
def test_a_failing_send_is_recorded_with_its_error(history, media, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise ConnectionRefusedError("SMTP server refused the connection")

    monkeypatch.setattr("django.core.mail.EmailMessage.send", refuse)
    run = send()

    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "refused the connection" in run.error
    assert run.finished_at is not None and mail.outbox == []


@pytest.mark.django_db
def test_send_report_sends_the_previous_day_to_figures_staff_by_default(history, media, django_user_model):
    finance = django_user_model.objects.create_user("finance", "finance@example.com", "x", is_staff=True)
    finance.user_permissions.add(*_view_payment())
    django_user_model.objects.create_user("clerk", "clerk@example.com", "x", is_staff=True)  # no permission
    out = io.StringIO()

    call_command("send_report", "--frequency", "daily", "--date", "2026-11-12", stdout=out)

    (message,) = mail.outbox
    assert message.to == ["finance@example.com"]
    assert "Wed 11 Nov 2026" in message.subject
    assert "sent to 1 recipient" in out.getvalue()
    run = ReportRun.objects.get()
    assert (run.trigger, run.period_first, run.period_last) == (
        "command",
        dt.date(2026, 11, 11),
        dt.date(2026, 11, 11),
    )


@pytest.mark.django_db
def test_send_report_to_and_format_and_weekly_and_monthly_periods(history, media):
    call_command("send_report", "--frequency", "weekly", "--date", "2026-11-18", "--to", "a@example.com",
                 "b@example.com", "--format", "csv", stdout=io.StringIO())  # fmt: skip
    call_command("send_report", "--frequency", "monthly", "--date", "2026-12-01", "--to", "a@example.com",
                 "--format", "xlsx", stdout=io.StringIO())  # fmt: skip

    weekly, monthly = mail.outbox
    assert weekly.to == ["a@example.com", "b@example.com"]
    assert "9 – 15 Nov 2026" in weekly.subject  # Monday to Sunday
    assert list(attachments(weekly)) == ["payments-2026-11-09-to-2026-11-15.csv"]
    assert "1 – 30 Nov 2026" in monthly.subject
    assert list(attachments(monthly)) == ["payments-2026-11-01-to-2026-11-30.xlsx"]
    html = dict((mimetype, content) for content, mimetype in monthly.alternatives)["text/html"]
    assert "compared with 1 – 31 Oct 2026" in html  # the previous calendar month


@pytest.mark.django_db
def test_send_report_fails_loudly_without_recipients_or_with_a_bad_address(history, media):
    with pytest.raises(CommandError, match="Nobody to send it to"):
        call_command("send_report", "--frequency", "daily", stdout=io.StringIO())
    with pytest.raises(CommandError, match="Not an email address"):
        call_command("send_report", "--frequency", "daily", "--to", "not-an-address", stdout=io.StringIO())
    assert ReportRun.objects.get().status == RunStatus.FAILED


def _view_payment():
    from django.contrib.auth.models import Permission

    return Permission.objects.filter(codename="view_payment")


@pytest.mark.django_db
def test_open_and_acknowledged_alerts_are_in_the_email_resolved_ones_are_not(history, media, monkeypatch):
    from django.apps import apps

    try:
        alert_model, rule_model = apps.get_model("reports", "Alert"), apps.get_model("reports", "AlertRule")
    except LookupError:
        pytest.skip("the alerts part is not installed")
    rule = rule_model.objects.create(name="Test rule", kind="success_rate")
    at = timezone.now()
    for scope, status in (("a", "open"), ("b", "acknowledged"), ("c", "resolved")):
        alert_model.objects.create(rule=rule, scope=scope, status=status, title=f"Success rate low {scope}",
                                   opened_at=at, last_seen_at=at)  # fmt: skip

    send()

    message = mail.outbox[0]
    html = dict((mimetype, content) for content, mimetype in message.alternatives)["text/html"]
    assert "Success rate low a" in html and "(Open)" in html
    assert "Success rate low b" in html and "(Acknowledged)" in html
    assert "Success rate low c" not in html and "Success rate low c" not in message.body
    assert "/admin/reports/alert/" in html


def test_without_the_alerts_model_the_report_has_no_alerts(monkeypatch):
    from django.apps import apps

    real = apps.get_model

    def without_alerts(app_label, model_name=None, **kwargs):
        if (app_label, model_name) == ("reports", "Alert"):
            raise LookupError("No installed app with label 'reports' has model 'Alert'.")
        return real(app_label, model_name, **kwargs)

    monkeypatch.setattr(apps, "get_model", without_alerts)
    assert open_alerts_for_report() == []


@pytest.mark.django_db
def test_send_report_end_to_end_every_part_and_both_files_agree_with_the_summary(history, media):
    call_command("send_report", "--frequency", "weekly", "--date", "2026-11-16", "--to", "cfo@example.com",
                 stdout=io.StringIO())  # fmt: skip
    week = Period(dt.date(2026, 11, 9), dt.date(2026, 11, 15))
    figures = selectors.summary(week)

    (message,) = mail.outbox
    html = dict((mimetype, content) for content, mimetype in message.alternatives)["text/html"]
    assert f"KES {figures.collected:,.2f} collected" in message.subject
    assert "HEADLINE FIGURES" in message.body and "Headline figures" in html
    parsed = message_from_bytes(message.message().as_bytes())
    (image,) = [part for part in parsed.walk() if part.get_content_type() == "image/png"]
    assert f'src="cid:{image["Content-ID"].strip("<>")}"' in html
    files = attachments(message)
    rows = csv_rows(files["payments-2026-11-09-to-2026-11-15.csv"][0])
    sheet = pd.read_excel(
        io.BytesIO(files["payments-2026-11-09-to-2026-11-15.xlsx"][0]), sheet_name="Payments"
    )
    assert sum(row["Counted in attempts"] == "yes" for row in rows) == int(sheet["Counted in attempts"].sum())
    assert int(sheet["Counted in attempts"].sum()) == figures.attempts_total == 8  # A5 is in this week
    csv_paid = sum(Decimal(row["Paid (KES)"]) for row in rows if row["Counted in collected"] == "yes")
    xlsx_paid = sheet.loc[sheet["Counted in collected"], "Paid (KES)"].sum()
    assert csv_paid == Decimal(str(round(xlsx_paid, 2))) == figures.collected


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.django_db
def test_send_report_shows_progress_bars_in_a_terminal_and_none_in_a_pipe(history, media):
    terminal, pipe = Terminal(), io.StringIO()
    call_command("send_report", "--frequency", "daily", "--date", "2026-11-12", "--to", "a@example.com",
                 stdout=io.StringIO(), stderr=terminal)  # fmt: skip
    call_command("send_report", "--frequency", "daily", "--date", "2026-11-12", "--to", "a@example.com",
                 stdout=io.StringIO(), stderr=pipe)  # fmt: skip

    assert "payments-2026-11-11.csv: 100%" in terminal.getvalue()
    assert "payments-2026-11-11.xlsx: 100%" in terminal.getvalue() and "rows" in terminal.getvalue()
    assert "%" not in pipe.getvalue()


def test_a_short_period_is_charted_against_the_fortnight_before_it(api_user):

    from reports import selectors
    from reports.chart import chart_days
    from reports.periods import Period

    dataset.build(api_user)
    day = selectors.summary(Period(dt.date(2026, 11, 11), dt.date(2026, 11, 11)), fresh=True)
    month = selectors.summary(Period(dt.date(2026, 11, 1), dt.date(2026, 11, 30)), fresh=True)

    days, title = chart_days(day)
    assert [d.date for d in days][0] == dt.date(2026, 10, 29) and days[-1].date == dt.date(2026, 11, 11)
    assert [d.collected for d in days[-2:]] == [Decimal("150.00"), Decimal("350.00")]
    assert title.endswith("the 14 days to 11 Nov 2026")
    assert chart_days(month)[0] == month.daily
