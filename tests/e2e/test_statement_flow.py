"""The day's close over real HTTP: orders paid through the built-in simulator (one callback dropped), the
simulator's statement exported with a Pay Bill payment nobody recorded, imported, and reconciled."""

import time

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management import call_command

from payments.models import Payment, PaymentStatus
from payments.services import payment_query_status
from statements.models import ItemKind, ItemStatus, MatchMethod, ReconciliationItem, StatementLine
from statements.resolution import item_mark_expected
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

NEVER_CALLS_BACK = "254700000404"
PAYERS = ("254708374149", "254711000111", NEVER_CALLS_BACK)
PLANTED = "254712345678"


@pytest.fixture
def manager(django_user_model):
    user = django_user_model.objects.create_user("close-manager", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="Manager"))
    return user


def test_the_statement_matches_every_payment_fills_the_dropped_receipt_and_lists_the_stranger(
    daraja, place_order, manager, tmp_path
):
    payments = [place_order(phone=phone)[1] for phone in PAYERS]
    wait_for(lambda: Payment.objects.filter(status=PaymentStatus.COMPLETED).count() == len(PAYERS) - 1)
    dropped = Payment.objects.get(pk=payments[-1].pk)
    assert dropped.status == PaymentStatus.INITIATED  # its callback never comes
    time.sleep(settings.SIMULATOR_CALLBACK_DELAY + 0.3)  # the customer has answered by now
    dropped = payment_query_status(payment_id=dropped.pk)
    assert dropped.status == PaymentStatus.COMPLETED and dropped.receipt_pending

    path = tmp_path / "statement.csv"
    call_command("simulator_statement", "--output", str(path), "--paybill", f"{PLANTED}:750:RENT")
    call_command("import_statement", str(path))

    for payment in Payment.objects.filter(pk__in=[payment.pk for payment in payments]):
        line = StatementLine.objects.get(payment=payment)
        assert line.paid_in == payment.amount
        assert payment.mpesa_receipt_number == line.receipt
        assert not payment.receipt_pending
    assert StatementLine.objects.get(payment=dropped).match_method == MatchMethod.DETAILS
    (stranger,) = ReconciliationItem.objects.filter(status=ItemStatus.OPEN)
    assert stranger.kind == ItemKind.UNRECORDED_LINE
    assert stranger.line.account_number == "RENT" and stranger.amount == 750

    item_mark_expected(item_id=stranger.pk, actor=manager, note="Rent paid to the paybill by the landlord")

    stranger.refresh_from_db()
    assert stranger.status == ItemStatus.RESOLVED
    assert not ReconciliationItem.objects.filter(status=ItemStatus.OPEN).exists()
