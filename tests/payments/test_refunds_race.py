"""Refund races, for real: concurrent transactions on PostgreSQL (row locks), threads released together."""

import threading

import pytest
from django.db import connection

from payments import refunds
from payments.exceptions import RefundInProgress
from payments.models import PaymentStatus, Refund, RefundEventKind, RefundStatus
from tests.payments import refunds_support as support
from tests.payments.refunds_support import REVERSAL, post_result, reversal_success

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

paid = support.paid
result_apis = support.result_apis


def run_together(*jobs):
    """Run each job in its own thread (own DB connection), all released at once; returns results/exceptions."""
    barrier = threading.Barrier(len(jobs))
    outcomes: list = [None] * len(jobs)

    def worker(index, job):
        try:
            barrier.wait()
            outcomes[index] = job()
        except Exception as exc:
            outcomes[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


def test_staff_clicking_refund_at_once_make_one_refund_and_one_daraja_call(
    paid, result_apis, django_user_model
):
    staff = [support.staff_user(django_user_model, f"staff{i}", "add_refund") for i in range(4)]

    outcomes = run_together(
        *[
            (
                lambda user=user: refunds.refund_request(
                    payment_id=paid.pk, amount=None, reason="Cancel", actor=user
                )
            )
            for user in staff
        ]
    )

    made = [o for o in outcomes if isinstance(o, Refund)]
    refused = [o for o in outcomes if isinstance(o, RefundInProgress)]
    assert (len(made), len(refused)) == (1, 3), outcomes
    assert Refund.objects.count() == 1
    assert len(result_apis.reversals) == 1
    assert Refund.objects.get().status == RefundStatus.SUBMITTED


def test_the_same_result_delivered_concurrently_refunds_once(paid, result_apis, django_user_model, client):
    maker = support.staff_user(django_user_model, "maker", "add_refund")
    refund = refunds.refund_request(payment_id=paid.pk, amount=None, reason="Cancel", actor=maker)
    body = reversal_success(result_apis.acks[REVERSAL][0])

    from django.test import Client

    statuses = run_together(*[(lambda: post_result(Client(), body).status_code) for _ in range(4)])

    assert statuses == [200] * 4
    refund.refresh_from_db()
    paid.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert paid.status == PaymentStatus.REFUNDED
    assert paid.refunded_amount == 10
    assert refund.events.filter(kind=RefundEventKind.RESULT_APPLIED).count() == 1
    assert refund.events.filter(kind=RefundEventKind.DUPLICATE_RESULT).count() == 3
