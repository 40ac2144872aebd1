"""The statement in the admin: the import page (its GET changes nothing, its POST imports and reconciles, a
file it cannot read stores nothing), who may import and resolve, the exceptions' dialogs (confirm on GET,
act on POST), and phone digits masked for those who may not see them."""

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from backoffice import roles
from payments.models import Payment, Refund
from statements.models import (
    ItemKind,
    ItemStatus,
    ReconciliationItem,
    ReconciliationRun,
    Resolution,
    StatementImport,
    StatementLine,
)
from tests.admin.test_no_change_on_get import snapshot
from tests.admin_support import post_action
from tests.payments.refunds_support import pay
from tests.statements.statement_files import customer_payment, statement_csv

pytestmark = pytest.mark.django_db

IMPORT_URL = "admin:statements_statementimport_import_statement"
PAYBILL_PHONE = "254712345678"


@pytest.fixture
def people(db, django_user_model):
    made = {}
    for role in roles.ROLES:
        user = django_user_model.objects.create_user(role.lower(), is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        made[role] = django_user_model.objects.get(pk=user.pk)
    return made


def browser(user, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


@pytest.fixture
def manager(people):
    return browser(people[roles.MANAGER])


@pytest.fixture
def paid(fake_daraja, place_order, django_capture_on_commit_callbacks):
    """A payment completed a minute ago with receipt SGR7PAID001."""
    with django_capture_on_commit_callbacks(execute=True):
        _order, payment = place_order()
        payment = pay(payment, receipt="SGR7PAID001")
    return payment


def _statement(paid: Payment, *extra: dict) -> bytes:
    at = timezone.localtime(paid.completed_at)
    lines = [customer_payment("SGR7PAID001", paid.amount, at=at, other_party="2547*****149 - JOHN DOE")]
    return statement_csv([*lines, *extra], period=(at - dt.timedelta(hours=1), at + dt.timedelta(hours=2)))


def _paybill_line(paid: Payment, *, receipt: str = "SGR7PAYBL01", amount: str = "750") -> dict:
    at = timezone.localtime(paid.completed_at) - dt.timedelta(minutes=3)
    return customer_payment(receipt, Decimal(amount), at=at, other_party=f"{PAYBILL_PHONE} - MARY WANJIKU")


def _upload(content: bytes, name: str = "statement.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="text/csv")


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def imported(manager, paid):
    """The statement imported through the page: the shop's payment, and a paybill payment we never saw."""
    response = manager.post(reverse(IMPORT_URL), {"file": _upload(_statement(paid, _paybill_line(paid)))})
    assert response.status_code == 302, response.content.decode()[:2000]
    return ReconciliationItem.objects.get(kind=ItemKind.UNRECORDED_LINE)


# --- the import page ----------------------------------------------------------------------------------
def test_the_import_page_shows_the_form_and_a_get_changes_nothing(manager, paid):
    before = snapshot()
    page = manager.get(reverse(IMPORT_URL), {"file": "statement.csv", "shortcode": "174379"})
    html = page.content.decode()
    assert page.status_code == 200
    assert 'enctype="multipart/form-data"' in html and 'method="post"' in html
    assert 'name="csrfmiddlewaretoken"' in html and 'name="file"' in html
    assert snapshot() == before


def test_the_changelist_offers_the_import_button_only_to_those_who_may_import(people):
    changelist = reverse("admin:statements_statementimport_changelist")
    assert reverse(IMPORT_URL) in browser(people[roles.MANAGER]).get(changelist).content.decode()
    for role in (roles.OPERATOR, roles.AUDITOR):
        page = browser(people[role]).get(changelist)
        assert page.status_code == 200
        assert reverse(IMPORT_URL) not in page.content.decode(), role
    assert browser(people[roles.VIEWER]).get(changelist).status_code == 403  # statements are not theirs


def test_posting_a_statement_imports_it_and_lands_on_the_run_with_its_counts(manager, paid):
    response = manager.post(reverse(IMPORT_URL), {"file": _upload(_statement(paid, _paybill_line(paid)))})

    statement_import = StatementImport.objects.get()
    run = ReconciliationRun.objects.get(statement_import=statement_import)
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:statements_reconciliationrun_change", args=[run.pk])
    assert (statement_import.lines_read, statement_import.lines_new, statement_import.lines_known) == (
        2,
        2,
        0,
    )
    assert statement_import.imported_by.username == "manager"
    assert any("2 lines read, 2 new, 0 already known" in text for text in _messages(response))
    assert StatementLine.objects.get(receipt="SGR7PAID001").payment_id == paid.pk

    page = manager.get(response["Location"]).content.decode()
    assert 'data-testid="run-totals"' in page and "KES 750.00" in page
    assert "Statement paid in = matched + received but not recorded" in page
    assert "Difference explained to the shilling" in page and "Off by" not in page
    exceptions = reverse("admin:statements_reconciliationitem_changelist")
    assert f"{exceptions}?kind__exact=unrecorded_line" in page


def test_the_same_statement_twice_stores_no_line_twice(manager, paid):
    content = _statement(paid, _paybill_line(paid))
    manager.post(reverse(IMPORT_URL), {"file": _upload(content)})
    response = manager.post(reverse(IMPORT_URL), {"file": _upload(content)})

    assert StatementLine.objects.count() == 2
    assert any("2 lines read, 0 new, 2 already known" in text for text in _messages(response))


def test_a_file_missing_a_column_shows_the_message_and_stores_nothing(manager, paid):
    at = timezone.localtime(paid.completed_at)
    content = statement_csv([customer_payment("SGR7PAID001", paid.amount, at=at)], omit=("paid_in",))
    before = snapshot()

    response = manager.post(reverse(IMPORT_URL), {"file": _upload(content)})

    assert response.status_code == 200
    assert "Paid In" in response.content.decode()
    assert snapshot() == before
    assert not StatementImport.objects.exists()


def test_a_file_that_is_not_a_statement_is_refused_by_the_form(manager):
    response = manager.post(reverse(IMPORT_URL), {"file": _upload(b"hello", name="notes.txt")})
    assert response.status_code == 200
    assert "Choose a .csv or .xlsx file" in response.content.decode()
    assert not StatementImport.objects.exists()


def test_the_import_post_needs_the_csrf_token(people, paid):
    client = browser(people[roles.MANAGER], csrf=True)
    response = client.post(reverse(IMPORT_URL), {"file": _upload(_statement(paid))})
    assert response.status_code == 403
    assert not StatementImport.objects.exists()


@pytest.mark.parametrize("role", [roles.VIEWER, roles.OPERATOR, roles.AUDITOR])
def test_only_a_role_that_may_import_reaches_the_import_page(people, paid, role):
    client = browser(people[role])
    assert client.get(reverse(IMPORT_URL)).status_code == 403
    assert client.post(reverse(IMPORT_URL), {"file": _upload(_statement(paid))}).status_code == 403
    assert not StatementImport.objects.exists()


def test_imports_are_never_added_changed_or_deleted_through_the_admin_forms(manager, imported):
    statement_import = StatementImport.objects.get()
    assert manager.get(reverse("admin:statements_statementimport_add")).status_code == 403
    page = manager.get(reverse("admin:statements_statementimport_change", args=[statement_import.pk]))
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    delete = reverse("admin:statements_statementimport_delete", args=[statement_import.pk])
    assert manager.post(delete, {"post": "yes"}).status_code == 403
    assert StatementImport.objects.filter(pk=statement_import.pk).exists()


# --- exceptions: list and dialogs ------------------------------------------------------------------------
def test_the_exceptions_list_shows_open_ones_unless_asked(manager, imported):
    changelist = reverse("admin:statements_reconciliationitem_changelist")
    ReconciliationItem.objects.filter(pk=imported.pk).update(status=ItemStatus.RESOLVED)
    assert "SGR7PAYBL01" not in manager.get(changelist).content.decode()
    assert "SGR7PAYBL01" in manager.get(changelist, {"status": "all"}).content.decode()


def test_mark_as_expected_confirms_on_get_and_acts_on_post(manager, imported):
    url = reverse("admin:statements_reconciliationitem_mark_expected", args=[imported.pk])
    before = snapshot()
    dialog = manager.get(url, {"note": "crafted", "_form_submitted": "on"})
    assert dialog.status_code == 200 and 'name="note"' in dialog.content.decode()
    assert snapshot() == before

    response, texts = post_action(manager, url, note="Paybill payment at the counter")

    assert response["HX-Redirect"] == reverse(
        "admin:statements_reconciliationitem_change", args=[imported.pk]
    )
    item = ReconciliationItem.objects.get(pk=imported.pk)
    assert (item.status, item.resolution) == (ItemStatus.RESOLVED, Resolution.EXPECTED)
    assert item.note == "Paybill payment at the counter"
    assert "Exception marked as expected." in texts


def test_mark_as_expected_needs_a_note(manager, imported):
    url = reverse("admin:statements_reconciliationitem_mark_expected", args=[imported.pk])
    response, _texts = post_action(manager, url, note="")
    assert response.status_code == 200 and "HX-Redirect" not in response
    assert ReconciliationItem.objects.get(pk=imported.pk).status == ItemStatus.OPEN


def test_attach_is_prefilled_with_the_suggestion_and_attaches_on_post(
    manager, imported, place_order, fake_daraja
):
    _order, other = place_order(phone=PAYBILL_PHONE)
    Payment.objects.filter(pk=other.pk).update(amount=Decimal("750"))
    ReconciliationItem.objects.filter(pk=imported.pk).update(suggested_payment=other)
    url = reverse("admin:statements_reconciliationitem_attach_payment", args=[imported.pk])

    dialog = manager.get(url).content.decode()
    assert f'value="{other.pk}"' in dialog and "Suggested: #" in dialog

    response, texts = post_action(manager, url, payment_id=str(other.pk), note="Same phone and amount")

    assert response["HX-Redirect"]
    item = ReconciliationItem.objects.get(pk=imported.pk)
    assert (item.status, item.resolution) == (ItemStatus.RESOLVED, Resolution.ATTACHED)
    assert StatementLine.objects.get(pk=item.line_id).payment_id == other.pk
    assert Payment.objects.get(pk=other.pk).mpesa_receipt_number == "SGR7PAYBL01"
    assert f"Statement line attached to payment #{other.pk}; the exception is resolved." in texts


def test_an_error_from_the_service_is_shown_and_changes_nothing(manager, imported, paid):
    url = reverse("admin:statements_reconciliationitem_attach_payment", args=[imported.pk])
    before = snapshot()
    # The shop's payment already has its own statement line: the service refuses a second one.
    response, texts = post_action(manager, url, payment_id=str(paid.pk), note="")
    assert response["HX-Redirect"] and texts
    assert snapshot() == before
    assert ReconciliationItem.objects.get(pk=imported.pk).status == ItemStatus.OPEN


def test_open_refund_is_offered_only_for_an_order_paid_twice(manager, imported):
    page = manager.get(reverse("admin:statements_reconciliationitem_change", args=[imported.pk]))
    html = page.content.decode()
    assert reverse("admin:statements_reconciliationitem_mark_expected", args=[imported.pk]) in html
    assert reverse("admin:statements_reconciliationitem_attach_payment", args=[imported.pk]) in html
    refund_url = reverse("admin:statements_reconciliationitem_open_refund", args=[imported.pk])
    assert refund_url not in html
    assert manager.get(refund_url).status_code == 403
    assert post_action(manager, refund_url, reason="Paid twice")[0].status_code == 403
    assert not Refund.objects.exists()


@pytest.mark.parametrize("role", [roles.VIEWER, roles.OPERATOR, roles.AUDITOR])
def test_a_role_without_the_resolve_permission_is_refused_the_dialogs(people, imported, role):
    client = browser(people[role])
    page = client.get(reverse("admin:statements_reconciliationitem_change", args=[imported.pk]))
    assert page.status_code == (403 if role == roles.VIEWER else 200)
    for name in ("mark_expected", "attach_payment"):
        url = reverse(f"admin:statements_reconciliationitem_{name}", args=[imported.pk])
        assert url not in page.content.decode()
        assert client.get(url).status_code == 403
        assert post_action(client, url, note="crafted", payment_id="1")[0].status_code == 403
    assert ReconciliationItem.objects.get(pk=imported.pk).status == ItemStatus.OPEN


def test_a_resolved_exception_offers_no_action(manager, imported):
    ReconciliationItem.objects.filter(pk=imported.pk).update(status=ItemStatus.RESOLVED)
    url = reverse("admin:statements_reconciliationitem_mark_expected", args=[imported.pk])
    assert manager.get(url).status_code == 403


# --- masking ---------------------------------------------------------------------------------------------
def test_the_other_partys_number_is_masked_for_roles_without_full_phones(people, imported):
    line = StatementLine.objects.get(receipt="SGR7PAYBL01")
    pages = [
        reverse("admin:statements_statementline_changelist"),
        reverse("admin:statements_statementline_change", args=[line.pk]),
        reverse("admin:statements_reconciliationitem_change", args=[imported.pk]),
    ]
    operator = browser(people[roles.OPERATOR])  # reads the statement, may not see full numbers
    for url in pages:
        page = operator.get(url)
        assert page.status_code == 200
        assert PAYBILL_PHONE not in page.content.decode(), url
    assert "2547*****678" in operator.get(pages[1]).content.decode()
    for role in (roles.MANAGER, roles.AUDITOR):
        assert PAYBILL_PHONE in browser(people[role]).get(pages[1]).content.decode(), role


def test_lines_filter_by_matched_and_search_by_receipt(manager, imported):
    changelist = reverse("admin:statements_statementline_changelist")
    unmatched = manager.get(changelist, {"matched": "no"}).content.decode()
    assert "SGR7PAYBL01" in unmatched and "SGR7PAID001" not in unmatched
    found = manager.get(changelist, {"q": "SGR7PAID001"}).content.decode()
    assert "SGR7PAID001" in found and "SGR7PAYBL01" not in found
    matched = manager.get(changelist, {"matched": "yes"}).content.decode()
    assert (
        reverse(
            "admin:payments_payment_change",
            args=[StatementLine.objects.get(receipt="SGR7PAID001").payment_id],
        )
        in matched
    )


def test_open_refund_on_an_order_paid_twice_requests_the_refund(manager, imported, paid, settings):
    settings.REFUND_APPROVAL_THRESHOLD = 1  # waits for a second person: nothing is sent here
    twice = ReconciliationItem.objects.create(
        key=f"double_payment:{paid.pk}",
        kind=ItemKind.DOUBLE_PAYMENT,
        shortcode=imported.shortcode,
        payment=paid,
        amount=paid.amount,
        occurred_at=paid.completed_at,
        first_run=imported.last_run,
        last_run=imported.last_run,
    )
    url = reverse("admin:statements_reconciliationitem_open_refund", args=[twice.pk])
    assert 'name="reason"' in manager.get(url).content.decode()
    assert not Refund.objects.exists()

    _response, texts = post_action(manager, url, reason="Paid twice")

    refund = Refund.objects.get(payment=paid)
    assert f"Refund #{refund.pk} of KES {refund.amount} opened; the exception is resolved." in texts
    twice.refresh_from_db()
    assert (twice.status, twice.resolution) == (ItemStatus.RESOLVED, Resolution.REFUND_OPENED)
