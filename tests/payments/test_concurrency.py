"""Races settled by the database: real threads, real transactions, PostgreSQL row locks."""

import json
import threading

import pytest
from django.db import connection
from django.urls import reverse

from orders.models import Order, OrderStatus
from payments.callback_urls import callback_token
from payments.models import CallbackInbox, EventKind, InboxStatus, Payment, PaymentStatus
from tests.conftest import ApiClient, order_body, stk_callback

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 8


def at_once(work, count: int = THREADS) -> list:
    """Run `work()` in `count` threads released together; return what each returned (or raised)."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = work()
        except Exception as exc:  # reported to the test, not lost in the thread
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_identical_callbacks_at_the_same_moment_apply_exactly_once(fake_daraja, place_order):
    order, payment = place_order()
    path = reverse("payments:stk-callback", kwargs={"token": callback_token()})
    body = json.dumps(stk_callback(payment.checkout_request_id))

    def deliver():
        from django.test import Client

        return Client().post(path, body, content_type="application/json").status_code

    statuses = at_once(deliver)

    assert statuses == [200] * THREADS
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.COMPLETED
    assert payment.events.filter(kind=EventKind.RESULT_APPLIED).count() == 1
    assert payment.events.filter(kind=EventKind.DUPLICATE_RESULT).count() == THREADS - 1
    # Every copy is accounted for: stored and processed, or counted on the row it repeats.
    rows = CallbackInbox.objects.all()
    assert all(row.status == InboxStatus.PROCESSED for row in rows)
    assert sum(1 + row.duplicates for row in rows) == THREADS
    order.refresh_from_db()
    assert order.status == OrderStatus.CONFIRMED


def test_concurrent_retry_clicks_start_exactly_one_new_attempt(fake_daraja, api_client, products):
    placed = api_client.post_json("/api/v1/orders", order_body(product_id=products[0].pk)).json()["payment"]
    path = reverse("payments:stk-callback", kwargs={"token": callback_token()})
    from django.test import Client

    Client().post(
        path,
        json.dumps(stk_callback(Payment.objects.get(pk=placed["id"]).checkout_request_id, result_code=1032)),
        content_type="application/json",
    )
    token = api_client.defaults["HTTP_AUTHORIZATION"].removeprefix("Bearer ")

    def click():
        return ApiClient(token).post_json(f"/api/v1/payments/{placed['id']}/retry", {"phone": "0712345678"})

    responses = at_once(click)

    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * (THREADS - 1), codes
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} <= {
        "attempt_in_progress",
        "retry_too_soon",
    }
    assert Payment.objects.filter(order_id=placed["orderId"]).count() == 2
    assert len(fake_daraja.pushes) == 2


def test_concurrent_orders_with_one_idempotency_key_create_one_order(fake_daraja, api_client, products):
    token = api_client.defaults["HTTP_AUTHORIZATION"].removeprefix("Bearer ")
    body = order_body(product_id=products[0].pk)

    def submit():
        return ApiClient(token).post_json("/api/v1/orders", body, HTTP_IDEMPOTENCY_KEY="double-submit-1")

    responses = at_once(submit, count=4)

    assert all(r.status_code in (200, 201) for r in responses), [r.status_code for r in responses]
    assert len({r.json()["order"]["id"] for r in responses}) == 1
    assert Order.objects.count() == 1
    assert len(fake_daraja.pushes) == 1


def test_retry_racing_the_payment_window_closing_neither_deadlocks_nor_pays_a_cancelled_order(
    fake_daraja, place_order, settings
):
    import datetime as dt

    from django.utils import timezone

    from orders.services import order_cancel_if_unpaid
    from payments import services
    from payments.exceptions import PaymentNotRetryable

    for _ in range(5):
        order, payment = place_order(phone="254700000032")
        Payment.objects.filter(pk=payment.pk).update(
            status=PaymentStatus.FAILED, created_at=timezone.now() - dt.timedelta(minutes=5)
        )
        Payment.objects.filter(pk=payment.pk).update(initiated_at=timezone.now() - dt.timedelta(minutes=5))
        Order.objects.filter(pk=order.pk).update(payment_due_at=timezone.now() - dt.timedelta(seconds=1))

        def cancel(order_id=order.pk):
            return order_cancel_if_unpaid(order_id=order_id)

        def retry(payment_id=payment.pk):
            return services.payment_retry(payment_id=payment_id)

        barrier = threading.Barrier(2)
        outcomes: dict = {}

        def run(name, work):
            try:
                barrier.wait(timeout=10)
                outcomes[name] = work()
            except Exception as exc:
                outcomes[name] = exc
            finally:
                connection.close()

        threads = [threading.Thread(target=run, args=args) for args in (("cancel", cancel), ("retry", retry))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        order.refresh_from_db()
        retried = outcomes["retry"]
        assert not isinstance(retried, Exception) or isinstance(retried, PaymentNotRetryable), retried
        assert not isinstance(outcomes["cancel"], Exception), outcomes["cancel"]
        if order.status == OrderStatus.CANCELLED:
            # Cancelled first: the retry found the order cancelled and started nothing.
            assert isinstance(retried, PaymentNotRetryable)
            assert order.payments.count() == 1
        else:
            # The retry came first: its attempt is in flight, so the window did not cancel the order.
            assert order.payments.count() == 2
