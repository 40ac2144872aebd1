"""Downloading the report of a chosen period from the dashboard: staff with the figures permission only,
GET only, nothing changes; the files agree with reports.selectors like the emailed ones."""

import csv
import datetime as dt
import io
import subprocess
import sys
from decimal import Decimal

import pandas as pd
import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from reports import selectors
from reports.periods import Period
from tests.admin.test_no_change_on_get import snapshot
from tests.reports import dataset

NOVEMBER_10_11 = {"from": "2026-11-10", "to": "2026-11-11"}
NOVEMBER_10_11_PERIOD = Period(dt.date(2026, 11, 10), dt.date(2026, 11, 11))
URL = "/reports/download/"


@pytest.fixture
def history(api_user):
    return dataset.build(api_user)


@pytest.fixture
def finance_client(client, django_user_model):
    user = django_user_model.objects.create_user("finance", "finance@example.com", "x", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename="view_payment"))
    client.force_login(user)
    return client


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.mark.django_db
def test_the_url_is_the_one_the_dashboard_links_to(admin_client):
    assert reverse("reports:download") == URL
    page = admin_client.get(
        reverse("admin:index"), {"from": "2026-11-10", "to": "2026-11-11"}
    ).content.decode()
    for file_format in ("html", "csv", "xlsx"):
        assert f"{URL}?from=2026-11-10&amp;to=2026-11-11&amp;format={file_format}" in page


@pytest.mark.django_db
def test_the_csv_download_streams_the_same_rows_as_the_email(history, finance_client):
    response = finance_client.get(URL, {**NOVEMBER_10_11, "format": "csv"})

    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="payments-2026-11-10-to-2026-11-11.csv"' in response["Content-Disposition"]
    assert "no-store" in response["Cache-Control"] or "no-cache" in response["Cache-Control"]
    rows = list(csv.DictReader(io.StringIO(body(response).decode("utf-8-sig"))))
    figures = selectors.summary(NOVEMBER_10_11_PERIOD)
    assert sum(row["Counted in attempts"] == "yes" for row in rows) == figures.attempts_total
    paid = sum(Decimal(row["Paid (KES)"]) for row in rows if row["Counted in collected"] == "yes")
    assert paid == figures.collected


@pytest.mark.django_db
def test_the_xlsx_and_html_downloads(history, finance_client):
    xlsx = finance_client.get(URL, {**NOVEMBER_10_11, "format": "xlsx"})
    html = finance_client.get(URL, {**NOVEMBER_10_11, "format": "html"})

    assert xlsx.status_code == 200
    sheets = pd.read_excel(io.BytesIO(body(xlsx)), sheet_name=None, engine="openpyxl")
    assert list(sheets) == ["Summary", "Payments"] and len(sheets["Payments"]) == 10
    assert html.status_code == 200 and html["Content-Type"] == "text/html; charset=utf-8"
    page = html.content.decode()
    assert "data:image/png;base64," in page and "cid:" not in page  # the chart travels inside the page
    assert "500.00" in page and selectors.FORMULAS["order_conversion"] in page


@pytest.mark.django_db
def test_downloads_are_for_signed_in_staff_who_may_view_payments(history, client, django_user_model):
    signed_out = client.get(URL, {**NOVEMBER_10_11, "format": "csv"})
    assert signed_out.status_code == 302 and signed_out["Location"].startswith(reverse("admin:login"))

    clerk = django_user_model.objects.create_user("clerk", "clerk@example.com", "x", is_staff=True)
    client.force_login(clerk)  # staff, without payments.view_payment
    assert client.get(URL, {**NOVEMBER_10_11, "format": "csv"}).status_code == 403

    customer = django_user_model.objects.create_user("customer", "c@example.com", "x")
    customer.user_permissions.add(*Permission.objects.filter(codename="view_payment"))
    client.force_login(customer)  # the permission, but not staff
    assert client.get(URL, {**NOVEMBER_10_11, "format": "csv"}).status_code == 403


@pytest.mark.django_db
def test_downloads_answer_get_only_change_nothing_and_refuse_bad_input(history, finance_client):
    before = snapshot()
    for file_format in ("html", "csv", "xlsx"):
        body(finance_client.get(URL, {**NOVEMBER_10_11, "format": file_format}))
        assert finance_client.post(URL, {**NOVEMBER_10_11, "format": file_format}).status_code == 405
    assert snapshot() == before

    assert finance_client.get(URL, {**NOVEMBER_10_11, "format": "pdf"}).status_code == 400
    reversed_dates = finance_client.get(URL, {"from": "2026-11-11", "to": "2026-11-10", "format": "csv"})
    assert reversed_dates.status_code == 400 and b"ends before it starts" in reversed_dates.content
    assert finance_client.get(URL, {"from": "yesterday", "to": "2026-11-10"}).status_code == 400


@pytest.mark.django_db
def test_a_stored_file_is_staff_only_and_missing_ones_are_404(finance_client):
    assert finance_client.get(reverse("reports:file-download", args=[999])).status_code == 404


def test_email_file_path_writes_every_email_to_that_folder(tmp_path):
    """EMAIL_FILE_PATH wins over EMAIL_ESP (here a real ESP with its key): nothing leaves, a file is written."""
    folder = tmp_path / "mail"
    code = (
        "import django; django.setup(); from django.core.mail import EmailMessage; "
        "EmailMessage('Report', 'Hello', 'bo@example.com', ['cfo@example.com']).send()"
    )
    env = {"EMAIL_FILE_PATH": str(folder), "EMAIL_ESP": "postmark", "ANYMAIL_API_KEY": "k",
           "DJANGO_SETTINGS_MODULE": "backoffice.settings", "PATH": "/usr/bin:/bin"}  # fmt: skip
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=_root(), timeout=60)

    (written,) = folder.iterdir()
    text = written.read_text()
    assert "Subject: Report" in text and "To: cfo@example.com" in text and "Hello" in text


def _root():
    from django.conf import settings

    return str(settings.BASE_DIR)
