"""Each attempt records what first settled it: the callback, an STK Query, staff, a refused push, or the
deadline. Reports count lost callbacks by it."""

import importlib

import pytest
from django.apps import apps

from payments import reconciliation, services
from payments.models import Payment, PaymentStatus, SettledBy
from tests.payments.refunds_support import pay

fill_settled_by = importlib.import_module("payments.migrations.0006_settled_by").fill_settled_by


def test_a_callback_a_query_a_refused_push_and_staff_each_settle_an_attempt(
    fake_daraja, place_order, admin_user, settings
):
    _o, by_callback = place_order()
    pay(by_callback)
    _o, by_query = place_order()
    fake_daraja.answer_query("1032")
    services.payment_query_status(payment_id=by_query.pk)
    fake_daraja.push_replies.append(
        (400, {"requestId": "r", "errorCode": "400.002.02", "errorMessage": "Bad"})
    )
    _o, refused = place_order()
    _o, cash = place_order(method="cod")
    services.payment_mark_collected(payment_id=cash.pk, actor=admin_user)
    _o, expired = place_order()
    settings.MPESA_PAYMENT_DEADLINE = 0
    reconciliation.payment_reconcile(payment_id=expired.pk)

    settled = dict(Payment.objects.values_list("pk", "settled_by"))
    assert settled == {
        by_callback.pk: SettledBy.CALLBACK,
        by_query.pk: SettledBy.QUERY,
        refused.pk: SettledBy.PUSH,
        cash.pk: SettledBy.STAFF,
        expired.pk: SettledBy.SYSTEM,
    }


def test_the_first_settlement_stays_when_a_late_success_is_reviewed(fake_daraja, place_order):
    _o, payment = place_order()
    fake_daraja.answer_query("1032")
    services.payment_query_status(payment_id=payment.pk)
    pay(Payment.objects.get(pk=payment.pk))  # money moved after all: review

    payment.refresh_from_db()
    assert (payment.status, payment.settled_by) == (PaymentStatus.NEEDS_REVIEW, SettledBy.QUERY)


def test_the_migration_reads_what_settled_existing_attempts_from_their_history(fake_daraja, place_order):
    _o, by_callback = place_order()
    pay(by_callback)
    fake_daraja.push_replies.append(
        (400, {"requestId": "r", "errorCode": "400.002.02", "errorMessage": "Bad"})
    )
    _o, refused = place_order()
    _o, open_attempt = place_order()
    Payment.objects.update(settled_by="")

    fill_settled_by(apps, None)

    settled = dict(Payment.objects.values_list("pk", "settled_by"))
    assert settled == {by_callback.pk: "callback", refused.pk: "push", open_attempt.pk: ""}


@pytest.fixture(autouse=True)
def _quiet_notifications(settings):
    settings.SMS_BACKEND = "local"
