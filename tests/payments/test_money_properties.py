"""A stateful property test of the money invariants: random interleavings of everything that moves money.

Hypothesis drives a `RuleBasedStateMachine` through orders (M-Pesa and cash on delivery), STK pushes,
callbacks on the secret URL (successes, failures, repeats, late ones, a wrong amount), forged callbacks on
the original unauthenticated path, STK Queries (the sweeper and "ask now"), retries, refunds (request,
approval, rejection, Results, queue timeouts, Transaction Status, re-sent reversals, staff resolution,
sweeps), reviews, receipts, cash on delivery, order cancellation and the passing of time.

Daraja is faked at the HTTP boundary (`responses`) by `World`, which keeps the truth: which STK pushes
reached Safaricom, which of them the customer paid (receipt and amount), and which refund requests paid
out how much. Daraja here is honest: its callbacks and answers follow the truth; only bodies posted to the
legacy path lie. Staff are honest too: they resolve from the truth (the M-Pesa statement), and only when
the statement can tell. After every step the database is checked against the invariants listed on
`MoneyMachine.invariants_hold`; once per example (after SETTLE_AFTER steps) `everything_settles` may let
the world finish what it started and check that every open row found its way out and that the books
agree with what Safaricom did.

Each example runs inside a savepoint of the test's transaction, rolled back at its end, with time frozen
(time_machine) and moved forward only by the `time_passes` rule. Work handed to `transaction.on_commit`
runs synchronously at the end of each step, and django-q2 tasks run in-process (`run_task`).

Size of the search (environment variables):
- MONEY_PROPERTY_EXAMPLES: examples (state machine runs) per test run, default 200;
- MONEY_PROPERTY_STEPS: at most this many steps per example, default 40;
- MONEY_PROPERTY_STATS=1: print how many examples reached each payment, refund, event, order and inbox
  state (with `pytest -s`), to see what the search covers.
The defaults take a little over a minute of CPU on a 2-core machine with SQLite (about 0.35 s an
example); outside CI each run draws new examples. CI (`CI=true`) replays a fixed set instead, so a red run
is reproducible, and .ci/run asks for 1,000 of them on SQLite. Raise them for a deeper search, e.g.
`MONEY_PROPERTY_EXAMPLES=3000 .venv/bin/python -m pytest -q tests/payments/test_money_properties.py`.
A failure prints the shrunk sequence of steps and a seed (`--hypothesis-seed=...`) to replay it.
"""

import contextlib
import datetime as dt
import itertools
import json
import os
import traceback
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
import requests
import responses
import time_machine
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count
from django.test import Client, TestCase
from django.utils import timezone
from django.utils.module_loading import import_string
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from orders.exceptions import OrderError
from orders.models import Order, OrderStatus, Product
from orders.services import ItemRequest, Shipping, order_cancel, order_cancel_unpaid, order_place
from payments import reconciliation, refunds, services
from payments.callback_urls import queue_timeout_url, result_url, stk_callback_url
from payments.exceptions import PaymentError
from payments.models import (
    PAID_STATUSES,
    CallbackInbox,
    EventKind,
    EventSource,
    InboxKind,
    InboxStatus,
    Payment,
    PaymentEvent,
    PaymentMethod,
    PaymentStatus,
    Refund,
    RefundEvent,
    RefundMethod,
    RefundStatus,
)
from payments.services.review import ReviewOutcome
from tests.conftest import FAKE_DARAJA_URL, stk_callback
from tests.payments.refunds_support import path_of, result_envelope, reversal_success, status_completed

EXAMPLES = int(os.environ.get("MONEY_PROPERTY_EXAMPLES", "200"))
STEPS = int(os.environ.get("MONEY_PROPERTY_STEPS", "40"))
DERANDOMIZE = os.environ.get("CI", "").lower() in ("1", "true", "yes")

STATS_WANTED = bool(os.environ.get("MONEY_PROPERTY_STATS"))
REACHED: Counter = Counter()

LEGACY_PATH = "/api/v1/payments/mpesa/callback"
PHONES = ("254708374149", "254712345678")
PRICES = (Decimal("10.00"), Decimal("450.00"), Decimal("1850.50"))  # the last one is charged KES 1851
APPROVAL_THRESHOLD = 100

PROCESSING = (
    500,
    {
        "requestId": "ws_CO_1",
        "errorCode": "500.001.1001",
        "errorMessage": "The transaction is being processed",
    },
)
SPIKE_ARREST = (
    500,
    {"requestId": "r-1", "errorCode": "500.003.02", "errorMessage": "Error Occurred: Spike Arrest Violation"},
)
GATEWAY_DOWN = (503, {"requestId": "r-2", "errorCode": "503.001.01", "errorMessage": "Service Unavailable"})
INVALID = (
    400,
    {"requestId": "r-3", "errorCode": "400.002.02", "errorMessage": "Bad Request - Invalid Request"},
)
DUPLICATE_B2C = (
    500,
    {"requestId": "r-4", "errorCode": "500.002.1001", "errorMessage": "Duplicate OriginatorConversationID."},
)

# Weighted by repetition: the plain path most of the time, every way it can go wrong some of the time.
PUSH_MODES = st.sampled_from(["accept"] * 6 + ["reject", "busy", "timeout", "crash"])
QUERY_MODES = st.sampled_from(["truth"] * 4 + ["processing", "5xx", "spike"])
SEND_MODES = st.sampled_from(["ack"] * 6 + ["busy", "reject", "timeout", "crash"])
STATUS_MODES = st.sampled_from(["ack"] * 4 + ["busy"])
FAILURE_CODES = ("1032", "1", "2001", "1037")
INDEX = st.integers(min_value=0, max_value=63)
# everything_settles may come once per example, after this many steps; it takes at most SETTLE_ROUNDS hours.
SETTLE_AFTER = 10
SETTLE_ROUNDS = 6


class WorkerDied(Exception):
    """Our process died after Daraja took the request and before the answer was recorded (simulated)."""


# --- the truth, and Daraja faked at the HTTP boundary ----------------------------------------------------
@dataclass
class Push:
    """An STK push that reached Safaricom, and what the customer did with it."""

    checkout_id: str
    payment_id: int
    amount: Decimal
    outcome: str = ""  # "" (not answered yet), "paid", "failed"
    code: str = ""
    receipt: str = ""
    paid_amount: Decimal | None = None

    def callback(self) -> dict:
        if self.outcome == "paid":
            return stk_callback(self.checkout_id, amount=float(self.paid_amount), receipt=self.receipt)
        return stk_callback(self.checkout_id, result_code=int(self.code))


@dataclass
class RefundRequest:
    """A Reversal or B2C request that reached Safaricom, and whether it paid out."""

    refund_id: int
    payment_id: int
    method: str
    amount: Decimal
    original_receipt: str
    originator: str
    conversation: str
    sent: dict
    outcome: str = ""  # "" (queued at Safaricom), "paid", "already" (R000001: nothing moved), "failed"
    code: str = ""
    receipt: str = ""
    paid_out: Decimal = Decimal("0")

    def result(self) -> dict:
        ids = {"OriginatorConversationID": self.originator, "ConversationID": self.conversation}
        if self.outcome == "paid" and self.method == RefundMethod.REVERSAL:
            return reversal_success(
                ids, receipt=self.receipt, original=self.original_receipt, amount=int(self.paid_out)
            )
        if self.outcome == "paid":
            return result_envelope(
                originator=self.originator,
                conversation=self.conversation,
                transaction_id=self.receipt,
                parameters={
                    "TransactionAmount": int(self.paid_out),
                    "TransactionReceipt": self.receipt,
                    "B2CRecipientIsRegisteredCustomer": "Y",
                    "TransactionCompletedDateTime": "27.11.2026 10:10:10",
                },
            )
        if self.outcome == "already":
            return result_envelope(
                originator=self.originator,
                conversation=self.conversation,
                code="R000001",
                desc="The transaction has already been reversed.",
            )
        return result_envelope(
            originator=self.originator, conversation=self.conversation, code=self.code, desc="Failed"
        )


@dataclass
class StatusQuestion:
    """A Transaction Status request Safaricom accepted; its answer comes to ResultURL."""

    ack: dict
    about_request: str  # OriginalConversationID asked about
    about_receipt: str  # or the receipt asked about


def _reply(status: int, body: dict):
    return status, {"Content-Type": "application/json"}, json.dumps(body)


@dataclass
class World:
    """What Safaricom really did, and its HTTP face. The machine sets the modes before each action."""

    pushes: list[Push] = field(default_factory=list)
    requests: list[RefundRequest] = field(default_factory=list)
    questions: list[StatusQuestion] = field(default_factory=list)
    push_mode: str = "accept"
    query_mode: str = "truth"
    send_mode: str = "ack"
    status_mode: str = "ack"
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    # STK Query answers that said "paid", by CheckoutRequestID
    query_said_paid: set[str] = field(default_factory=set)

    def next_id(self) -> int:
        return next(self.ids)

    def push_for(self, checkout_id: str) -> Push | None:
        return next((push for push in self.pushes if push.checkout_id == checkout_id), None)

    def push_of_payment(self, payment_id: int) -> Push | None:
        return next((push for push in self.pushes if push.payment_id == payment_id), None)

    def paid_in(self, payment_id: int) -> Decimal:
        push = self.push_of_payment(payment_id)
        return push.paid_amount if push and push.outcome == "paid" else Decimal("0")

    def paid_out(self, payment_id: int) -> Decimal:
        return sum((r.paid_out for r in self.requests if r.payment_id == payment_id), Decimal("0"))

    def receipt_reversed(self, receipt: str) -> bool:
        return any(
            r.outcome == "paid" and r.method == RefundMethod.REVERSAL and r.original_receipt == receipt
            for r in self.requests
        )

    def settle_request(self, request: RefundRequest, *, success: bool, code: str = "1") -> None:
        """Safaricom runs (or fails) a queued refund request."""
        if (
            success
            and request.method == RefundMethod.REVERSAL
            and self.receipt_reversed(request.original_receipt)
        ):
            request.outcome, request.code = "already", "R000001"
        elif success:
            request.outcome, request.receipt = "paid", f"RFD{self.next_id():07d}"
            # A reversal gives back the whole original transaction, whatever the request said.
            reversal = request.method == RefundMethod.REVERSAL
            request.paid_out = self.paid_in(request.payment_id) if reversal else request.amount
        else:
            request.outcome, request.code = "failed", code

    # --- HTTP handlers (responses callbacks) ---
    def oauth(self, request):
        return _reply(200, {"access_token": "property-token", "expires_in": "3599"})

    def stk_push(self, request):
        body = json.loads(request.body)
        if self.push_mode == "reject":
            return _reply(*INVALID)
        if self.push_mode == "busy":
            return _reply(*SPIKE_ARREST)
        payment = Payment.objects.get(
            status=PaymentStatus.PENDING,
            method=PaymentMethod.MPESA,
            account_reference=body["AccountReference"],
        )
        checkout_id = f"ws_CO_PROP{self.next_id():08d}"
        self.pushes.append(Push(checkout_id, payment.pk, Decimal(str(body["Amount"]))))
        if self.push_mode == "timeout":
            return requests.ReadTimeout("read timed out")
        if self.push_mode == "crash":
            raise WorkerDied("worker died after Daraja accepted the STK push")
        return _reply(
            200,
            {
                "MerchantRequestID": "2654-4b64-97ff-b827b542881d3130",
                "CheckoutRequestID": checkout_id,
                "ResponseCode": "0",
                "ResponseDescription": "Success. Request accepted for processing",
                "CustomerMessage": "Success. Request accepted for processing",
            },
        )

    def stk_query(self, request):
        checkout_id = json.loads(request.body)["CheckoutRequestID"]
        push = self.push_for(checkout_id)
        assert push is not None, f"STK Query about a CheckoutRequestID Daraja never issued: {checkout_id}"
        if self.query_mode == "5xx":
            return _reply(*GATEWAY_DOWN)
        if self.query_mode == "spike":
            return _reply(*SPIKE_ARREST)
        if self.query_mode == "processing" or not push.outcome:
            return _reply(*PROCESSING)
        code = "0" if push.outcome == "paid" else push.code
        if code == "0":
            self.query_said_paid.add(checkout_id)
        return _reply(
            200,
            {
                "ResponseCode": "0",
                "ResponseDescription": "The service request has been accepted successfully",
                "MerchantRequestID": "22205-34066-1",
                "CheckoutRequestID": checkout_id,
                "ResultCode": code,
                "ResultDesc": "The service request is processed successfully." if code == "0" else "Failed",
            },
        )

    def _refund_request(self, *, refund: Refund, body: dict, originator: str, amount: Decimal):
        n = self.next_id()
        ack = {
            "OriginatorConversationID": originator or f"fake-oc-{n:05d}",
            "ConversationID": f"AG_20261127_{n:020x}",
            "ResponseCode": "0",
            "ResponseDescription": "Accept the service request successfully.",
        }
        self.requests.append(
            RefundRequest(
                refund_id=refund.pk,
                payment_id=refund.payment_id,
                method=refund.method,
                amount=amount,
                original_receipt=refund.original_receipt,
                originator=ack["OriginatorConversationID"],
                conversation=ack["ConversationID"],
                sent=body,
            )
        )
        if self.send_mode == "timeout":
            return requests.ReadTimeout("read timed out")
        if self.send_mode == "crash":
            raise WorkerDied("worker died after Daraja accepted the refund request")
        return _reply(200, ack)

    def reversal(self, request):
        body = json.loads(request.body)
        if self.send_mode == "busy":
            return _reply(*SPIKE_ARREST)
        if self.send_mode == "reject":
            return _reply(*INVALID)
        refund = Refund.objects.get(
            status=RefundStatus.SUBMITTING,
            method=RefundMethod.REVERSAL,
            original_receipt=body["TransactionID"],
        )
        return self._refund_request(refund=refund, body=body, originator="", amount=Decimal(body["Amount"]))

    def b2c(self, request):
        body = json.loads(request.body)
        if self.send_mode == "busy":
            return _reply(*SPIKE_ARREST)
        if self.send_mode == "reject":
            return _reply(*INVALID)
        originator = body["OriginatorConversationID"]
        if any(r.originator == originator for r in self.requests):
            return _reply(*DUPLICATE_B2C)  # daraja.md §6.4: the idempotency key of B2C
        refund = Refund.objects.get(idempotency_key=originator)
        return self._refund_request(
            refund=refund, body=body, originator=originator, amount=Decimal(str(body["Amount"]))
        )

    def transaction_status(self, request):
        body = json.loads(request.body)
        if self.status_mode == "busy":
            return _reply(*SPIKE_ARREST)
        n = self.next_id()
        ack = {
            "OriginatorConversationID": f"fake-st-{n:05d}",
            "ConversationID": f"AG_20261127_{n:020x}",
            "ResponseCode": "0",
            "ResponseDescription": "Accept the service request successfully.",
        }
        self.questions.append(
            StatusQuestion(
                ack=ack,
                about_request=body.get("OriginalConversationID", ""),
                about_receipt=body.get("TransactionID", ""),
            )
        )
        return _reply(200, ack)

    def status_answer(self, question: StatusQuestion) -> dict | None:
        """What Transaction Status truthfully says; None while Safaricom itself does not know yet."""
        if question.about_request:
            asked = next(
                (r for r in self.requests if question.about_request in (r.originator, r.conversation)),
                None,
            )
            if asked is not None and not asked.outcome:
                return None  # still queued at Safaricom
            if asked is not None and asked.outcome == "paid":
                return status_completed(
                    question.ack,
                    about_originator=asked.originator,
                    about_conversation=asked.conversation,
                    receipt=asked.receipt,
                    reason_type="Reversal" if asked.method == RefundMethod.REVERSAL else "Business Payment",
                    amount=int(asked.paid_out),
                )
            # Never reached Safaricom, or it moved no money: no such completed transaction.
            return result_envelope(
                originator=question.ack["OriginatorConversationID"],
                conversation=question.ack["ConversationID"],
                code="R000002",
                desc="The OriginalTransactionID is invalid.",
            )
        reversal = next(
            (
                r
                for r in self.requests
                if r.outcome == "paid"
                and r.method == RefundMethod.REVERSAL
                and r.original_receipt == question.about_receipt
            ),
            None,
        )
        if reversal is not None:
            return status_completed(
                question.ack,
                about_originator=reversal.originator,
                about_conversation=reversal.conversation,
                receipt=reversal.receipt,
                reason_type="Reversal",
                amount=int(reversal.paid_out),
            )
        # The receipt asked about is the customer's original payment.
        return status_completed(
            question.ack,
            about_originator="",
            about_conversation="",
            receipt=question.about_receipt,
            reason_type="Pay Bill Online",
        )


@dataclass
class Environment:
    """What every example shares: users, products, the fake's current world, errors raised in tasks."""

    owner: object = None
    maker: object = None
    checker: object = None
    staff: object = None
    products: list = field(default_factory=list)
    start: dt.datetime | None = None
    world: World | None = None
    mock: responses.RequestsMock | None = None
    task_errors: list[str] = field(default_factory=list)


ENV = Environment()


def run_task(func, *args, **options):
    """django-q2's async_task, run in-process: a worker picks the task up at once.

    A task's exception is recorded (the enqueueing code swallows broker errors, so it would hide it). A
    simulated worker death is expected. Notification sends are left queued: they move no money.
    """
    if func.startswith("notifications."):
        return None
    try:
        import_string(func)(*args)
    except WorkerDied:
        pass
    except Exception:
        ENV.task_errors.append(f"task {func}{args} raised:\n{traceback.format_exc()}")
    return None


def _user(django_user_model, username: str, *perms: str):
    user = django_user_model.objects.create_user(username, is_staff=bool(perms))
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(codename=codename, content_type__app_label=app_label)
        )
    return django_user_model.objects.get(pk=user.pk)


IN_FLIGHT = (RefundStatus.APPROVED, RefundStatus.SUBMITTING, RefundStatus.SUBMITTED, RefundStatus.UNKNOWN)
STK_KINDS = (InboxKind.STK_CALLBACK, InboxKind.STK_CALLBACK_LEGACY)

# The rows each rule acts on: (table of the snapshot, predicate on a row).
ELIGIBLE = {
    "open_attempts": (
        "payments",
        lambda p: (
            p["method"] == PaymentMethod.MPESA
            and p["status"] in (PaymentStatus.PENDING, PaymentStatus.INITIATED)
        ),
    ),
    "queryable": ("payments", lambda p: p["checkout_request_id"]),
    "failed_mpesa": (
        "payments",
        lambda p: p["method"] == PaymentMethod.MPESA and p["status"] == PaymentStatus.FAILED,
    ),
    "refundable": (
        "payments",
        lambda p: (
            p["method"] == PaymentMethod.MPESA
            and p["status"] in (PaymentStatus.COMPLETED, PaymentStatus.PARTIALLY_REFUNDED)
        ),
    ),
    "in_review": ("payments", lambda p: p["status"] == PaymentStatus.NEEDS_REVIEW),
    "receipt_pending": ("payments", lambda p: p["receipt_pending"] and p["status"] in PAID_STATUSES),
    "cash_on_delivery": ("payments", lambda p: p["status"] == PaymentStatus.PENDING_DELIVERY),
    "requested_refunds": ("refunds", lambda r: r["status"] == RefundStatus.REQUESTED),
    "refunds_in_flight": ("refunds", lambda r: r["status"] in IN_FLIGHT),
    "unknown_refunds": ("refunds", lambda r: r["status"] == RefundStatus.UNKNOWN),
    "unknown_reversals": (
        "refunds",
        lambda r: r["status"] == RefundStatus.UNKNOWN and r["method"] == RefundMethod.REVERSAL,
    ),
    "pending_orders": ("orders", lambda o: o["status"] == OrderStatus.PENDING),
    "unmatched_callbacks": (
        "inbox",
        lambda i: i["status"] == InboxStatus.UNMATCHED and i["kind"] in STK_KINDS,
    ),
    "inbox_to_sweep": ("inbox", lambda i: i["status"] in (InboxStatus.UNMATCHED, InboxStatus.FAILED)),
}


def reached_states() -> set[str]:
    reached = {f"payment {s}" for s in Payment.objects.values_list("status", flat=True)}
    reached |= {f"refund {m} {s}" for s, m in Refund.objects.values_list("status", "method")}
    reached |= {f"payment event {k}" for k in PaymentEvent.objects.values_list("kind", flat=True)}
    reached |= {f"refund event {k}" for k in RefundEvent.objects.values_list("kind", flat=True)}
    reached |= {f"order {s}" for s in Order.objects.values_list("status", flat=True)}
    reached |= {f"inbox {k} {s}" for k, s in CallbackInbox.objects.values_list("kind", "status")}
    return reached


# --- the machine -----------------------------------------------------------------------------------------
class MoneyMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        cache.clear()  # the STK Query throttle and the OAuth token
        ENV.task_errors.clear()
        ENV.mock.calls.reset()
        self.world = ENV.world = World()
        self.savepoint = transaction.savepoint_create()
        self.clock = time_machine.travel(ENV.start, tick=False)
        self.coordinates = self.clock.start()
        self.client = Client()
        self.forged_receipts: set[str] = set()
        self.steps = 0
        self.settled = False
        self.snapshot: dict[str, list[dict]] = {"payments": [], "refunds": [], "orders": [], "inbox": []}

    def teardown(self):
        if STATS_WANTED:
            REACHED.update(reached_states() | ({"~ settled"} if self.settled else set()))
        self.clock.stop()
        transaction.savepoint_rollback(self.savepoint)
        transaction.savepoint_commit(self.savepoint)

    # --- helpers ---
    def eligible(self, name: str) -> list[int]:
        """The ids of the rows a rule may act on, from the snapshot the invariants took after the last step
        (the database changes only in steps); a rule's precondition is that there are some."""
        table, predicate = ELIGIBLE[name]
        return [row["id"] for row in self.snapshot[table] if predicate(row)]

    def any(self, name: str) -> bool:
        return bool(self.eligible(name))

    def pick(self, name: str, index: int) -> int:
        ids = self.eligible(name)
        return ids[index % len(ids)]

    def act(self, action, *args, **kwargs):
        """One thing happening: refused by the rules, or done; then what it left for after commit runs."""
        outcome = None
        with TestCase.captureOnCommitCallbacks(execute=True):
            try:
                outcome = action(*args, **kwargs)
            except (PaymentError, OrderError, WorkerDied):
                outcome = None
        errors, ENV.task_errors[:] = list(ENV.task_errors), []
        assert not errors, "\n".join(errors)
        return outcome

    def post(self, path: str, body: dict):
        def send():
            return self.client.post(path, data=json.dumps(body), content_type="application/json")

        response = self.act(send)
        assert response.status_code == 200, (response.status_code, response.content)
        return response

    def callback_path(self) -> str:
        return path_of(stk_callback_url())

    # --- orders and pushes ---
    @initialize(
        pay=st.booleans(),
        product=st.integers(min_value=0, max_value=2),
        refund=st.sampled_from(["none", "full", "partial"]),
        mode=SEND_MODES,
    )
    def first_order(self, pay, product, refund, mode):
        """Every example starts from an M-Pesa order, often paid, sometimes with a refund on its way."""
        self.place_order(
            method=PaymentMethod.MPESA, product=product, quantity=1, phone=PHONES[0], mode="accept"
        )
        if pay:
            self.customer_answers(index=0, answer="pay", deliver=True, wrong_amount=False)
            if refund != "none":
                self.invariants_hold()  # and a fresh snapshot for request_refund to pick from
                self.request_refund(index=0, full=refund == "full", share=50, mode=mode)

    @rule(
        method=st.sampled_from([PaymentMethod.MPESA] * 5 + [PaymentMethod.COD]),
        product=st.integers(min_value=0, max_value=2),
        quantity=st.integers(min_value=1, max_value=2),
        phone=st.sampled_from(PHONES),
        mode=PUSH_MODES,
    )
    def place_order(self, method, product, quantity, phone, mode):
        self.world.push_mode = mode
        self.act(
            order_place,
            owner=ENV.owner,
            items=[ItemRequest(product_id=ENV.products[product].pk, quantity=quantity)],
            shipping=Shipping(full_name="Test User", address="1 Test St", city="Nairobi", phone=phone),
            payment_method=method,
            payment_phone=phone,
        )

    @precondition(lambda self: any(not push.outcome for push in self.world.pushes))
    @rule(
        index=INDEX,
        answer=st.sampled_from(["pay"] * 3 + list(FAILURE_CODES)),
        deliver=st.sampled_from([True, True, False]),
        wrong_amount=st.sampled_from([False] * 5 + [True]),
    )
    def customer_answers(self, index, answer, deliver, wrong_amount):
        """The customer answers a prompt; Daraja calls the secret URL (or the callback is lost)."""
        waiting = [push for push in self.world.pushes if not push.outcome]
        push = waiting[index % len(waiting)]
        if answer == "pay":
            push.outcome, push.receipt = "paid", f"TRU{self.world.next_id():07d}"
            # Daraja reporting another amount than was asked (an anomaly) comes with its callback.
            push.paid_amount = push.amount - 1 if wrong_amount and deliver else push.amount
        else:
            push.outcome, push.code = "failed", answer
        if deliver:
            self.post(self.callback_path(), push.callback())

    @precondition(lambda self: any(push.outcome for push in self.world.pushes))
    @rule(index=INDEX)
    def callback_again(self, index):
        """Daraja delivers a callback again: a duplicate, or late (after expiry, a retry, a query)."""
        answered = [push for push in self.world.pushes if push.outcome]
        self.post(self.callback_path(), answered[index % len(answered)].callback())

    @precondition(lambda self: self.world.pushes)
    @rule(index=INDEX, claim=st.sampled_from(["success", "failure"]), mode=QUERY_MODES)
    def forged_legacy_callback(self, index, claim, mode):
        """Someone posts a made-up result to the original unauthenticated path."""
        push = self.world.pushes[index % len(self.world.pushes)]
        self.world.query_mode = mode
        if claim == "success":
            receipt = f"FRG{self.world.next_id():07d}"
            self.forged_receipts.add(receipt)
            body = stk_callback(push.checkout_id, amount=float(push.amount), receipt=receipt)
        else:
            body = stk_callback(push.checkout_id, result_code=1032)
        self.post(LEGACY_PATH, body)

    @precondition(lambda self: self.any("open_attempts"))
    @rule(mode=QUERY_MODES)
    def status_sweep(self, mode):
        self.world.query_mode = mode
        self.act(reconciliation.payments_sweep)

    @precondition(lambda self: self.any("queryable"))
    @rule(index=INDEX, mode=QUERY_MODES)
    def ask_now(self, index, mode):
        self.world.query_mode = mode
        payment_id = self.pick("queryable", index)
        self.act(services.payment_query_status, payment_id=payment_id, actor=ENV.staff)

    @rule(seconds=st.sampled_from([5, 31, 61, 130, 181, 301, 700, 1000, 3700, 25 * 3600]))
    def time_passes(self, seconds):
        self.coordinates.shift(dt.timedelta(seconds=seconds))

    @precondition(lambda self: self.any("failed_mpesa"))
    @rule(index=INDEX, mode=PUSH_MODES, other_phone=st.booleans())
    def retry(self, index, mode, other_phone):
        self.world.push_mode = mode
        self.act(
            services.payment_retry,
            payment_id=self.pick("failed_mpesa", index),
            phone=PHONES[1] if other_phone else None,
            actor=ENV.owner,
        )

    # --- refunds ---
    @precondition(lambda self: self.any("refundable"))
    @rule(index=INDEX, full=st.booleans(), share=st.integers(min_value=1, max_value=99), mode=SEND_MODES)
    def request_refund(self, index, full, share, mode):
        payment = Payment.objects.get(pk=self.pick("refundable", index))
        amount = None if full else max(Decimal(int(payment.amount * share / 100)), Decimal("1"))
        self.world.send_mode = mode
        self.act(
            refunds.refund_request,
            payment_id=payment.pk,
            amount=amount,
            reason="Out of stock",
            actor=ENV.maker,
        )

    @precondition(lambda self: self.any("requested_refunds"))
    @rule(index=INDEX, approve=st.sampled_from([True, True, False]), mode=SEND_MODES)
    def approve_or_reject_refund(self, index, approve, mode):
        refund_id = self.pick("requested_refunds", index)
        self.world.send_mode = mode
        if approve:
            self.act(refunds.refund_approve, refund_id=refund_id, actor=ENV.checker)
        else:
            self.act(refunds.refund_reject, refund_id=refund_id, actor=ENV.checker, note="Not this time")

    @precondition(lambda self: any(not r.outcome for r in self.world.requests))
    @rule(
        index=INDEX,
        success=st.sampled_from([True, True, False]),
        code=st.sampled_from(["1", "2001", "R000002"]),
        deliver=st.sampled_from([True, True, False]),
    )
    def safaricom_settles_refund(self, index, success, code, deliver):
        """Safaricom runs (or fails) a queued refund request; its Result comes (or is lost)."""
        queued = [r for r in self.world.requests if not r.outcome]
        request = queued[index % len(queued)]
        self.world.settle_request(request, success=success, code=code)
        if deliver:
            self.post(path_of(result_url()), request.result())

    @precondition(lambda self: any(r.outcome for r in self.world.requests))
    @rule(index=INDEX)
    def refund_result_again(self, index):
        settled = [r for r in self.world.requests if r.outcome]
        self.post(path_of(result_url()), settled[index % len(settled)].result())

    @precondition(lambda self: any(not r.outcome for r in self.world.requests))
    @rule(index=INDEX)
    def queue_timeout(self, index):
        """The request waited too long in Safaricom's queue (it may still run)."""
        queued = [r for r in self.world.requests if not r.outcome]
        request = queued[index % len(queued)]
        self.post(
            path_of(queue_timeout_url()), {**request.sent, "OriginatorConversationID": request.originator}
        )

    @precondition(lambda self: self.any("refunds_in_flight"))
    @rule(send=SEND_MODES, status=STATUS_MODES)
    def refund_sweep(self, send, status):
        self.world.send_mode, self.world.status_mode = send, status
        self.act(refunds.refunds_sweep)

    @precondition(lambda self: self.any("unknown_refunds"))
    @rule(index=INDEX, status=STATUS_MODES)
    def transaction_status_now(self, index, status):
        self.world.status_mode = status
        self.act(
            refunds.refund_check_status,
            refund_id=self.pick("unknown_refunds", index),
            actor=ENV.checker,
        )

    @precondition(lambda self: self.world.questions)
    @rule(index=INDEX)
    def transaction_status_answer(self, index):
        question = self.world.questions[index % len(self.world.questions)]
        answer = self.world.status_answer(question)
        if answer is not None:
            self.post(path_of(result_url()), answer)

    @precondition(lambda self: self.any("unknown_reversals"))
    @rule(index=INDEX, mode=SEND_MODES)
    def staff_resend_reversal(self, index, mode):
        self.world.send_mode = mode
        self.act(
            refunds.refund_resend_reversal,
            refund_id=self.pick("unknown_reversals", index),
            actor=ENV.checker,
        )

    @precondition(lambda self: self.any("unknown_refunds"))
    @rule(index=INDEX, with_receipt=st.booleans())
    def staff_resolve_refund(self, index, with_receipt):
        """Staff settle an unknown refund from the statement, once the statement can tell."""
        self.resolve_refund_from_statement(self.pick("unknown_refunds", index), with_receipt=with_receipt)

    def resolve_refund_from_statement(self, refund_id: int, *, with_receipt: bool) -> None:
        sent = [r for r in self.world.requests if r.refund_id == refund_id]
        if any(not r.outcome for r in sent):
            return  # still queued at Safaricom: the statement cannot tell yet
        paid = next((r for r in sent if r.outcome == "paid"), None)
        self.act(
            refunds.refund_resolve,
            refund_id=refund_id,
            actor=ENV.checker,
            succeeded=paid is not None,
            note="Checked on the M-Pesa statement",
            transaction_id=paid.receipt if paid is not None and with_receipt else "",
        )

    # --- staff on payments and orders ---
    @precondition(lambda self: self.any("in_review"))
    @rule(index=INDEX, confirm_receipt=st.booleans())
    def staff_resolve_review(self, index, confirm_receipt):
        """Staff settle a payment under review from the statement, once the statement can tell."""
        self.resolve_review_from_statement(self.pick("in_review", index), confirm_receipt=confirm_receipt)

    def resolve_review_from_statement(self, payment_id: int, *, confirm_receipt: bool) -> None:
        push = self.world.push_of_payment(payment_id)
        if push is not None and not push.outcome:
            return  # the customer may still answer
        waiting = (
            push
            and CallbackInbox.objects.filter(
                kind=InboxKind.STK_CALLBACK, status=InboxStatus.UNMATCHED, correlation_id=push.checkout_id
            ).first()
        )
        if waiting:
            # Its callback waits in the inbox (the push timed out on our side): staff attach the evidence.
            self.act(services.callback_attach, inbox_id=waiting.pk, payment_id=payment_id, actor=ENV.staff)
            return
        paid = push is not None and push.outcome == "paid"
        # Paid needs the receipt: staff copy it from the statement when M-Pesa never gave it to us (a late
        # success found by STK Query carries none), and may copy it anyway (`confirm_receipt`).
        known = Payment.objects.filter(pk=payment_id).exclude(mpesa_receipt_number=None).exists()
        self.act(
            services.payment_review_resolve,
            payment_id=payment_id,
            actor=ENV.staff,
            outcome=ReviewOutcome.PAID if paid else ReviewOutcome.NOT_PAID,
            note="Checked on the M-Pesa statement",
            receipt=push.receipt if paid and (confirm_receipt or not known) else None,
        )

    @precondition(lambda self: self.any("receipt_pending"))
    @rule(index=INDEX)
    def staff_enter_receipt(self, index):
        payment_id = self.pick("receipt_pending", index)
        push = self.world.push_of_payment(payment_id)
        self.act(services.payment_receipt_enter, payment_id=payment_id, actor=ENV.staff, receipt=push.receipt)

    @precondition(lambda self: self.any("unmatched_callbacks"))
    @rule(index=INDEX)
    def staff_attach_callback(self, index):
        """Staff attach an unmatched callback to the attempt whose push it answers."""
        inbox = CallbackInbox.objects.get(pk=self.pick("unmatched_callbacks", index))
        push = self.world.push_for(inbox.correlation_id)
        if push is not None:
            self.act(services.callback_attach, inbox_id=inbox.pk, payment_id=push.payment_id, actor=ENV.staff)

    @precondition(lambda self: self.any("cash_on_delivery"))
    @rule(index=INDEX, collected=st.booleans())
    def cash_on_delivery(self, index, collected):
        payment_id = self.pick("cash_on_delivery", index)
        if collected:
            self.act(services.payment_mark_collected, payment_id=payment_id, actor=ENV.staff)
        else:
            self.act(
                services.payment_mark_not_collected, payment_id=payment_id, actor=ENV.staff, reason="Refused"
            )

    @precondition(lambda self: self.any("pending_orders"))
    @rule(index=INDEX)
    def staff_cancel_order(self, index):
        self.act(
            order_cancel,
            order_id=self.pick("pending_orders", index),
            actor=ENV.staff,
            reason="Customer called",
        )

    @precondition(lambda self: self.any("pending_orders"))
    @rule()
    def payment_windows_close(self):
        self.act(order_cancel_unpaid)

    @precondition(lambda self: self.any("inbox_to_sweep"))
    @rule()
    def inbox_sweep(self):
        self.act(reconciliation.inbox_sweep)

    # --- the end of the story ---
    @precondition(lambda self: self.steps >= SETTLE_AFTER and not self.settled)
    @rule()
    def everything_settles(self):
        """Customers and Safaricom finish what they started (unanswered prompts time out, queued refund
        requests run, every callback arrives once more, Results are lost), time passes, and every exit is
        taken: sweepers, Transaction Status answers, and staff working from the statement (reviews,
        unmatched callbacks, receipts, approvals, unknown refunds). Nothing may stay open, and the books
        must agree with what Safaricom did."""
        self.settled = True
        world = self.world
        world.query_mode, world.send_mode, world.status_mode = "truth", "ack", "ack"
        for push in world.pushes:
            if not push.outcome:
                push.outcome, push.code = "failed", "1037"
            self.post(self.callback_path(), push.callback())
        answered: set[int] = set()
        for _round in range(SETTLE_ROUNDS):
            for request in world.requests:
                if not request.outcome:
                    world.settle_request(request, success=True)
            self.coordinates.shift(dt.timedelta(hours=1))
            self.act(reconciliation.payments_sweep)
            self.act(reconciliation.inbox_sweep)
            self.act(refunds.refunds_sweep)
            for n, question in enumerate(world.questions):
                answer = None if n in answered else world.status_answer(question)
                if answer is not None:
                    answered.add(n)
                    self.post(path_of(result_url()), answer)
            self.invariants_hold()
            for payment_id in self.eligible("in_review"):
                self.resolve_review_from_statement(payment_id, confirm_receipt=False)
            for inbox_id in self.eligible("unmatched_callbacks"):
                push = world.push_for(CallbackInbox.objects.get(pk=inbox_id).correlation_id)
                if push is not None:
                    self.act(
                        services.callback_attach,
                        inbox_id=inbox_id,
                        payment_id=push.payment_id,
                        actor=ENV.staff,
                    )
            for payment_id in self.eligible("receipt_pending"):
                receipt = world.push_of_payment(payment_id).receipt
                self.act(
                    services.payment_receipt_enter, payment_id=payment_id, actor=ENV.staff, receipt=receipt
                )
            for refund_id in self.eligible("requested_refunds"):
                self.act(refunds.refund_approve, refund_id=refund_id, actor=ENV.checker)
            if world.requests and all(r.outcome for r in world.requests):
                for refund_id in self.eligible("unknown_refunds"):
                    self.resolve_refund_from_statement(refund_id, with_receipt=True)
            self.invariants_hold()
            if not any(
                self.any(name)
                for name in (
                    "open_attempts",
                    "in_review",
                    "receipt_pending",
                    "refunds_in_flight",
                    "requested_refunds",
                )
            ):
                break

        left = {
            name: self.eligible(name)
            for name in (
                "open_attempts",
                "in_review",
                "receipt_pending",
                "requested_refunds",
                "refunds_in_flight",
            )
            if self.any(name)
        }
        assert not left, f"still open after everything settled: {left}"
        over = {}
        for refund in self.snapshot["refunds"]:
            if refund["status"] == RefundStatus.OVER_REFUNDED:
                over[refund["payment_id"]] = over.get(refund["payment_id"], Decimal("0")) + refund["amount"]
        for payment in self.snapshot["payments"]:
            if payment["method"] != PaymentMethod.MPESA:
                continue
            pk = payment["id"]
            booked = payment["refunded_amount"] + over.get(pk, Decimal("0"))
            assert booked == world.paid_out(pk), (
                f"payment #{pk}: refunds booked {booked}, Safaricom paid out {world.paid_out(pk)}"
            )
            push = world.push_of_payment(pk)
            paid = push is not None and push.outcome == "paid"
            assert (payment["status"] in PAID_STATUSES) == paid, (
                f"payment #{pk} ended {payment['status']}; the customer {'paid' if paid else 'did not pay'}"
            )

    # --- the invariants ---
    @invariant()
    def invariants_hold(self):
        """After every step:

        1. Refunds: per payment, Payment.refunded_amount equals the sum of its succeeded refunds (an
           over_refunded refund is money that went out beyond the payment: it is not in refunded_amount,
           which the database keeps <= amount); it is at most what was paid (paid_amount and amount); what
           Safaricom really paid out is at most what it really took in; a refund counted as succeeded or
           over_refunded really paid out, and one failed or rejected did not (Daraja and staff being
           honest here). The status agrees: refunded <=> all of it, partially_refunded <=> some of it.
        2. At most one open attempt (pending/initiated) per order.
        3. One applied result per attempt: at most one `result_applied` event that changed its status. (A
           receipt filled in by a late callback after an STK Query completed the payment is recorded as a
           second `result_applied` event without a transition; tests/payments/test_services.py expects it.)
        4. Orders follow payments (orders/services.py: order_status_follow_payment, order_cancel,
           order_cancel_unpaid). CONFIRMED only with an accepting attempt: paid (completed,
           partially_refunded, refunded) or accepted cash on delivery (pending_delivery). With one, the
           order is CONFIRMED, or CANCELLED when that money arrived after the order was cancelled (a late
           payment staff resolved as paid: theirs to refund). PENDING has none, and a payment deadline.
        5. No M-Pesa receipt on two payments; no refund transaction id on two refunds.
        6. Trust: an M-Pesa payment is paid only if the customer really paid that push; no payment was
           completed by a callback on the unauthenticated path, and one completed on an STK Query answer (or
           still waiting for its receipt) had an answer that said paid; a receipt on a payment is the real
           one, never one that only a forged body claimed.
        7. Ways out: an initiated attempt has a CheckoutRequestID and a next query time; a review has a
           reason; a submitted refund has a next check time; no inbox row is left failed or unprocessed.
        """
        self.steps += 1
        world = self.world
        payments = list(Payment.objects.values())
        refund_rows = list(Refund.objects.values())
        orders = list(Order.objects.values("id", "status", "cancelled_at", "payment_due_at"))
        inbox = list(CallbackInbox.objects.values("id", "kind", "status", "error"))
        completions = list(
            PaymentEvent.objects.filter(to_status=PaymentStatus.COMPLETED).values(
                "payment_id", "payment__checkout_request_id", "source", "inbox__kind"
            )
        )
        self.snapshot = {"payments": payments, "refunds": refund_rows, "orders": orders, "inbox": inbox}
        applied_twice = list(
            PaymentEvent.objects.filter(kind=EventKind.RESULT_APPLIED)
            .exclude(to_status="")
            .values("payment_id")
            .annotate(n=Count("pk"))
            .filter(n__gt=1)
        )

        # 1. refunds
        refunds_of: dict[int, list[dict]] = {}
        for refund in refund_rows:
            refunds_of.setdefault(refund["payment_id"], []).append(refund)
        paid_out_by = {r.refund_id for r in world.requests if r.outcome == "paid"}
        for payment in payments:
            pk, refunded = payment["id"], payment["refunded_amount"]
            rows = refunds_of.get(pk, [])
            succeeded = sum(
                (r["amount"] for r in rows if r["status"] == RefundStatus.SUCCEEDED), Decimal("0")
            )
            assert refunded == succeeded, f"payment #{pk}: refunded {refunded}, its refunds say {succeeded}"
            assert refunded <= payment["amount"], f"payment #{pk} refunded beyond its amount"
            if refunded:
                assert payment["paid_amount"] is not None and refunded <= payment["paid_amount"], (
                    f"payment #{pk}: refunded {refunded} of {payment['paid_amount']} paid"
                )
            # All of it: the amount asked, or what arrived when staff took less as paid (refund_base).
            base = min(payment["amount"], payment["paid_amount"] or payment["amount"])
            if payment["status"] == PaymentStatus.REFUNDED:
                assert refunded == base, f"payment #{pk} refunded, yet {refunded} of {base}"
            elif payment["status"] == PaymentStatus.PARTIALLY_REFUNDED:
                assert 0 < refunded < base, f"payment #{pk} partially refunded, yet {refunded} of {base}"
            elif payment["status"] == PaymentStatus.COMPLETED:
                assert refunded == 0, f"payment #{pk} completed, yet refunded {refunded}"
            assert world.paid_out(pk) <= world.paid_in(pk), (
                f"payment #{pk}: Safaricom paid out {world.paid_out(pk)} of {world.paid_in(pk)} taken in"
            )
            for refund in rows:
                moved = refund["id"] in paid_out_by
                if refund["status"] in (RefundStatus.SUCCEEDED, RefundStatus.OVER_REFUNDED):
                    assert moved, f"refund #{refund['id']} is {refund['status']}; Safaricom paid nothing"
                if refund["status"] in (RefundStatus.FAILED, RefundStatus.REJECTED):
                    assert not moved, f"refund #{refund['id']} is {refund['status']}; Safaricom paid it out"

        # 2. one open attempt per order
        open_orders = [
            p["order_id"] for p in payments if p["status"] in (PaymentStatus.PENDING, PaymentStatus.INITIATED)
        ]
        assert len(open_orders) == len(set(open_orders)), f"orders with two open attempts: {open_orders}"

        # 3. one applied result per attempt
        assert not applied_twice, f"results applied twice: {applied_twice}"

        # 4. orders follow payments
        accepting = (*PAID_STATUSES, PaymentStatus.PENDING_DELIVERY)
        for order in orders:
            accepted = [p for p in payments if p["order_id"] == order["id"] and p["status"] in accepting]
            if order["status"] == OrderStatus.CONFIRMED:
                assert accepted, f"order #{order['id']} confirmed without a paid or COD attempt"
            elif order["status"] == OrderStatus.PENDING:
                assert not accepted, (
                    f"order #{order['id']} pending with {[(p['id'], p['status']) for p in accepted]}"
                )
                assert order["payment_due_at"] is not None, f"pending order #{order['id']} has no deadline"
            else:
                for p in accepted:
                    assert p["completed_at"] and p["completed_at"] >= order["cancelled_at"], (
                        f"order #{order['id']} cancelled with payment #{p['id']} {p['status']}"
                    )

        # 5. uniqueness of receipts
        receipts = [p["mpesa_receipt_number"] for p in payments if p["mpesa_receipt_number"]]
        assert len(receipts) == len(set(receipts)), receipts
        refund_receipts = [r["transaction_id"] for r in refund_rows if r["transaction_id"]]
        assert len(refund_receipts) == len(set(refund_receipts)), refund_receipts

        # 6. trust
        for payment in payments:
            if payment["method"] != PaymentMethod.MPESA:
                continue
            pk, receipt = payment["id"], payment["mpesa_receipt_number"]
            push = world.push_of_payment(pk)
            assert receipt not in self.forged_receipts, f"payment #{pk} carries forged receipt {receipt}"
            if receipt:
                assert push is not None and push.outcome == "paid" and receipt == push.receipt, (
                    f"payment #{pk} carries receipt {receipt}; the truth is {push}"
                )
            if payment["status"] in PAID_STATUSES:
                assert push is not None and push.outcome == "paid", (
                    f"payment #{pk} is {payment['status']}, but the customer never paid: {push}"
                )
                if payment["receipt_pending"]:
                    assert push.checkout_id in world.query_said_paid, (
                        f"payment #{pk} completed without a receipt, and no STK Query said it was paid"
                    )

        for completed in completions:
            pk = completed["payment_id"]
            assert completed["inbox__kind"] != InboxKind.STK_CALLBACK_LEGACY, (
                f"payment #{pk} completed by a callback on the unauthenticated path"
            )
            if completed["source"] == EventSource.QUERY:
                assert completed["payment__checkout_request_id"] in world.query_said_paid, (
                    f"payment #{pk} completed on an STK Query answer that never said paid"
                )

        # 7. ways out
        for payment in payments:
            pk = payment["id"]
            if payment["status"] == PaymentStatus.INITIATED:
                assert payment["checkout_request_id"], f"initiated payment #{pk} cannot be asked about"
                assert payment["next_query_at"] is not None, f"initiated payment #{pk} is never asked about"
            if payment["status"] == PaymentStatus.NEEDS_REVIEW:
                assert payment["review_reason"], f"payment #{pk} in review without a reason"
        for refund in refund_rows:
            if refund["status"] == RefundStatus.SUBMITTED:
                assert refund["next_check_at"] is not None, (
                    f"submitted refund #{refund['id']} is never checked"
                )
        bad_inbox = [row for row in inbox if row["status"] in (InboxStatus.FAILED, InboxStatus.RECEIVED)]
        assert not bad_inbox, f"inbox rows not processed: {bad_inbox}"


def setup_environment(settings, monkeypatch, django_user_model) -> None:
    """Settings, in-process tasks, users and products shared by every example of a test."""
    settings.MPESA_BASE_URL = FAKE_DARAJA_URL
    settings.MPESA_CALLBACK_BASE_URL = "https://shop.example"
    settings.MPESA_RESULT_BASE_URL = ""
    settings.MPESA_LEGACY_CALLBACK_ENABLED = True
    settings.MPESA_CALLBACK_ALLOWED_IPS = []
    settings.MPESA_B2C_SHORTCODE = "600000"
    settings.REFUND_APPROVAL_THRESHOLD = APPROVAL_THRESHOLD
    monkeypatch.setattr("django_q.tasks.async_task", run_task)

    ENV.owner = _user(django_user_model, "storefront")
    ENV.maker = _user(django_user_model, "maker", "payments.add_refund")
    ENV.checker = _user(
        django_user_model,
        "checker",
        "payments.add_refund",
        "payments.approve_refund",
        "payments.resolve_refund",
        "payments.query_payment",
    )
    ENV.staff = _user(
        django_user_model,
        "staff",
        "payments.review_payment",
        "payments.enter_receipt",
        "payments.collect_payment",
        "payments.attach_callback",
        "payments.query_payment",
        "orders.cancel_order",
    )
    ENV.products = [
        Product.objects.create(sku=f"PROP-{n}", name=f"Item {n}", price=price)
        for n, price in enumerate(PRICES)
    ]
    ENV.start = timezone.now().replace(microsecond=0)


@contextlib.contextmanager
def fake_daraja_http():
    """Daraja's endpoints answered by the current example's World."""

    def handler(name):
        return lambda request: getattr(ENV.world, name)(request)

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        ENV.mock = mock
        for method, path, name in (
            ("GET", "/oauth/v1/generate", "oauth"),
            ("POST", "/mpesa/stkpush/v1/processrequest", "stk_push"),
            ("POST", "/mpesa/stkpushquery/v1/query", "stk_query"),
            ("POST", "/mpesa/reversal/v1/request", "reversal"),
            ("POST", "/mpesa/b2c/v3/paymentrequest", "b2c"),
            ("POST", "/mpesa/transactionstatus/v1/query", "transaction_status"),
        ):
            mock.add_callback(method, FAKE_DARAJA_URL + path, callback=handler(name))
        yield mock


@pytest.mark.django_db
def test_money_invariants_hold_under_random_interleavings(settings, monkeypatch, django_user_model):
    setup_environment(settings, monkeypatch, django_user_model)
    with fake_daraja_http():
        run_state_machine_as_test(
            MoneyMachine,
            settings=hypothesis_settings(
                max_examples=EXAMPLES,
                stateful_step_count=STEPS,
                deadline=None,
                database=None,  # no .hypothesis/ directory in the checkout; a failure prints its seed
                # CI replays the same examples every run (a red run must be reproducible from its clone);
                # elsewhere each run draws new ones and the search keeps widening.
                derandomize=DERANDOMIZE,
                suppress_health_check=list(HealthCheck),
            ),
        )
    if STATS_WANTED:
        print(f"\nStates reached in {EXAMPLES} examples (of at most {STEPS} steps):")
        for name, count in sorted(REACHED.items()):
            print(f"{count:6d}  {name}")
