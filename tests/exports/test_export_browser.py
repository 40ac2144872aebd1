"""Exporting from the admin in a real browser: the dialog opens from the filtered list, the file downloads
from its form, a large export is listed under Exports and downloads from its button."""

import csv
import io
from pathlib import Path

import pytest
from playwright.sync_api import expect

from exports.models import Export, ExportStatus
from orders.models import OrderStatus
from tests.exports import support
from tests.exports.support import OTHER_PHONE

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def payments(api_user, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    placed = support.order(api_user, status=OrderStatus.CONFIRMED)
    other = support.order(api_user, phone=OTHER_PHONE, status=OrderStatus.CONFIRMED)
    failed = [support.payment(placed), support.payment(placed), support.payment(other, phone=OTHER_PHONE)]
    support.payment(other, status="completed", phone=OTHER_PHONE)
    return failed


def _csv(download) -> list[list[str]]:
    return list(csv.reader(io.StringIO(Path(download.path()).read_text(encoding="utf-8-sig"))))


def test_the_file_of_the_filtered_list_downloads_from_the_dialog(live_server, payments, admin_login):
    page = admin_login()
    page.goto(f"{live_server.url}/admin/payments/payment/?status__exact=failed")
    page.get_by_role("link", name="Export").click()
    dialog = page.locator("#modal-content")
    expect(dialog).to_contain_text("3 rows with the list's current filters")

    with page.expect_download() as downloaded:
        dialog.get_by_role("button", name="Export").click()

    rows = _csv(downloaded.value)
    assert sorted(int(row[0]) for row in rows[1:]) == sorted(p.pk for p in payments)
    assert downloaded.value.suggested_filename.startswith("payments-")
    assert Export.objects.get().status == ExportStatus.READY


def test_a_large_export_is_listed_under_exports_and_downloads_from_there(
    live_server, payments, admin_login, settings
):
    settings.EXPORT_SYNC_MAX_ROWS = 1
    page = admin_login()
    page.goto(f"{live_server.url}/admin/payments/payment/?status__exact=failed")
    page.get_by_role("link", name="Export").click()
    page.locator("#modal-content").get_by_text("XLSX").click()
    page.locator("#modal-content").get_by_role("button", name="Export").click()

    expect(page.locator("body")).to_contain_text("Your export is being written")
    assert "status__exact=failed" in page.url
    export = Export.objects.get()
    assert export.status == ExportStatus.READY  # Q_SYNC: the task ran when the request committed

    page.goto(f"{live_server.url}/admin/exports/export/")
    with page.expect_download() as downloaded:
        page.get_by_role("button", name="Download").click()
    assert downloaded.value.suggested_filename.endswith(".xlsx")
