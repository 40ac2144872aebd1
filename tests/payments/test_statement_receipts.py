"""The M-PESA statement as a source of payment state: a receipt for an attempt completed on an STK Query,
and statement lines staff attach to attempts whose result we never heard."""

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission

from audit.models import AuditAction, AuditEntry
from orders.models import OrderStatus
from payments import services
from payments.daraja.results import StkResult, parse_stk_callback
from payments.exceptions import IllegalTransition, PaymentInvalid, PaymentPermissionDenied, ReceiptInUse
from payments.models import (
    EventKind,
    EventSource,
    Payment,
    PaymentStatus,
    ReviewReason,
    SettledBy,
)
from tests.conftest import stk_callback

WHEN = dt.datetime(2026, 11, 10, 6, 30, tzinfo=dt.UTC)


@pytest.fixture
def initiated(fake_daraja, place_order) -> Payment:
    _order, payment = place_order()
    assert payment.status == PaymentStatus.INITIATED
    return payment


@pytest.fixture
def receipt_pending(initiated) -> Payment:
    """Completed on an STK Query answer: paid, the receipt number still to come."""
    return services.payment_apply_result(
        checkout_request_id=initiated.checkout_request_id,
        result=StkResult(
            checkout_request_id=initiated.checkout_request_id,
            result_code="0",
            result_desc="The service request is processed successfully.",
            from_query=True,
        ),
        source=EventSource.QUERY,
    )


@pytest.fixture
def failed(initiated) -> Payment:
    body = stk_callback(initiated.checkout_request_id, result_code=1032)
    return services.payment_apply_result(
        checkout_request_id=initiated.checkout_request_id,
        result=parse_stk_callback(body),
        source=EventSource.CALLBACK,
    )


@pytest.fixture
def resolver(django_user_model):
    user = django_user_model.objects.create_user("resolver", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(codename="resolve_reconciliationitem", content_type__app_label="statements")
    )
    return django_user_model.objects.get(pk=user.pk)


def events(payment: Payment, kind: str):
    return list(payment.events.filter(kind=kind))


def audits(payment: Payment, action: str):
    return list(AuditEntry.objects.filter(action=action, object_id=str(payment.pk)))


# --- the receipt a statement line gives --------------------------------------------------------------
def test_statement_fills_the_receipt_of_a_payment_completed_on_a_query(receipt_pending, resolver):
    assert receipt_pending.receipt_pending

    payment = services.payment_receipt_from_statement(
        payment_id=receipt_pending.pk,
        receipt="SLK4H1D2E3",
        amount=Decimal("10.00"),
        completed_at=WHEN,
        actor=resolver,
        line_ref="41",
    )

    payment.refresh_from_db()
    assert payment.mpesa_receipt_number == "SLK4H1D2E3"
    assert payment.receipt_pending is False
    assert payment.status == PaymentStatus.COMPLETED
    (event,) = events(payment, EventKind.RECEIPT_FROM_STATEMENT)
    assert event.source == EventSource.STATEMENT
    assert event.actor == resolver
    (entry,) = audits(payment, AuditAction.RECEIPT_FROM_STATEMENT)
    assert entry.actor == resolver
    assert entry.data == {"line": "41"}
    assert entry.changes["mpesa_receipt_number"] == {"before": None, "after": "SLK4H1D2E3"}
    assert entry.changes["receipt_pending"] == {"before": True, "after": False}


def test_the_same_receipt_again_changes_nothing(receipt_pending):
    arguments = {
        "payment_id": receipt_pending.pk,
        "receipt": "SLK4H1D2E3",
        "amount": Decimal("10"),
        "completed_at": WHEN,
    }
    services.payment_receipt_from_statement(**arguments)
    services.payment_receipt_from_statement(**arguments)

    assert len(events(receipt_pending, EventKind.RECEIPT_FROM_STATEMENT)) == 1
    assert len(audits(receipt_pending, AuditAction.RECEIPT_FROM_STATEMENT)) == 1


def test_a_statement_amount_that_differs_is_recorded_and_refused(receipt_pending):
    with pytest.raises(PaymentInvalid, match="KES 12"):
        services.payment_receipt_from_statement(
            payment_id=receipt_pending.pk, receipt="SLK4H1D2E3", amount=Decimal("12"), completed_at=WHEN
        )

    receipt_pending.refresh_from_db()
    assert receipt_pending.receipt_pending is True
    assert receipt_pending.mpesa_receipt_number is None
    (event,) = events(receipt_pending, EventKind.DISAGREEMENT)
    assert event.source == EventSource.STATEMENT
    assert event.data["Amount"] == "12"


def test_a_payment_with_its_receipt_takes_none_from_the_statement(initiated):
    with pytest.raises(IllegalTransition):
        services.payment_receipt_from_statement(
            payment_id=initiated.pk, receipt="SLK4H1D2E3", amount=Decimal("10"), completed_at=WHEN
        )


def test_a_receipt_another_payment_has_is_refused(receipt_pending, place_order, fake_daraja):
    _order, other = place_order()
    Payment.objects.filter(pk=other.pk).update(mpesa_receipt_number="SLK4H1D2E3")

    with pytest.raises(ReceiptInUse):
        services.payment_receipt_from_statement(
            payment_id=receipt_pending.pk, receipt="SLK4H1D2E3", amount=Decimal("10"), completed_at=WHEN
        )
    receipt_pending.refresh_from_db()
    assert receipt_pending.receipt_pending is True


# --- staff attach a statement line -------------------------------------------------------------------
def attach(payment: Payment, actor, *, amount="10", receipt="SLK4H1D2E3", note="Customer sent the SMS"):
    return services.payment_statement_attach(
        payment_id=payment.pk,
        receipt=receipt,
        amount=Decimal(amount),
        completed_at=WHEN,
        actor=actor,
        note=note,
        line_ref="7",
    )


def test_attaching_a_line_to_an_open_attempt_completes_it_settled_by_staff(initiated, resolver):
    payment = attach(initiated, resolver)

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.COMPLETED
    assert payment.mpesa_receipt_number == "SLK4H1D2E3"
    assert payment.paid_amount == Decimal("10.00")
    assert payment.transaction_date == WHEN
    assert payment.settled_by == SettledBy.STAFF
    assert payment.order.status == OrderStatus.CONFIRMED
    completed = payment.events.get(to_status=PaymentStatus.COMPLETED)
    assert (completed.source, completed.actor) == (EventSource.STATEMENT, resolver)
    assert events(payment, EventKind.STATEMENT_ATTACHED)
    (entry,) = audits(payment, AuditAction.STATEMENT_LINE_ATTACHED)
    assert entry.actor == resolver
    assert entry.reason == "Customer sent the SMS"
    assert entry.changes["status"] == {"before": "initiated", "after": "completed"}


def test_attaching_a_line_to_a_failed_attempt_sends_it_to_review(failed, resolver):
    payment = attach(failed, resolver)

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.NEEDS_REVIEW
    assert payment.review_reason == ReviewReason.LATE_PAYMENT
    assert payment.mpesa_receipt_number == "SLK4H1D2E3"
    assert payment.paid_amount == Decimal("10.00")
    assert audits(payment, AuditAction.STATEMENT_LINE_ATTACHED)


def test_attaching_a_line_to_a_receipt_pending_payment_fills_its_receipt(receipt_pending, resolver):
    payment = attach(receipt_pending, resolver)

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.COMPLETED
    assert payment.receipt_pending is False
    assert payment.mpesa_receipt_number == "SLK4H1D2E3"
    assert audits(payment, AuditAction.STATEMENT_LINE_ATTACHED)


def test_attaching_needs_the_permission_to_resolve_reconciliation(initiated, django_user_model):
    clerk = django_user_model.objects.create_user("clerk", is_staff=True)
    for actor in (None, clerk):
        with pytest.raises(PaymentPermissionDenied):
            attach(initiated, actor)
    initiated.refresh_from_db()
    assert initiated.status == PaymentStatus.INITIATED


def test_attaching_a_line_of_another_amount_is_refused(initiated, resolver):
    with pytest.raises(PaymentInvalid, match="KES 11"):
        attach(initiated, resolver, amount="11")
    initiated.refresh_from_db()
    assert initiated.status == PaymentStatus.INITIATED


def test_a_paid_payment_with_another_receipt_takes_no_line(initiated, resolver):
    services.payment_apply_result(
        checkout_request_id=initiated.checkout_request_id,
        result=parse_stk_callback(stk_callback(initiated.checkout_request_id, receipt="NLJ7RT61SV")),
        source=EventSource.CALLBACK,
    )
    with pytest.raises(IllegalTransition, match="NLJ7RT61SV"):
        attach(initiated, resolver)


def test_a_payment_under_review_for_another_reason_takes_no_line(initiated, resolver):
    Payment.objects.filter(pk=initiated.pk).update(
        status=PaymentStatus.NEEDS_REVIEW, review_reason=ReviewReason.AMOUNT_MISMATCH
    )
    with pytest.raises(IllegalTransition, match="review"):
        attach(initiated, resolver)


def test_cash_on_delivery_takes_no_statement_line(place_order, fake_daraja, resolver):
    _order, cod = place_order(method="cod")
    with pytest.raises(IllegalTransition, match="M-Pesa"):
        attach(cod, resolver)
