"""Exporting the payments, refunds, orders and notifications lists from the admin: the file holds the rows the
filtered list shows, in its order; contacts are masked unless one may see them; every export is audited;
only staff with exports.export_lists (who may see the list) can export."""

import datetime as dt
import io

import openpyxl
import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from audit.models import AuditAction, AuditEntry
from exports import services
from exports.exceptions import ExportError, ExportNotAllowed
from exports.models import Export, ExportStatus
from orders.models import OrderStatus
from payments.models import Payment, RefundStatus
from tests.admin.test_no_change_on_get import snapshot
from tests.exports import support
from tests.exports.support import OTHER_PHONE, PHONE, VIEW_LISTS

# Per list: a filter and a search, and how to read a row's identity in the list page and in the file.
CASES = {
    "payments": ("status__exact=failed&q=" + PHONE, lambda obj: str(obj.pk), 0),
    "refunds": ("status__exact=succeeded&q={reference}", lambda obj: str(obj.pk), 0),
    "orders": ("status__exact=CONFIRMED&q=Amina", lambda obj: obj.reference, 0),
    "notifications": ("channel__exact=sms&q=" + PHONE, lambda obj: str(obj.pk), 0),
}


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


@pytest.fixture
def world(api_user):
    """Rows of every list, some matching each list's filter and search, some not."""
    amina = support.order(api_user, status=OrderStatus.CONFIRMED)
    amina_again = support.order(api_user, status=OrderStatus.CONFIRMED)
    support.order(api_user, status=OrderStatus.PENDING)  # not confirmed: filtered out
    baraka = support.order(
        api_user,
        name="Baraka Mwangi",
        phone=OTHER_PHONE,
        email="baraka@example.com",
        status=OrderStatus.CONFIRMED,
    )
    failed = [support.payment(amina), support.payment(amina_again)]
    support.payment(baraka, phone=OTHER_PHONE)  # failed, another phone
    paid = support.payment(amina, status="refunded", refunded="450.00")
    paid_too = support.payment(amina_again, status="completed")
    other_paid = support.payment(baraka, status="refunded", phone=OTHER_PHONE, refunded="450.00")
    refunded = support.refund(paid)
    support.refund(paid_too, status=RefundStatus.REQUESTED)
    support.refund(other_paid)
    sms = [support.notification(amina), support.notification(amina_again)]
    support.notification(amina, channel="email", recipient="amina@example.com")
    support.notification(baraka, recipient=OTHER_PHONE)
    return {
        "payments": failed,
        "refunds": [refunded],
        "orders": [amina, amina_again],
        "notifications": sms,
        "reference": amina.reference,
    }


@pytest.fixture
def exporter(client, django_user_model):
    user = support.staff(django_user_model, "exporter", "export_lists", *VIEW_LISTS)
    client.force_login(user)
    client.user = user
    return client


def _query(list_name: str, world) -> str:
    return CASES[list_name][0].format(reference=world["reference"])


def _list_page_ids(client, list_name: str, query: str) -> tuple[list[str], int]:
    """The identities of the rows the list page shows for the query, in its order, and its count."""
    page = client.get(f"{support.changelist_url(list_name)}?{query}")
    assert page.status_code == 200
    changelist = page.context["cl"]
    identity = CASES[list_name][1]
    return [identity(obj) for obj in changelist.result_list], changelist.result_count


@pytest.mark.django_db
@pytest.mark.parametrize("list_name", list(CASES))
def test_the_csv_has_the_rows_of_the_filtered_and_searched_list_in_its_order(list_name, world, exporter):
    query = _query(list_name, world)
    shown, count = _list_page_ids(exporter, list_name, query)

    response = support.post_export(exporter, list_name, query, "csv")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response["Content-Disposition"]
    rows = support.csv_rows(response)
    exported = [row[CASES[list_name][2]] for row in rows[1:]]
    expected = [CASES[list_name][1](obj) for obj in world[list_name]]
    assert exported == shown
    assert len(exported) == count == len(expected)
    assert sorted(exported) == sorted(expected)


@pytest.mark.django_db
@pytest.mark.parametrize("list_name", list(CASES))
def test_the_xlsx_opens_and_has_the_rows_of_the_filtered_list(list_name, world, exporter):
    query = _query(list_name, world)
    shown, count = _list_page_ids(exporter, list_name, query)

    response = support.post_export(exporter, list_name, query, "xlsx")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    workbook = openpyxl.load_workbook(io.BytesIO(support.body(response)))
    sheet = workbook.worksheets[0]
    assert sheet.title == list_name.capitalize()
    rows = list(sheet.iter_rows(values_only=True))
    exported = [str(row[CASES[list_name][2]]) for row in rows[1:]]
    assert exported == shown and len(exported) == count


@pytest.mark.django_db
def test_columns_are_typed_money_numbers_nairobi_times_status_labels(world, exporter):
    failed = world["payments"][0]
    Payment.objects.filter(pk=failed.pk).update(created_at=dt.datetime(2026, 11, 10, 5, 0, tzinfo=dt.UTC))
    query = "q=" + PHONE + "&status__exact=failed"

    csv_rows = support.csv_rows(support.post_export(exporter, "payments", query, "csv"))
    header, rows = csv_rows[0], {row[0]: row for row in csv_rows[1:]}
    row = dict(zip(header, rows[str(failed.pk)], strict=True))
    assert row["Status"] == "Failed" and row["Method"] == "M-Pesa" and row["Failure class"] == "Customer"
    assert row["Amount (KES)"] == "450.00"
    assert row["Created (Nairobi)"] == "2026-11-10 08:00:00"  # 05:00 UTC is 08:00 in Nairobi

    workbook = openpyxl.load_workbook(
        io.BytesIO(support.body(support.post_export(exporter, "payments", query, "xlsx")))
    )
    sheet_rows = list(workbook.worksheets[0].iter_rows(values_only=True))
    cells = dict(zip(sheet_rows[0], next(r for r in sheet_rows[1:] if r[0] == failed.pk), strict=True))
    assert cells["Amount (KES)"] == 450 and isinstance(cells["Amount (KES)"], int | float)
    assert cells["Created (Nairobi)"] == dt.datetime(2026, 11, 10, 8, 0)
    assert cells["Status"] == "Failed"


@pytest.mark.django_db
def test_phones_and_emails_are_masked_without_the_full_contacts_permission(world, exporter):
    payments = support.csv_rows(support.post_export(exporter, "payments", "q=" + PHONE))
    orders = support.csv_rows(support.post_export(exporter, "orders", "q=Amina"))
    notifications = support.csv_rows(support.post_export(exporter, "notifications", ""))

    phone_column = payments[0].index("Phone")
    assert {row[phone_column] for row in payments[1:]} == {"2547*****001"}
    header = orders[0]
    assert {row[header.index("Contact phone")] for row in orders[1:]} == {"2547*****001"}
    assert {row[header.index("Contact email")] for row in orders[1:]} == {"a****@example.com"}
    recipients = {row[notifications[0].index("Recipient")] for row in notifications[1:]}
    assert recipients == {"2547*****001", "2547*****002", "a****@example.com"}
    everything = b"".join(
        support.body(support.post_export(exporter, name, "")) for name in ("payments", "refunds", "orders")
    )
    assert PHONE.encode() not in everything and b"amina@example.com" not in everything
    assert Export.objects.filter(full_phones=True).count() == 0


@pytest.mark.django_db
def test_phones_and_emails_are_in_full_with_the_full_contacts_permission(world, exporter):
    exporter.user.user_permissions.add(Permission.objects.get(codename="view_full_phone"))

    payments = support.csv_rows(support.post_export(exporter, "payments", "q=" + PHONE))
    orders = support.csv_rows(support.post_export(exporter, "orders", "q=Amina"))

    assert {row[payments[0].index("Phone")] for row in payments[1:]} == {PHONE}
    assert {row[orders[0].index("Contact email")] for row in orders[1:]} == {"amina@example.com"}
    assert set(Export.objects.values_list("full_phones", flat=True)) == {True}


@pytest.mark.django_db
def test_every_export_is_audited_with_its_list_filters_and_row_count(world, exporter):
    query = "status__exact=failed&q=" + PHONE

    support.post_export(exporter, "payments", query, "xlsx")

    export = Export.objects.get()
    assert (
        export.status == ExportStatus.READY and export.row_count == 2 and export.requested_by == exporter.user
    )
    created = AuditEntry.objects.get(action=AuditAction.EXPORT_CREATED)
    assert created.actor == exporter.user and created.object_id == str(export.pk)
    assert created.data == {
        "list": "payments.payment",
        "filters": {"status__exact": "failed", "q": PHONE},
        "rows": 2,
        "format": "xlsx",
        "full_phones": False,
    }
    # The file the dialog answered with counts as a download.
    downloaded = AuditEntry.objects.get(action=AuditAction.EXPORT_DOWNLOADED)
    assert downloaded.actor == exporter.user and downloaded.object_id == str(export.pk)


@pytest.mark.django_db
def test_the_page_flags_of_the_list_are_not_filters(world, exporter):
    response = support.post_export(exporter, "payments", "status__exact=failed&p=7&e=1")

    assert response.status_code == 200
    assert Export.objects.get().query == "status__exact=failed"
    assert AuditEntry.objects.get(action=AuditAction.EXPORT_CREATED).data["filters"] == {
        "status__exact": "failed"
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    [
        "no_such_field=1",  # an unknown parameter: the list refuses it too
        "order__owner__password__startswith=pbkdf2",  # a lookup the list does not allow
        "created_at__gte=not-a-date",
        "q=bad%00search",
    ],
)
def test_filters_the_list_would_refuse_are_refused(world, exporter, query):
    response = support.post_export(exporter, "payments", query)

    assert response.status_code == 302 and response["Location"] == support.changelist_url("payments")
    assert not Export.objects.exists()
    assert not AuditEntry.objects.filter(action=AuditAction.EXPORT_CREATED).exists()


@pytest.mark.django_db
def test_without_the_export_permission_nothing_is_exported_even_by_a_direct_post(
    world, client, django_user_model
):
    viewer = support.staff(django_user_model, "viewer", *VIEW_LISTS)
    client.force_login(viewer)
    before = snapshot()

    for list_name in support.LISTS:
        assert client.get(support.export_url(list_name)).status_code == 403
        response = support.post_export(client, list_name, "")
        assert response.status_code == 403
        assert b"Payment ID" not in support.body(response)
        assert support.htmx_post_export(client, list_name, "").status_code == 403

    assert snapshot() == before
    with pytest.raises(ExportNotAllowed):
        services.export_create(actor=viewer, list_label="payments.payment", query="", fmt="csv")


@pytest.mark.django_db
def test_the_export_permission_does_not_open_a_list_one_may_not_see(world, client, django_user_model):
    user = support.staff(django_user_model, "exports-only", "export_lists", "view_order")
    client.force_login(user)

    assert support.post_export(client, "payments", "").status_code == 403
    assert support.post_export(client, "orders", "").status_code == 200
    with pytest.raises(ExportNotAllowed):
        services.export_create(actor=user, list_label="payments.payment", query="", fmt="csv")
    with pytest.raises(ExportError):
        services.export_create(actor=user, list_label="auth.user", query="", fmt="csv")
    assert Export.objects.count() == 1


@pytest.mark.django_db
def test_the_export_button_is_offered_only_with_the_permission(world, exporter, django_user_model):
    list_page = exporter.get(support.changelist_url("payments")).content.decode()
    assert support.export_url("payments") in list_page

    viewer = support.staff(django_user_model, "viewer", *VIEW_LISTS)
    client = Client()
    client.force_login(viewer)
    assert (
        support.export_url("payments") not in client.get(support.changelist_url("payments")).content.decode()
    )


@pytest.mark.django_db
def test_the_dialog_carries_the_query_of_the_list_page_it_was_opened_on_and_changes_nothing(world, exporter):
    query = "status__exact=failed&q=" + PHONE
    page = f"http://testserver{support.changelist_url('payments')}?{query}"
    before = snapshot()

    dialog = exporter.get(support.export_url("payments"), HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL=page)
    from_referer = exporter.get(support.export_url("payments"), HTTP_REFERER=page)
    elsewhere = exporter.get(
        support.export_url("payments"),
        HTTP_REFERER=f"http://testserver{support.changelist_url('orders')}?q=x",
    )

    assert snapshot() == before
    for response in (dialog, from_referer):
        html = response.content.decode()
        assert response.status_code == 200 and 'id="dialog"' in html
        assert 'method="post"' in html and "csrfmiddlewaretoken" in html and "hx-post" not in html
        assert response.context["form"].initial["query"] == query
        assert "2 rows with the list's current filters" in " ".join(html.split())
    assert elsewhere.context["form"].initial["query"] == ""


@pytest.mark.django_db
def test_csv_injection_guard_and_xlsx_text_is_never_a_formula(api_user, exporter):
    hostile = support.order(api_user, name='=HYPERLINK("http://evil","x")', status=OrderStatus.CONFIRMED)
    support.payment(hostile, result_desc="+cmd|' /C calc'!A0")
    support.payment(hostile, result_desc="@SUM(1+1)")

    orders = support.csv_rows(support.post_export(exporter, "orders", ""))
    payments = support.csv_rows(support.post_export(exporter, "payments", ""))

    assert orders[1][orders[0].index("Contact name")] == '\'=HYPERLINK("http://evil","x")'
    descriptions = {row[payments[0].index("Result description")] for row in payments[1:]}
    assert descriptions == {"'+cmd|' /C calc'!A0", "'@SUM(1+1)"}

    workbook = openpyxl.load_workbook(
        io.BytesIO(support.body(support.post_export(exporter, "orders", "", "xlsx")))
    )
    sheet = workbook.worksheets[0]
    header = [cell.value for cell in sheet[1]]
    cell = sheet.cell(row=2, column=header.index("Contact name") + 1)
    assert cell.data_type == "s" and cell.value == '=HYPERLINK("http://evil","x")'


@pytest.mark.django_db
def test_an_order_row_names_its_latest_payment(api_user, exporter):
    placed = support.order(api_user)
    support.payment(placed)
    support.payment(placed, status="completed")

    rows = support.csv_rows(support.post_export(exporter, "orders", ""))

    assert rows[1][rows[0].index("Latest payment")] == "Completed"
