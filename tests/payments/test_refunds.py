"""Refund services against a fake Daraja (`responses`), Results posted to our own ResultURL / QueueTimeOutURL."""

import datetime as dt
import json
from decimal import Decimal

import pytest
import requests
import time_machine
from django.db import IntegrityError, transaction
from django.utils import timezone

from payments import reconciliation, refunds, services
from payments.daraja.results import parse_stk_callback
from payments.exceptions import (
    IllegalTransition,
    RefundInProgress,
    RefundInvalid,
    RefundMethodUnavailable,
    RefundNotAllowed,
    RefundPermissionDenied,
    RefundsNotConfigured,
)
from payments.models import (
    CallbackInbox,
    EventKind,
    InboxStatus,
    Payment,
    PaymentStatus,
    Refund,
    RefundEventKind,
    RefundMethod,
    RefundStatus,
)
from payments.signals import refund_status_changed
from tests.conftest import stk_callback
from tests.payments import refunds_support as support
from tests.payments.refunds_support import (
    B2C,
    REVERSAL,
    STATUS,
    decrypt_credential,
    die_after_daraja_accepts,
    post_queue_timeout,
    post_result,
    result_envelope,
    reversal_success,
    status_completed,
)

paid = support.paid
result_apis = support.result_apis
maker = support.maker
checker = support.checker

BUSY = (
    500,
    {"requestId": "r-1", "errorCode": "500.003.02", "errorMessage": "Error Occurred: Spike Arrest Violation"},
)
INVALID = (
    400,
    {"requestId": "r-2", "errorCode": "400.002.02", "errorMessage": "Bad Request - Invalid TransactionID"},
)


@pytest.fixture
def request_refund(django_capture_on_commit_callbacks):
    """refund_request, then run what it leaves for after commit (the submit task, synchronous in tests)."""

    def request(payment, actor, amount=None, reason="Item out of stock"):
        with django_capture_on_commit_callbacks(execute=True):
            refund = refunds.refund_request(payment_id=payment.pk, amount=amount, reason=reason, actor=actor)
        refund.refresh_from_db()
        return refund

    return request


@pytest.fixture
def signals():
    seen = []

    def receive(sender, refund, from_status, to_status, **kwargs):
        seen.append((refund.pk, str(from_status), str(to_status)))

    refund_status_changed.connect(receive, dispatch_uid="test-refund-signals")
    yield seen
    refund_status_changed.disconnect(dispatch_uid="test-refund-signals")


def later(seconds: int):
    return time_machine.travel(timezone.now() + dt.timedelta(seconds=seconds), tick=False)


# --- full refund: Reversal --------------------------------------------------------------------------
def test_full_refund_reverses_the_receipt_and_succeeds_on_the_result(
    paid, maker, result_apis, request_refund, client, settings, signals
):
    refund = request_refund(paid, maker)

    [sent] = result_apis.reversals
    assert sent["CommandID"] == "TransactionReversal"
    assert sent["TransactionID"] == "NLJ7RT61SV"
    assert sent["Amount"] == "10"
    assert sent["ReceiverParty"] == settings.MPESA_SHORTCODE
    assert sent["RecieverIdentifierType"] == "11"
    assert sent["Initiator"] == "testapi"
    assert decrypt_credential(sent["SecurityCredential"]) == "Safaricom999!*!"
    assert (
        "/hooks/daraja/result/" in sent["ResultURL"] and "/hooks/daraja/timeout/" in sent["QueueTimeOutURL"]
    )
    assert refund.method == RefundMethod.REVERSAL
    assert refund.status == RefundStatus.SUBMITTED
    assert refund.approved_by == maker  # KES 10 is under the approval threshold
    ack = result_apis.acks[REVERSAL][0]
    assert refund.conversation_id == ack["ConversationID"]

    response = post_result(client, reversal_success(ack, receipt="SKR1A2B3C4"))

    assert response.status_code == 200
    refund.refresh_from_db()
    paid.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert refund.transaction_id == "SKR1A2B3C4"
    assert paid.status == PaymentStatus.REFUNDED
    assert paid.refunded_amount == Decimal("10")
    assert paid.events.filter(kind=EventKind.REFUNDED).count() == 1
    assert [e.to_status for e in refund.events.order_by("pk")] == [
        "requested",
        "approved",
        "submitting",
        "submitted",
        "succeeded",
    ]
    assert (refund.pk, "submitted", "succeeded") in signals
    assert CallbackInbox.objects.get(kind="result").status == InboxStatus.PROCESSED


def test_already_reversed_counts_as_success(paid, maker, result_apis, request_refund, client):
    refund = request_refund(paid, maker)
    ack = result_apis.acks[REVERSAL][0]

    post_result(
        client,
        result_envelope(
            originator=ack["OriginatorConversationID"],
            conversation=ack["ConversationID"],
            code="R000001",
            desc="The transaction has already been reversed.",
        ),
    )

    refund.refresh_from_db()
    paid.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert refund.result_code == "R000001"
    assert paid.status == PaymentStatus.REFUNDED


@pytest.mark.parametrize(
    ("code", "desc"),
    [
        ("R000002", "The OriginalTransactionID is invalid."),
        (1, "The balance is insufficient for the transaction."),
    ],
)
def test_failed_reversal_leaves_the_payment_paid(
    paid, maker, result_apis, request_refund, client, code, desc
):
    refund = request_refund(paid, maker)
    ack = result_apis.acks[REVERSAL][0]

    post_result(
        client,
        result_envelope(
            originator=ack["OriginatorConversationID"],
            conversation=ack["ConversationID"],
            code=code,
            desc=desc,
        ),
    )

    refund.refresh_from_db()
    paid.refresh_from_db()
    assert refund.status == RefundStatus.FAILED
    assert refund.result_code == str(code)
    assert paid.status == PaymentStatus.COMPLETED
    assert paid.refunded_amount == 0
    # A failed refund frees the payment for another attempt.
    assert request_refund(paid, maker).status == RefundStatus.SUBMITTED


def test_repeated_result_changes_nothing_and_a_late_failure_is_a_disagreement(
    paid, maker, result_apis, request_refund, client
):
    refund = request_refund(paid, maker)
    ack = result_apis.acks[REVERSAL][0]
    post_result(client, reversal_success(ack))

    post_result(client, reversal_success(ack))
    post_result(
        client,
        result_envelope(
            originator=ack["OriginatorConversationID"], conversation=ack["ConversationID"], code=1
        ),
    )

    refund.refresh_from_db()
    paid.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert paid.refunded_amount == Decimal("10")
    assert refund.events.filter(kind=RefundEventKind.DUPLICATE_RESULT).count() == 1
    assert refund.events.filter(kind=RefundEventKind.DISAGREEMENT).count() == 1
    assert paid.events.filter(kind=EventKind.DISAGREEMENT).count() == 1


def test_a_result_nobody_asked_for_is_kept_unmatched(client, db):
    response = post_result(client, result_envelope(originator="nobody", conversation="AG_x", code=0))

    assert response.status_code == 200
    assert CallbackInbox.objects.get().status == InboxStatus.UNMATCHED


def test_result_endpoints_need_the_secret_token(client, db):
    response = client.post("/hooks/daraja/result/wrong-token/", data="{}", content_type="application/json")

    assert response.status_code == 404
    assert not CallbackInbox.objects.exists()


# --- unknown outcomes ---------------------------------------------------------------------------------
def test_queue_timeout_is_unknown_and_transaction_status_settles_it(
    paid, maker, result_apis, request_refund, client, settings
):
    refund = request_refund(paid, maker)
    sent, ack = result_apis.reversals[0], result_apis.acks[REVERSAL][0]

    post_queue_timeout(client, {**sent, "OriginatorConversationID": ack["OriginatorConversationID"]})

    refund.refresh_from_db()
    assert refund.status == RefundStatus.UNKNOWN
    assert refunds.refunds_sweep()["status_queries"] == 0  # not before REFUND_STATUS_INTERVAL
    with later(settings.REFUND_STATUS_INTERVAL + 1):
        refunds.refunds_sweep()
    [query] = result_apis.status_queries
    assert query["OriginalConversationID"] == ack["OriginatorConversationID"]
    assert query["CommandID"] == "TransactionStatusQuery"
    assert len(result_apis.reversals) == 1  # never sent again

    post_result(
        client,
        status_completed(
            result_apis.acks[STATUS][0],
            about_originator=ack["OriginatorConversationID"],
            about_conversation=ack["ConversationID"],
            receipt="SKR9Z8Y7X6",
        ),
    )

    refund.refresh_from_db()
    paid.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert refund.transaction_id == "SKR9Z8Y7X6"
    assert paid.status == PaymentStatus.REFUNDED


def test_read_timeout_is_unknown_and_never_resent(paid, maker, result_apis, request_refund, settings):
    result_apis.replies[REVERSAL].append(requests.ReadTimeout("read timed out"))

    refund = request_refund(paid, maker)

    assert refund.status == RefundStatus.UNKNOWN
    with later(settings.REFUND_STATUS_INTERVAL + 1):
        refunds.refunds_sweep()
    with later(settings.REFUND_STATUS_INTERVAL * 4):
        refunds.refunds_sweep()
    assert len(result_apis.reversals) == 1
    # Nothing known of the reversal's ids: ask by the original receipt, with a growing interval.
    assert [q.get("TransactionID") for q in result_apis.status_queries] == ["NLJ7RT61SV", "NLJ7RT61SV"]
    refund.refresh_from_db()
    assert refund.status_query_count == 2
    assert refund.next_check_at > timezone.now() + dt.timedelta(seconds=settings.REFUND_STATUS_INTERVAL * 4)


def test_status_answer_about_the_original_payment_is_not_taken_for_the_reversal(
    paid, maker, result_apis, request_refund, client, settings
):
    result_apis.replies[REVERSAL].append(requests.ReadTimeout("read timed out"))
    refund = request_refund(paid, maker)
    with later(settings.REFUND_STATUS_INTERVAL + 1):
        refunds.refunds_sweep()

    post_result(
        client,
        status_completed(
            result_apis.acks[STATUS][0],
            about_originator="",
            about_conversation="",
            receipt="NLJ7RT61SV",
            reason_type="Pay Bill Online",
        ),
    )

    refund.refresh_from_db()
    assert refund.status == RefundStatus.UNKNOWN
    assert "another transaction" in refund.events.order_by("pk").last().message


def test_busy_means_nothing_was_processed_so_it_is_sent_again_later(
    paid, maker, result_apis, request_refund, settings
):
    result_apis.replies[REVERSAL].append(BUSY)

    refund = request_refund(paid, maker)

    assert refund.status == RefundStatus.APPROVED
    assert refunds.refunds_sweep()["sent"] == 0
    with later(settings.REFUND_STATUS_INTERVAL + 1):
        refunds.refunds_sweep()
    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUBMITTED
    assert len(result_apis.reversals) == 2


def test_a_refused_request_fails_at_once(paid, maker, result_apis, request_refund):
    result_apis.replies[REVERSAL].append(INVALID)

    refund = request_refund(paid, maker)

    assert refund.status == RefundStatus.FAILED
    assert refund.result_code == "400.002.02"


def test_crash_after_daraja_accepted_leaves_submitting_then_unknown_then_the_late_result_settles_it(
    paid, maker, result_apis, client, settings
):
    result_apis.on_call = die_after_daraja_accepts
    refund = refunds.refund_request(payment_id=paid.pk, amount=None, reason="Damaged", actor=maker)
    with pytest.raises(SystemExit):
        refunds.refund_submit(refund_id=refund.pk)
    result_apis.on_call = None
    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUBMITTING  # recorded before the call, so the crash lost nothing
    assert refund.conversation_id == ""

    assert refunds.refunds_sweep()["unknown"] == 0
    with later(settings.REFUND_SUBMITTING_TIMEOUT + 1):
        refunds.refunds_sweep()
    refund.refresh_from_db()
    assert refund.status == RefundStatus.UNKNOWN
    assert len(result_apis.reversals) == 1  # never re-sent by the sweeper
    assert result_apis.status_queries[0]["TransactionID"] == "NLJ7RT61SV"

    # Daraja's Result carries ids we never stored; the receipt it reverses is ours.
    post_result(client, reversal_success(result_apis.acks[REVERSAL][0], original="NLJ7RT61SV"))

    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert refund.conversation_id == result_apis.acks[REVERSAL][0]["ConversationID"]


def test_a_result_that_outruns_the_acknowledgement_is_applied_once_the_ids_are_known(
    paid, maker, result_apis, request_refund, client
):
    # The failure Result has no parameters to match on: it waits in the inbox until the ack is stored.
    def answer_first(path, body, ack):
        post_result(
            client,
            result_envelope(
                originator=ack["OriginatorConversationID"], conversation=ack["ConversationID"], code=1
            ),
        )

    result_apis.on_call = answer_first

    refund = request_refund(paid, maker)

    assert refund.status == RefundStatus.FAILED
    assert CallbackInbox.objects.get(kind="result").status == InboxStatus.PROCESSED


def test_staff_can_resend_an_unknown_reversal_and_already_reversed_counts(
    paid, checker, maker, result_apis, request_refund, client
):
    result_apis.replies[REVERSAL].append(requests.ReadTimeout("read timed out"))
    refund = request_refund(paid, maker)

    with pytest.raises(RefundPermissionDenied):
        refunds.refund_resend_reversal(refund_id=refund.pk, actor=maker)
    refund = refunds.refund_resend_reversal(refund_id=refund.pk, actor=checker)

    assert refund.status == RefundStatus.SUBMITTED
    assert len(result_apis.reversals) == 2
    ack = result_apis.acks[REVERSAL][0]
    post_result(
        client,
        result_envelope(
            originator=ack["OriginatorConversationID"], conversation=ack["ConversationID"], code="R000001"
        ),
    )
    refund.refresh_from_db()
    assert (refund.status, refund.transaction_id) == (RefundStatus.SUCCEEDED, "")

    # The first request's own Result, whose ids we never learned, brings the reversal receipt late.
    first = {"OriginatorConversationID": "first-oc", "ConversationID": "AG_20261127_first"}
    post_result(client, reversal_success(first, receipt="SKR0FIRST1", original="NLJ7RT61SV"))
    refund.refresh_from_db()
    paid.refresh_from_db()
    assert refund.transaction_id == "SKR0FIRST1"
    assert paid.refunded_amount == Decimal("10")


def test_staff_resolve_an_unknown_refund_by_hand(paid, maker, checker, result_apis, request_refund):
    result_apis.replies[REVERSAL].append(requests.ReadTimeout("read timed out"))
    refund = request_refund(paid, maker)

    with pytest.raises(RefundInvalid):
        refunds.refund_resolve(refund_id=refund.pk, actor=checker, succeeded=True, note=" ")
    refunds.refund_resolve(
        refund_id=refund.pk,
        actor=checker,
        succeeded=True,
        note="Statement line 12",
        transaction_id="SKR5T6Y7U8",
    )

    refund.refresh_from_db()
    paid.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert paid.status == PaymentStatus.REFUNDED
    assert refund.events.order_by("pk").last().actor == checker


# --- partial refunds: B2C -----------------------------------------------------------------------------
def test_partial_refund_without_a_b2c_shortcode_is_refused(paid, maker, result_apis, settings):
    settings.MPESA_B2C_SHORTCODE = ""

    with pytest.raises(RefundMethodUnavailable, match="MPESA_B2C_SHORTCODE"):
        refunds.refund_request(payment_id=paid.pk, amount=Decimal("4"), reason="Partial", actor=maker)
    assert not Refund.objects.exists()
    assert result_apis.b2c_payments == []


def test_partial_refunds_are_b2c_payments_keyed_by_the_refund(
    paid, maker, result_apis, request_refund, client, settings
):
    settings.MPESA_B2C_SHORTCODE = "600992"

    first = request_refund(paid, maker, amount=Decimal("4"))

    [sent] = result_apis.b2c_payments
    assert sent["OriginatorConversationID"] == first.idempotency_key
    assert sent["CommandID"] == "BusinessPayment"
    assert sent["PartyA"] == "600992"
    assert sent["PartyB"] == paid.phone
    assert sent["Amount"] == 4
    assert sent["InitiatorName"] == "testapi"
    assert "Occassion" in sent
    post_result(
        client,
        result_envelope(
            originator=first.idempotency_key,
            conversation="AG_x1",
            transaction_id="SKB1234567",
            parameters={"TransactionAmount": 4, "TransactionReceipt": "SKB1234567"},
        ),
    )
    paid.refresh_from_db()
    assert paid.status == PaymentStatus.PARTIALLY_REFUNDED
    assert paid.refunded_amount == Decimal("4")

    with pytest.raises(RefundInvalid, match="At most KES 6"):
        refunds.refund_request(payment_id=paid.pk, amount=Decimal("7"), reason="Too much", actor=maker)
    rest = request_refund(paid, maker)  # everything left: B2C too, a reversal would give back all 10
    assert rest.method == RefundMethod.B2C and rest.amount == Decimal("6")
    post_result(
        client,
        result_envelope(originator=rest.idempotency_key, conversation="AG_x2", transaction_id="SKB7654321"),
    )
    paid.refresh_from_db()
    assert paid.status == PaymentStatus.REFUNDED
    assert paid.refunded_amount == Decimal("10")


def test_a_second_payout_that_no_longer_fits_ends_over_refunded_not_in_flight_forever(
    paid, maker, checker, result_apis, request_refund, client, settings, caplog
):
    # Staff settle an unknown B2C as "not paid" too early and refund again; then both payouts turn out real.
    settings.MPESA_B2C_SHORTCODE = "600992"
    result_apis.replies[B2C].append(requests.ReadTimeout("read timed out"))
    first = request_refund(paid, maker, amount=Decimal("6"))
    refunds.refund_resolve(refund_id=first.pk, actor=checker, succeeded=False, note="Not on the statement")
    second = request_refund(paid, maker, amount=Decimal("6"))
    post_result(
        client,
        result_envelope(originator=first.idempotency_key, conversation="AG_1", transaction_id="SKB0000001"),
    )
    paid.refresh_from_db()
    assert paid.refunded_amount == Decimal("6")

    post_result(
        client,
        result_envelope(originator=second.idempotency_key, conversation="AG_2", transaction_id="SKB0000002"),
    )

    second.refresh_from_db()
    paid.refresh_from_db()
    assert second.status == RefundStatus.OVER_REFUNDED
    assert second.get_status_display() == "Succeeded, over-refund: recover from customer"
    assert second.transaction_id == "SKB0000002"
    assert not second.is_in_flight
    assert paid.refunded_amount == Decimal("6")  # the database cannot hold more than was paid
    assert "recover it" in second.events.get(kind=RefundEventKind.OVER_REFUNDED).message
    assert paid.events.filter(kind=EventKind.DISAGREEMENT).count() == 1
    assert any(r.levelname == "ERROR" and f"Refund #{second.pk}" in r.getMessage() for r in caplog.records)
    # Nothing more can be refunded: the customer already has more than they paid.
    with pytest.raises(RefundInvalid):
        refunds.refund_request(payment_id=paid.pk, amount=Decimal("4"), reason="More", actor=maker)

    # It is settled: no sweeper asks about it again, and a repeat Result changes nothing.
    queries_before = len(result_apis.status_queries)
    with later(settings.REFUND_RESULT_TIMEOUT + 1):
        refunds.refunds_sweep()
    assert len(result_apis.status_queries) == queries_before
    post_result(
        client,
        result_envelope(originator=second.idempotency_key, conversation="AG_2", transaction_id="SKB0000002"),
    )
    second.refresh_from_db()
    assert second.status == RefundStatus.OVER_REFUNDED
    assert second.events.filter(kind=RefundEventKind.DUPLICATE_RESULT).count() == 1


def test_b2c_crash_is_resolved_by_transaction_status_on_our_own_key(
    paid, maker, result_apis, client, settings
):
    settings.MPESA_B2C_SHORTCODE = "600992"
    result_apis.on_call = die_after_daraja_accepts
    refund = refunds.refund_request(payment_id=paid.pk, amount=Decimal("5"), reason="Partial", actor=maker)
    with pytest.raises(SystemExit):
        refunds.refund_submit(refund_id=refund.pk)
    result_apis.on_call = None

    with later(settings.REFUND_SUBMITTING_TIMEOUT + 1):
        refunds.refunds_sweep()

    [query] = result_apis.status_queries
    assert query["OriginalConversationID"] == refund.idempotency_key
    post_result(
        client,
        status_completed(
            result_apis.acks[STATUS][0],
            about_originator=refund.idempotency_key,
            about_conversation="AG_b2c",
            receipt="SKB5555555",
            reason_type="Business Payment to Customer via API",
            amount=5,
        ),
    )
    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert len(result_apis.b2c_payments) == 1


def test_status_not_found_fails_the_refund_only_after_the_grace_period(
    paid, maker, result_apis, request_refund, client, settings
):
    settings.MPESA_B2C_SHORTCODE = "600992"
    result_apis.replies["/mpesa/b2c/v3/paymentrequest"].append(requests.ReadTimeout("read timed out"))
    refund = request_refund(paid, maker, amount=Decimal("3"))
    not_found = {"code": "R000002", "desc": "The OriginalTransactionID is invalid."}

    with later(settings.REFUND_STATUS_INTERVAL + 1):
        refunds.refunds_sweep()
    ack = result_apis.acks[STATUS][0]
    post_result(
        client,
        result_envelope(
            originator=ack["OriginatorConversationID"], conversation=ack["ConversationID"], **not_found
        ),
    )
    refund.refresh_from_db()
    assert refund.status == RefundStatus.UNKNOWN  # too early to conclude anything

    with later(settings.REFUND_NOT_FOUND_GRACE + 1):
        refunds.refunds_sweep()
        ack = result_apis.acks[STATUS][1]
        post_result(
            client,
            result_envelope(
                originator=ack["OriginatorConversationID"], conversation=ack["ConversationID"], **not_found
            ),
        )
    refund.refresh_from_db()
    assert refund.status == RefundStatus.FAILED


def test_a_stale_not_found_answer_does_not_fail_a_reversal_sent_again(
    paid, maker, checker, result_apis, request_refund, client, settings
):
    result_apis.replies[REVERSAL].append(requests.ReadTimeout("read timed out"))
    refund = request_refund(paid, maker)
    with later(settings.REFUND_STATUS_INTERVAL + 1):
        refunds.refunds_sweep()  # Transaction Status asked about the first request
    refund = refunds.refund_resend_reversal(refund_id=refund.pk, actor=checker)
    assert refund.status == RefundStatus.SUBMITTED

    ack = result_apis.acks[STATUS][0]
    with later(settings.REFUND_NOT_FOUND_GRACE + 1):
        post_result(
            client,
            result_envelope(
                originator=ack["OriginatorConversationID"],
                conversation=ack["ConversationID"],
                code="R000002",
                desc="The OriginalTransactionID is invalid.",
            ),
        )

    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUBMITTED
    assert refund.events.filter(message__contains="about an earlier request").exists()


# --- what may not be refunded ------------------------------------------------------------------------
def test_refund_of_an_unpaid_payment_is_refused(place_order, fake_daraja, maker, result_apis):
    _order, payment = place_order()

    with pytest.raises(RefundNotAllowed, match="Only paid payments"):
        refunds.refund_request(payment_id=payment.pk, amount=None, reason="x", actor=maker)
    assert result_apis.reversals == []


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (Decimal("11"), "At most KES 10"),
        (Decimal("0"), "more than zero"),
        (Decimal("-5"), "more than zero"),
        (Decimal("2.50"), "whole"),
    ],
)
def test_bad_amounts_are_refused(paid, maker, result_apis, amount, message):
    with pytest.raises(RefundInvalid, match=message):
        refunds.refund_request(payment_id=paid.pk, amount=amount, reason="x", actor=maker)
    assert not Refund.objects.exists()


def test_one_refund_in_flight_per_payment_and_none_after_a_full_refund(
    paid, maker, result_apis, request_refund, client
):
    refund = request_refund(paid, maker)

    with pytest.raises(RefundInProgress):
        refunds.refund_request(payment_id=paid.pk, amount=None, reason="again", actor=maker)
    post_result(client, reversal_success(result_apis.acks[REVERSAL][0]))
    with pytest.raises(RefundNotAllowed):
        refunds.refund_request(payment_id=paid.pk, amount=None, reason="again", actor=maker)
    assert Refund.objects.get() == refund
    assert len(result_apis.reversals) == 1


def test_refunds_need_a_configured_initiator(paid, maker, settings):
    settings.MPESA_SECURITY_CREDENTIAL = ""
    settings.MPESA_CERTIFICATE_PATH = ""

    with pytest.raises(RefundsNotConfigured):
        refunds.refund_request(payment_id=paid.pk, amount=None, reason="x", actor=maker)


# --- maker-checker ---------------------------------------------------------------------------------
def test_without_the_add_permission_nobody_can_request(paid, django_user_model):
    stranger = django_user_model.objects.create_user("stranger", is_staff=True)

    with pytest.raises(RefundPermissionDenied):
        refunds.refund_request(payment_id=paid.pk, amount=None, reason="x", actor=stranger)


def test_above_the_threshold_a_second_person_must_approve(
    paid, maker, checker, django_user_model, result_apis, settings, django_capture_on_commit_callbacks
):
    settings.REFUND_APPROVAL_THRESHOLD = 5
    other_maker = support.staff_user(django_user_model, "other-maker", "add_refund")

    refund = refunds.refund_request(payment_id=paid.pk, amount=None, reason="Cancelled", actor=checker)

    assert refund.status == RefundStatus.REQUESTED
    assert result_apis.reversals == []
    with pytest.raises(RefundPermissionDenied, match="second person"):
        refunds.refund_approve(refund_id=refund.pk, actor=checker)  # may approve, but not their own
    with pytest.raises(RefundPermissionDenied):
        refunds.refund_approve(refund_id=refund.pk, actor=other_maker)  # lacks approve_refund
    checker2 = support.staff_user(django_user_model, "checker2", "approve_refund")
    with django_capture_on_commit_callbacks(execute=True):
        refunds.refund_approve(refund_id=refund.pk, actor=checker2)
    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUBMITTED
    assert refund.approved_by == checker2
    assert len(result_apis.reversals) == 1
    with pytest.raises(IllegalTransition):
        refunds.refund_approve(refund_id=refund.pk, actor=checker2)


def test_at_the_threshold_the_requester_is_enough(paid, maker, result_apis, request_refund, settings):
    settings.REFUND_APPROVAL_THRESHOLD = 10

    assert request_refund(paid, maker).status == RefundStatus.SUBMITTED


def test_splitting_a_refund_does_not_dodge_approval(
    paid, maker, result_apis, request_refund, client, settings
):
    settings.MPESA_B2C_SHORTCODE = "600992"
    settings.REFUND_APPROVAL_THRESHOLD = 5
    first = request_refund(paid, maker, amount=Decimal("4"))
    assert first.status == RefundStatus.SUBMITTED
    post_result(
        client,
        result_envelope(originator=first.idempotency_key, conversation="AG_s1", transaction_id="SKB1111111"),
    )

    second = request_refund(paid, maker, amount=Decimal("4"))

    # 4 already refunded + 4 more is above the threshold of 5: a second person must approve.
    assert second.status == RefundStatus.REQUESTED
    assert len(result_apis.b2c_payments) == 1


def test_a_rejected_refund_is_never_sent(paid, maker, checker, result_apis, settings):
    settings.REFUND_APPROVAL_THRESHOLD = 5
    refund = refunds.refund_request(payment_id=paid.pk, amount=None, reason="Cancelled", actor=maker)

    refunds.refund_reject(refund_id=refund.pk, actor=checker, note="Customer kept the goods")
    refunds.refunds_sweep()

    refund.refresh_from_db()
    assert refund.status == RefundStatus.REJECTED
    assert refund.rejected_by == checker
    assert result_apis.reversals == []


# --- lost work and database invariants ----------------------------------------------------------------
def test_an_approved_refund_whose_task_was_never_queued_is_sent_by_the_sweeper(
    paid, maker, result_apis, monkeypatch, django_capture_on_commit_callbacks
):
    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unavailable")

    monkeypatch.setattr("django_q.tasks.async_task", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        refund = refunds.refund_request(payment_id=paid.pk, amount=None, reason="x", actor=maker)
    monkeypatch.undo()
    assert Refund.objects.get(pk=refund.pk).status == RefundStatus.APPROVED

    assert refunds.refunds_sweep()["sent"] == 0  # the task may still be on its way
    with later(61):
        assert refunds.refunds_sweep()["sent"] == 1

    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUBMITTED
    assert len(result_apis.reversals) == 1


def test_a_result_a_killed_worker_left_in_the_inbox_is_applied_by_the_inbox_sweeper(
    paid, maker, result_apis, request_refund, settings
):
    refund = request_refund(paid, maker)
    body = reversal_success(result_apis.acks[REVERSAL][0])
    inbox = CallbackInbox.objects.create(kind="result", body=json.dumps(body), status=InboxStatus.RECEIVED)

    with later(settings.INBOX_RETRY_AFTER + 1):
        reconciliation.inbox_sweep()

    inbox.refresh_from_db()
    refund.refresh_from_db()
    assert inbox.status == InboxStatus.PROCESSED
    assert refund.status == RefundStatus.SUCCEEDED


def test_the_database_allows_one_refund_in_flight_per_payment_and_no_over_refund(paid, maker):
    def insert(key, status=RefundStatus.SUBMITTED):
        return Refund.objects.create(
            payment=paid,
            method=RefundMethod.REVERSAL,
            amount=10,
            reason="x",
            idempotency_key=key,
            status=status,
        )

    insert("k1")
    insert("k2", RefundStatus.FAILED)
    with pytest.raises(IntegrityError), transaction.atomic():
        insert("k3", RefundStatus.UNKNOWN)
    with pytest.raises(IntegrityError), transaction.atomic():
        Payment.objects.filter(pk=paid.pk).update(refunded_amount=11)


def test_a_payment_resolved_as_paid_on_less_money_gives_back_only_what_arrived(
    fake_daraja, place_order, maker, result_apis, request_refund, client, django_user_model
):
    # Daraja reported KES 7 for a KES 10 prompt; staff found KES 7 on the statement and took it as paid.
    _order, payment = place_order()
    short = stk_callback(payment.checkout_request_id, amount=7.0, receipt="SGR7SHORT1")
    services.payment_apply_result(
        checkout_request_id=payment.checkout_request_id, result=parse_stk_callback(short), source="callback"
    )
    reviewer = support.staff_user(django_user_model, "reviewer", "review_payment")
    services.payment_review_resolve(
        payment_id=payment.pk, actor=reviewer, outcome="paid", note="KES 7 arrived"
    )

    with pytest.raises(RefundInvalid, match="KES 7"):
        refunds.refund_request(payment_id=payment.pk, amount=Decimal("10"), reason="Gone", actor=maker)
    refund = request_refund(payment, maker)

    assert (refund.amount, refund.method) == (Decimal("7"), RefundMethod.REVERSAL)
    assert result_apis.reversals[0]["Amount"] == "7"
    post_result(client, reversal_success(result_apis.acks[REVERSAL][0], original="SGR7SHORT1", amount=7))
    payment.refresh_from_db()
    assert (payment.status, payment.refunded_amount) == (PaymentStatus.REFUNDED, Decimal("7"))


def test_a_resent_reversal_is_never_failed_on_not_found_while_its_first_request_may_have_run(
    paid, maker, checker, result_apis, request_refund, client, settings
):
    # The first request reached Safaricom and reversed the receipt; our read timed out. The re-sent one
    # was answered "already reversed". Both Results were lost.
    result_apis.replies[REVERSAL].append(requests.ReadTimeout("read timed out"))
    refund = request_refund(paid, maker)
    refunds.refund_resend_reversal(refund_id=refund.pk, actor=checker)

    with later(settings.REFUND_NOT_FOUND_GRACE + 1):
        refunds.refunds_sweep()
        [question] = result_apis.status_queries
        ack = result_apis.acks[STATUS][0]
        post_result(
            client,
            result_envelope(
                originator=ack["OriginatorConversationID"],
                conversation=ack["ConversationID"],
                code="R000002",
                desc="The OriginalTransactionID is invalid.",
            ),
        )
    refund.refresh_from_db()
    assert refund.status == RefundStatus.UNKNOWN  # the re-sent request moved nothing; the first may have

    # Asked about the receipt it reverses, Transaction Status finds the first request's reversal.
    assert question.get("TransactionID") == "NLJ7RT61SV" and "OriginalConversationID" not in question
    post_result(
        client,
        status_completed(ack, about_originator="", about_conversation="", receipt="SKR5FIRST1"),
    )
    refund.refresh_from_db()
    paid.refresh_from_db()
    assert (refund.status, refund.transaction_id) == (RefundStatus.SUCCEEDED, "SKR5FIRST1")
    assert paid.status == PaymentStatus.REFUNDED


def test_a_refused_resend_leaves_the_reversal_unknown_while_its_first_request_may_still_run(
    paid, maker, checker, result_apis, request_refund, client
):
    refund = request_refund(paid, maker)
    sent, ack = result_apis.reversals[0], result_apis.acks[REVERSAL][0]
    post_queue_timeout(client, {**sent, "OriginatorConversationID": ack["OriginatorConversationID"]})
    result_apis.replies[REVERSAL].append(INVALID)

    refund = refunds.refund_resend_reversal(refund_id=refund.pk, actor=checker)

    # Daraja refused the second request; the first may still run, so no second refund may start.
    assert refund.status == RefundStatus.UNKNOWN
    with pytest.raises(RefundInProgress):
        refunds.refund_request(payment_id=paid.pk, amount=None, reason="again", actor=maker)
    post_result(client, reversal_success(ack))
    refund.refresh_from_db()
    paid.refresh_from_db()
    assert (refund.status, paid.status) == (RefundStatus.SUCCEEDED, PaymentStatus.REFUNDED)


def test_a_failed_result_of_a_resent_reversal_leaves_it_unknown_while_its_first_request_may_still_run(
    paid, maker, checker, result_apis, request_refund, client, settings
):
    # The first request timed out in Daraja's queue (it may still run); staff sent it again, and the second
    # request failed. The first one then ran and reversed the receipt, and its Result was lost.
    refund = request_refund(paid, maker)
    sent, first = result_apis.reversals[0], result_apis.acks[REVERSAL][0]
    post_queue_timeout(client, {**sent, "OriginatorConversationID": first["OriginatorConversationID"]})
    refunds.refund_resend_reversal(refund_id=refund.pk, actor=checker)
    second = result_apis.acks[REVERSAL][1]

    post_result(
        client,
        result_envelope(
            originator=second["OriginatorConversationID"],
            conversation=second["ConversationID"],
            code=1,
            desc="The balance is insufficient for the transaction.",
        ),
    )

    refund.refresh_from_db()
    paid.refresh_from_db()
    assert refund.status == RefundStatus.UNKNOWN  # not failed: the first request may still pay out
    assert paid.status == PaymentStatus.COMPLETED
    with pytest.raises(RefundInProgress):
        refunds.refund_request(payment_id=paid.pk, amount=None, reason="again", actor=maker)

    # Asked about the receipt it reverses, Transaction Status finds the first request's reversal.
    with later(settings.REFUND_STATUS_INTERVAL + 1):
        refunds.refunds_sweep()
    [question] = result_apis.status_queries
    assert question.get("TransactionID") == "NLJ7RT61SV" and "OriginalConversationID" not in question
    post_result(
        client,
        status_completed(
            result_apis.acks[STATUS][0],
            about_originator=first["OriginatorConversationID"],
            about_conversation=first["ConversationID"],
            receipt="SKR5FIRST1",
        ),
    )
    refund.refresh_from_db()
    paid.refresh_from_db()
    assert (refund.status, refund.transaction_id) == (RefundStatus.SUCCEEDED, "SKR5FIRST1")
    assert (paid.status, paid.refunded_amount) == (PaymentStatus.REFUNDED, Decimal("10"))
