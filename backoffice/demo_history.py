"""Demo history that looks like a business: orders, attempts, events and refunds for the past N days.

Written in bulk (a million attempts take minutes, not hours), row for row and event for event what the
services write for the same story: an order with its contact snapshot and items; an attempt created
`pending`, its push accepted (`initiated`), then settled by a callback (or an STK Query, or the deadline)
with the same event kinds, sources, statuses and fields; retries as new attempts with the note on the
failed one; cash on delivery collected by staff; refunds with their request, approval, submission and
result. Nothing is sent: no messages are written for history, and no attempt is left in flight.

The mix: most attempts succeed; customers cancel, lack funds, mistype the PIN or cannot be reached; a
few system failures and expiries; one bad hour three days ago in which Safaricom fails; retries that
succeed; paydays, weekends and lunchtime and evening peaks; about one paid order in sixty refunded.
"""

import contextlib
import datetime as dt
import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import connections, models, transaction
from django.db.models import Max
from django.utils import timezone

from orders.models import Customer, Order, OrderItem, OrderStatus, Product
from payments.daraja.codes import meaning_of
from payments.models import (
    EventKind,
    EventSource,
    FailureClass,
    Payment,
    PaymentEvent,
    PaymentMethod,
    PaymentStatus,
    Refund,
    RefundEvent,
    RefundEventKind,
    RefundMethod,
    RefundStatus,
    ReviewReason,
    SettledBy,
)
from reports.periods import NAIROBI

CHUNK_ORDERS = 5_000
_PREPARED_FIELDS = (models.DateTimeField, models.DecimalField, models.JSONField)

# Relative volume by Nairobi hour: quiet nights, a lunchtime peak and a bigger evening one.
HOURLY = [0.2, 0.1, 0.05, 0.05, 0.05, 0.1, 0.3, 0.7, 1.0, 1.1, 1.2, 1.3,
          1.6, 1.5, 1.2, 1.1, 1.2, 1.4, 1.7, 1.9, 1.8, 1.4, 0.9, 0.5]  # fmt: skip
WEEKDAY = [0.9, 0.95, 1.0, 1.0, 1.1, 1.25, 1.15]  # Monday first

# What happens to a prompt, in a normal hour: (outcome, result code, weight).
OUTCOMES = [
    ("paid", "0", 80.0),
    ("failed", "1032", 8.0),  # cancelled on the phone
    ("failed", "1", 4.0),  # insufficient balance
    ("failed", "1037", 2.5),  # unreachable
    ("failed", "2001", 2.0),  # wrong PIN
    ("failed", "1001", 0.6),  # another transaction in progress
    ("failed", "4", 0.3),  # over the daily limit
    ("expired", "", 1.2),
    ("failed", "1025", 0.4),
    ("failed", "26", 0.3),
    ("review", "0", 0.2),  # paid another amount
]
# The bad hour: Safaricom fails most prompts.
BAD_HOUR_OUTCOMES = [
    ("paid", "0", 35.0),
    ("failed", "1025", 30.0),
    ("failed", "26", 20.0),
    ("push_down", "", 15.0),
]
RETRY_CHANCE = {"1032": 0.5, "1": 0.4, "1037": 0.45, "2001": 0.6, "1001": 0.5}
SETTLED_BY_QUERY = 0.06  # the callback was lost; the sweeper's STK Query settled it
LATE_RECEIPT = 0.8  # of those, a late callback brought the receipt
COD_SHARE = 0.1
REFUND_SHARE = 1 / 60

FIRST_NAMES = ["Amina", "Brian", "Wanjiku", "Otieno", "Achieng", "Kamau", "Njeri", "Kiprop", "Mwangi",
               "Atieno", "Wafula", "Chebet", "Mutua", "Nyambura", "Omondi", "Jeptoo", "Baraka", "Zawadi"]  # fmt: skip
LAST_NAMES = ["Wanjiru", "Odhiambo", "Kariuki", "Mutiso", "Kiptoo", "Njoroge", "Owino", "Chepkoech",
              "Muthoni", "Onyango", "Kibet", "Wambui", "Ochieng", "Nduta"]  # fmt: skip
CITIES = ["Nairobi", "Mombasa", "Kisumu", "Nakuru", "Eldoret", "Thika", "Nyeri", "Machakos"]
_RECEIPT_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DAY_CHARS = "123456789ABCDEFGHIJKLMNOPQRSTUV"


@dataclass
class HistoryCounts:
    orders: int = 0
    attempts: int = 0
    events: int = 0
    refunds: int = 0


@contextlib.contextmanager
def _timestamps_as_given(*models) -> Iterator[None]:
    """Let bulk_create keep the times we give (auto_now_add/auto_now would overwrite them with now)."""
    saved = []
    for model in models:
        for model_field in model._meta.concrete_fields:
            if getattr(model_field, "auto_now_add", False) or getattr(model_field, "auto_now", False):
                saved.append((model_field, model_field.auto_now_add, model_field.auto_now))
                model_field.auto_now_add = model_field.auto_now = False
    try:
        yield
    finally:
        for model_field, auto_now_add, auto_now in saved:
            model_field.auto_now_add, model_field.auto_now = auto_now_add, auto_now


def _receipt(moment: dt.datetime, number: int) -> str:
    """Safaricom's shape (year, month and day letters, then 7 characters), unique by `number`."""
    local = moment.astimezone(NAIROBI)
    prefix = f"{chr(ord('A') + (local.year - 2006) % 26)}{chr(ord('A') + local.month - 1)}{_DAY_CHARS[local.day - 1]}"
    scrambled = (number * 1_299_709 + 77_777) % 36**7  # a bijection: distinct numbers, distinct receipts
    chars = []
    for _ in range(7):
        scrambled, digit = divmod(scrambled, 36)
        chars.append(_RECEIPT_CHARS[digit])
    return prefix + "".join(chars)


def _insert(model, objects: list) -> None:
    """INSERT many rows with one prepared statement, giving each object its primary key.

    bulk_create compiles SQL value by value, which dominates at millions of rows; this prepares each value
    the same way (Field.get_db_prep_save) and hands the rows to the driver's executemany. Keys come from
    the table's own sequence on PostgreSQL, and after the largest one inside this write transaction on
    SQLite (which holds the database's only write lock).
    """
    if not objects:
        return
    database = connections["default"]  # the wrapper itself: the `connection` proxy costs a lookup per use
    meta = model._meta
    table = database.ops.quote_name(meta.db_table)
    pk_column = meta.pk.column
    with database.cursor() as cursor:
        if database.vendor == "postgresql":
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                [meta.db_table, pk_column, len(objects)],
            )
            keys = [row[0] for row in cursor.fetchall()]
        else:
            cursor.execute(f"SELECT COALESCE(MAX({database.ops.quote_name(pk_column)}), 0) FROM {table}")  # noqa: S608
            first = cursor.fetchone()[0] + 1
            keys = range(first, first + len(objects))
        fields = meta.concrete_fields
        # Values the driver takes as they are (text, numbers, booleans, keys) skip Django's preparation.
        prepare = [
            (field.attname, field.get_db_prep_save if isinstance(field, _PREPARED_FIELDS) else None)
            for field in fields
        ]
        columns = ", ".join(database.ops.quote_name(field.column) for field in fields)
        marks = ", ".join(["%s"] * len(fields))
        rows = []
        for key, obj in zip(keys, objects, strict=True):
            obj.pk = key
            obj._state.adding = False
            values = obj.__dict__
            rows.append(
                [values[name] if how is None else how(values[name], database) for name, how in prepare]
            )
        cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)  # noqa: S608


@dataclass
class _Chunk:
    """Everything one batch of orders writes, built in memory and inserted in dependency order."""

    orders: list[Order] = field(default_factory=list)
    items: list[tuple[int, OrderItem]] = field(default_factory=list)
    # per order: its attempts as (Payment, [event specs], [refund specs])
    attempts: list[tuple[int, Payment, list[dict], list[dict]]] = field(default_factory=list)


class HistoryWriter:
    def __init__(self, *, owner, staff, now: dt.datetime, seed: int = 7):
        self.owner = owner
        self.staff = staff
        self.now = now
        self.random = random.Random(seed)  # noqa: S311 - demo data, not secrets
        # Receipts, CheckoutRequestIDs and refund keys are made from these numbers: start past every payment
        # there is, so history written again later never repeats one.
        self.numbers = itertools.count((Payment.objects.aggregate(last=Max("pk"))["last"] or 0) + 1)
        self.products = list(Product.objects.filter(is_active=True).order_by("pk")) or []
        self.counts = HistoryCounts()
        self.references: set[str] = set(Order.objects.values_list("reference", flat=True))
        self.customers: list[Customer] = []

    # --- volume ---------------------------------------------------------------------------------
    def moments(self, *, days: int, attempts: int) -> list[dt.datetime]:
        """When each order is placed: `attempts` spread over the past `days` with the seasonality above."""
        today = self.now.astimezone(NAIROBI).date()
        first = today - dt.timedelta(days=days - 1)
        slots = []
        for offset in range(days):
            day = first + dt.timedelta(days=offset)
            payday = 1.3 if day.day >= 25 or day.day <= 2 else 1.0
            trend = 0.85 + 0.3 * offset / max(days - 1, 1)
            for hour in range(24):
                start = dt.datetime.combine(day, dt.time(hour), tzinfo=NAIROBI)
                if start >= self.now:
                    continue
                slots.append((start, HOURLY[hour] * WEEKDAY[day.weekday()] * payday * trend))
        if not slots:
            return []
        # A retry is an attempt too: fewer orders than attempts.
        orders = max(1, round(attempts / 1.07))
        weights = [weight * self.random.uniform(0.85, 1.15) for _, weight in slots]
        picked = self.random.choices([start for start, _ in slots], weights=weights, k=orders)
        moments = []
        for start in picked:
            moment = start + dt.timedelta(seconds=self.random.uniform(0, 3599))
            moments.append(min(moment, self.now - dt.timedelta(minutes=30)))
        return sorted(moments)

    def bad_hour(self) -> dt.datetime:
        day = (self.now - dt.timedelta(days=3)).astimezone(NAIROBI).date()
        return dt.datetime.combine(day, dt.time(14), tzinfo=NAIROBI)

    # --- people and things ------------------------------------------------------------------------
    def ensure_customers(self, count: int) -> None:
        existing = list(Customer.objects.exclude(phone="").order_by("pk")[:count])
        phones = {customer.phone for customer in existing}
        new = []
        while len(existing) + len(new) < count:
            phone = f"2547{self.random.randrange(10**8):08d}"
            if phone in phones:
                continue
            phones.add(phone)
            first, last = self.random.choice(FIRST_NAMES), self.random.choice(LAST_NAMES)
            new.append(
                Customer(
                    full_name=f"{first} {last}",
                    phone=phone,
                    email=f"{first}.{last}{len(new)}@example.com".lower()
                    if self.random.random() < 0.35
                    else "",
                    language="sw" if self.random.random() < 0.3 else "en",
                    created_at=self.now - dt.timedelta(days=400),
                )
            )
        with _timestamps_as_given(Customer):
            Customer.objects.bulk_create(new, batch_size=2_000)
        self.customers = existing + new

    def reference(self) -> str:
        alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
        while True:
            reference = "".join(self.random.choice(alphabet) for _ in range(8))
            if reference not in self.references:
                self.references.add(reference)
                return reference

    # --- one order's story --------------------------------------------------------------------------
    def outcome(self, moment: dt.datetime) -> tuple[str, str]:
        bad = self.bad_hour()
        table = BAD_HOUR_OUTCOMES if bad <= moment < bad + dt.timedelta(hours=1) else OUTCOMES
        outcome, code, _weight = self.random.choices(table, weights=[row[2] for row in table])[0]
        return outcome, code

    def order_story(self, chunk: _Chunk, moment: dt.datetime) -> None:
        customer = self.random.choice(self.customers)
        lines = self.random.choices(
            self.products[1:] or self.products, k=self.random.choice((1, 1, 1, 2, 2, 3))
        )
        total = Decimal("0")
        items = []
        for product in lines:
            quantity = self.random.choice((1, 1, 1, 2, 3))
            line_total = product.price * quantity
            total += line_total
            items.append(
                OrderItem(
                    product=product,
                    product_name=product.name,
                    quantity=quantity,
                    unit_price=product.price,
                    line_total=line_total,
                )
            )
        cod = self.random.random() < COD_SHARE
        order = Order(
            reference=self.reference(),
            owner=self.owner,
            customer=customer,
            status=OrderStatus.PENDING,
            payment_method=PaymentMethod.COD if cod else PaymentMethod.MPESA,
            total=total,
            currency="KES",
            shipping_full_name=customer.full_name,
            shipping_address=f"{self.random.randint(1, 400)} {self.random.choice(('Moi', 'Kenyatta', 'Ngong', 'Tom Mboya'))} Road",
            shipping_city=self.random.choice(CITIES),
            shipping_phone=customer.phone,
            contact_name=customer.full_name,
            contact_phone=customer.phone,
            contact_email=customer.email,
            contact_language=customer.language,
            payment_due_at=None if cod else moment + dt.timedelta(hours=24),
            created_at=moment,
            updated_at=moment,
        )
        index = len(chunk.orders)
        chunk.orders.append(order)
        chunk.items.extend((index, item) for item in items)
        amount = total.quantize(Decimal("1"), rounding="ROUND_CEILING")
        if cod:
            self.cod_story(chunk, index, order, amount, moment)
            return
        attempt_at = moment
        while True:
            payment, events, refunds, outcome, code = self.attempt_story(
                order, amount, attempt_at, customer.phone
            )
            chunk.attempts.append((index, payment, events, refunds))
            if outcome != "failed" or self.random.random() >= RETRY_CHANCE.get(code, 0):
                break
            attempt_at = payment.failed_at + dt.timedelta(minutes=self.random.uniform(2, 10))
            if attempt_at >= self.now - dt.timedelta(minutes=30):
                break
            events.append(
                {"kind": EventKind.NOTE, "source": EventSource.API, "at": attempt_at, "retried": True}
            )
        self.settle_order(order, [p for _i, p, _e, _r in chunk.attempts if _i == index])

    def settle_order(self, order: Order, attempts: list[Payment]) -> None:
        paid = next((p for p in attempts if p.status in (*_PAID, PaymentStatus.PENDING_DELIVERY)), None)
        if paid is not None:
            order.status = OrderStatus.CONFIRMED
            order.confirmed_at = paid.completed_at or paid.created_at
        elif all(p.status == PaymentStatus.FAILED for p in attempts) and order.payment_due_at <= self.now:
            order.status = OrderStatus.CANCELLED
            order.cancelled_at = order.payment_due_at
            order.cancel_reason = "The payment window closed without a completed payment."
        order.updated_at = max(p.completed_at or p.failed_at or p.created_at for p in attempts)

    def attempt_story(self, order: Order, amount: Decimal, at: dt.datetime, phone: str):
        number = next(self.numbers)
        outcome, code = self.outcome(at)
        checkout = f"ws_CO_{at.astimezone(NAIROBI):%d%m%Y%H%M%S}{number:07d}{phone[-9:]}"
        payment = Payment(
            order=order, method=PaymentMethod.MPESA, amount=amount, currency="KES", phone=phone,
            account_reference=order.reference, status=PaymentStatus.PENDING, created_at=at, updated_at=at,
        )  # fmt: skip
        events = [
            {"kind": EventKind.CREATED, "source": EventSource.API, "at": at, "to": PaymentStatus.PENDING}
        ]
        pushed = at + dt.timedelta(seconds=self.random.uniform(0.8, 2.5))
        if outcome == "push_down":
            payment.status, payment.failed_at = PaymentStatus.FAILED, pushed
            payment.result_code, payment.failure_class = "500.003.1001", FailureClass.SYSTEM
            payment.result_desc = "Internal Server Error"
            payment.settled_by, payment.updated_at = SettledBy.PUSH, pushed
            events.append({"kind": EventKind.PUSH_REJECTED, "source": EventSource.API, "at": pushed,
                           "from": PaymentStatus.PENDING, "to": PaymentStatus.FAILED,
                           "message": "Internal Server Error"})  # fmt: skip
            return payment, events, [], "failed", "500.003.1001"
        payment.checkout_request_id = checkout
        payment.merchant_request_id = f"{number:05d}-{self.random.randrange(10**8):08d}-1"
        payment.initiated_at = pushed
        events.append({"kind": EventKind.PUSH_ACCEPTED, "source": EventSource.API, "at": pushed,
                       "from": PaymentStatus.PENDING, "to": PaymentStatus.INITIATED,
                       "message": "Success. Request accepted for processing",
                       "data": {"MerchantRequestID": payment.merchant_request_id, "CheckoutRequestID": checkout}})  # fmt: skip
        by_query = self.random.random() < SETTLED_BY_QUERY
        answered = pushed + dt.timedelta(seconds=self.random.lognormvariate(3.0, 0.45))
        if by_query:
            answered = pushed + dt.timedelta(seconds=self.random.uniform(35, 240))
        source = EventSource.QUERY if by_query else EventSource.CALLBACK
        refunds = []
        if outcome == "expired":
            deadline = pushed + dt.timedelta(seconds=300)
            payment.query_count = 4
            for n in range(3):
                events.append({"kind": EventKind.QUERY_PENDING, "source": EventSource.QUERY,
                               "at": pushed + dt.timedelta(seconds=30 * 2**n),
                               "message": "The transaction is being processed"})  # fmt: skip
            payment.status, payment.failed_at, payment.updated_at = PaymentStatus.FAILED, deadline, deadline
            payment.failure_class, payment.settled_by = FailureClass.EXPIRED, SettledBy.SYSTEM
            payment.result_desc = "The payment request expired before it was answered."
            events.append({"kind": EventKind.EXPIRED, "source": EventSource.SYSTEM, "at": deadline,
                           "from": PaymentStatus.INITIATED, "to": PaymentStatus.FAILED,
                           "message": "No final answer 300 s after the push; 4 STK Queries asked."})  # fmt: skip
            return payment, events, refunds, "failed", ""
        payment.settled_by = SettledBy.QUERY if by_query else SettledBy.CALLBACK
        payment.result_code = code
        summary = {"ResultCode": code, "ResultDesc": "", "MpesaReceiptNumber": "", "Amount": None}
        if outcome == "failed":
            meaning = meaning_of(code)
            payment.status, payment.failed_at, payment.updated_at = PaymentStatus.FAILED, answered, answered
            payment.failure_class, payment.result_desc = meaning.failure_class, meaning.label
            summary["ResultDesc"] = meaning.label
            events.append({"kind": EventKind.RESULT_APPLIED, "source": source, "at": answered,
                           "from": PaymentStatus.INITIATED, "to": PaymentStatus.FAILED,
                           "message": meaning.label, "data": summary})  # fmt: skip
            return payment, events, refunds, "failed", code
        receipt = _receipt(answered, number)
        payment.result_desc = "The service request is processed successfully."
        summary.update(ResultDesc=payment.result_desc, MpesaReceiptNumber=receipt, Amount=str(amount))
        if outcome == "review":
            paid = amount - 1 if amount > 1 else amount + 1
            payment.status, payment.review_reason = PaymentStatus.NEEDS_REVIEW, ReviewReason.AMOUNT_MISMATCH
            payment.paid_amount, payment.mpesa_receipt_number = paid, receipt
            payment.transaction_date, payment.updated_at, payment.settled_by = answered, answered, ""
            summary["Amount"] = str(paid)
            events.append({"kind": EventKind.NEEDS_REVIEW, "source": EventSource.CALLBACK, "at": answered,
                           "from": PaymentStatus.INITIATED, "to": PaymentStatus.NEEDS_REVIEW,
                           "message": f"Paid KES {paid}, expected KES {amount}.", "data": summary})  # fmt: skip
            return payment, events, refunds, "review", code
        payment.status, payment.completed_at, payment.updated_at = PaymentStatus.COMPLETED, answered, answered
        payment.paid_amount = amount
        if by_query:
            payment.receipt_pending = True
            events.append({"kind": EventKind.RESULT_APPLIED, "source": EventSource.QUERY, "at": answered,
                           "from": PaymentStatus.INITIATED, "to": PaymentStatus.COMPLETED,
                           "message": "Completed on STK Query; receipt number to follow.",
                           "data": {**summary, "MpesaReceiptNumber": "", "Amount": None}})  # fmt: skip
            late = answered + dt.timedelta(minutes=self.random.uniform(5, 90))
            if self.random.random() < LATE_RECEIPT and late < self.now:
                payment.receipt_pending = False
                payment.mpesa_receipt_number, payment.transaction_date = receipt, answered
                events.append({"kind": EventKind.RESULT_APPLIED, "source": EventSource.CALLBACK, "at": late,
                               "message": f"Receipt {receipt} filled in", "data": summary})  # fmt: skip
        else:
            payment.mpesa_receipt_number, payment.transaction_date = receipt, answered
            events.append({"kind": EventKind.RESULT_APPLIED, "source": EventSource.CALLBACK, "at": answered,
                           "from": PaymentStatus.INITIATED, "to": PaymentStatus.COMPLETED,
                           "message": f"Paid, receipt {receipt}", "data": summary})  # fmt: skip
        if payment.mpesa_receipt_number and self.random.random() < REFUND_SHARE:
            refunds.append(self.refund_story(payment, events, number))
        return payment, events, refunds, "paid", code

    def refund_story(self, payment: Payment, events: list[dict], number: int) -> dict:
        requested = payment.completed_at + dt.timedelta(hours=self.random.uniform(2, 72))
        full = self.random.random() < 0.75
        amount = payment.amount if full else max(Decimal("1"), (payment.amount / 2).quantize(Decimal("1")))
        done = requested + dt.timedelta(minutes=self.random.uniform(1, 20))
        if done >= self.now:
            return {}
        succeeded = self.random.random() < 0.95
        transaction_id = _receipt(done, 10**9 + number) if succeeded else ""
        if succeeded:
            refunded = amount
            payment.refunded_amount = refunded
            target = (
                PaymentStatus.REFUNDED if refunded >= payment.amount else PaymentStatus.PARTIALLY_REFUNDED
            )
            events.append({"kind": EventKind.REFUNDED, "source": EventSource.RESULT, "at": done,
                           "from": PaymentStatus.COMPLETED, "to": target,
                           "message": f"Refund #{{refund}}: KES {amount} returned, receipt {transaction_id}",
                           "data": {"TransactionID": transaction_id, "refunded_amount": str(refunded)}})  # fmt: skip
            payment.status, payment.updated_at = target, done
        return {
            "amount": amount,
            "method": RefundMethod.REVERSAL if full else RefundMethod.B2C,
            "requested": requested,
            "done": done,
            "succeeded": succeeded,
            "transaction_id": transaction_id,
            "key": f"demo-refund-{number}",
        }

    def cod_story(self, chunk: _Chunk, index: int, order: Order, amount: Decimal, at: dt.datetime) -> None:
        payment = Payment(
            order=order, method=PaymentMethod.COD, amount=amount, currency="KES", phone=order.contact_phone,
            account_reference=order.reference, status=PaymentStatus.PENDING_DELIVERY, created_at=at, updated_at=at,
        )  # fmt: skip
        events = [{"kind": EventKind.CREATED, "source": EventSource.API, "at": at,
                   "to": PaymentStatus.PENDING_DELIVERY}]  # fmt: skip
        delivered = at + dt.timedelta(hours=self.random.uniform(20, 72))
        chance = self.random.random()
        if delivered < self.now and chance < 0.9:
            payment.status, payment.completed_at, payment.updated_at = (
                PaymentStatus.COMPLETED,
                delivered,
                delivered,
            )
            payment.paid_amount, payment.settled_by = amount, SettledBy.STAFF
            events.append({"kind": EventKind.COLLECTED, "source": EventSource.ADMIN, "at": delivered,
                           "from": PaymentStatus.PENDING_DELIVERY, "to": PaymentStatus.COMPLETED,
                           "message": "Cash collected on delivery", "actor": self.staff})  # fmt: skip
        elif delivered < self.now:
            reason = "Cash not collected: customer refused the parcel"
            payment.status, payment.failed_at, payment.updated_at = PaymentStatus.FAILED, delivered, delivered
            payment.result_desc, payment.settled_by = reason, SettledBy.STAFF
            events.append({"kind": EventKind.NOT_COLLECTED, "source": EventSource.ADMIN, "at": delivered,
                           "from": PaymentStatus.PENDING_DELIVERY, "to": PaymentStatus.FAILED,
                           "message": reason, "actor": self.staff})  # fmt: skip
        chunk.attempts.append((index, payment, events, []))
        order.status = OrderStatus.CONFIRMED
        order.confirmed_at = at
        if payment.status == PaymentStatus.FAILED:
            order.status, order.confirmed_at = OrderStatus.CANCELLED, None
            order.cancelled_at = payment.failed_at + dt.timedelta(hours=24)
            order.cancel_reason = "The payment window closed without a completed payment."
        order.updated_at = payment.updated_at

    # --- writing --------------------------------------------------------------------------------------
    @transaction.atomic
    def write(self, chunk: _Chunk) -> None:
        _insert(Order, chunk.orders)
        for index, item in chunk.items:
            item.order = chunk.orders[index]
        _insert(OrderItem, [item for _i, item in chunk.items])
        for index, payment, _events, _refunds in chunk.attempts:
            payment.order = chunk.orders[index]
        _insert(Payment, [payment for _i, payment, _e, _r in chunk.attempts])
        refund_events: list[RefundEvent] = []
        made = self.write_refunds(
            [(payment, spec) for _i, payment, _e, specs in chunk.attempts for spec in specs if spec],
            refund_events,
        )
        payment_events = []
        for position, (_index, payment, events, _refunds) in enumerate(chunk.attempts):
            for event in events:
                message = event.get("message", "")
                if event.get("retried"):
                    retry = chunk.attempts[position + 1][1]  # the next attempt of the same order
                    message = f"Retried as payment #{retry.pk}"
                message = message.replace("{refund}", str(made.get(payment.pk, "")))
                payment_events.append(self.event(payment, event, message))
        _insert(PaymentEvent, payment_events)
        _insert(RefundEvent, refund_events)
        self.counts.orders += len(chunk.orders)
        self.counts.attempts += len(chunk.attempts)
        self.counts.events += len(payment_events) + len(refund_events)
        self.counts.refunds += len(made)

    def event(self, payment: Payment, spec: dict, message: str) -> PaymentEvent:
        return PaymentEvent(
            payment=payment,
            kind=spec["kind"],
            source=spec["source"],
            actor=spec.get("actor"),
            from_status=spec.get("from", ""),
            to_status=spec.get("to", ""),
            message=message[:512],
            data=spec.get("data", {}),
            created_at=spec["at"],
        )

    def write_refunds(self, refunds: list[tuple[Payment, dict]], refund_events: list[RefundEvent]) -> dict:
        rows = []
        for payment, spec in refunds:
            status = RefundStatus.SUCCEEDED if spec["succeeded"] else RefundStatus.FAILED
            rows.append(
                Refund(
                    payment=payment, status=status, method=spec["method"], amount=spec["amount"], currency="KES",
                    reason="Item out of stock", requested_by=self.staff, approved_by=None,
                    idempotency_key=spec["key"], original_receipt=payment.mpesa_receipt_number or "",
                    originator_conversation_id=spec["key"], conversation_id=f"AG_{spec['requested']:%Y%m%d}_{spec['key'][-12:]:0>20}",
                    transaction_id=spec["transaction_id"], result_code="0" if spec["succeeded"] else "R000002",
                    result_desc="The service request is processed successfully." if spec["succeeded"]
                    else "The OriginalTransactionID is invalid.",
                    created_at=spec["requested"], updated_at=spec["done"], approved_at=spec["requested"],
                    submitted_at=spec["requested"], accepted_at=spec["requested"], completed_at=spec["done"],
                )
            )  # fmt: skip
        _insert(Refund, rows)
        made = {}
        for refund in rows:
            made[refund.payment_id] = refund.pk
            start = refund.created_at
            trail = [
                (RefundEventKind.REQUESTED, EventSource.ADMIN, "", RefundStatus.REQUESTED, "Requested"),
                (RefundEventKind.APPROVED, EventSource.ADMIN, RefundStatus.REQUESTED, RefundStatus.APPROVED,
                 "Within the approval threshold"),
                (RefundEventKind.SUBMITTING, EventSource.SYSTEM, RefundStatus.APPROVED, RefundStatus.SUBMITTING,
                 "Recorded before sending to Daraja"),
                (RefundEventKind.ACCEPTED, EventSource.SYSTEM, RefundStatus.SUBMITTING, RefundStatus.SUBMITTED,
                 "Accept the service request successfully."),
            ]  # fmt: skip
            for kind, source, from_status, to_status, message in trail:
                refund_events.append(
                    RefundEvent(refund=refund, kind=kind, source=source, from_status=from_status,
                                to_status=to_status, message=message, created_at=start,
                                actor=self.staff if source == EventSource.ADMIN else None)
                )  # fmt: skip
            refund_events.append(
                RefundEvent(refund=refund, kind=RefundEventKind.RESULT_APPLIED, source=EventSource.RESULT,
                            from_status=RefundStatus.SUBMITTED, to_status=refund.status, message=refund.result_desc,
                            data={"ResultCode": refund.result_code, "TransactionID": refund.transaction_id},
                            created_at=refund.completed_at)
            )  # fmt: skip
        return made

    def run(
        self, *, days: int, attempts: int, progress: Callable[[int], None] | None = None
    ) -> HistoryCounts:
        moments = self.moments(days=days, attempts=attempts)
        self.ensure_customers(max(50, min(200_000, len(moments) // 3)))
        with _timestamps_as_given(Order, Payment, PaymentEvent, Refund, RefundEvent):
            for start in range(0, len(moments), CHUNK_ORDERS):
                chunk = _Chunk()
                for moment in moments[start : start + CHUNK_ORDERS]:
                    self.order_story(chunk, moment)
                self.write(chunk)
                if progress:
                    progress(len(chunk.attempts))
        return self.counts


_PAID = (PaymentStatus.COMPLETED, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED)


def history_present(owner) -> bool:
    """Demo history was written before (orders of the demo storefront older than today)."""
    today = timezone.now().astimezone(NAIROBI).replace(hour=0, minute=0, second=0, microsecond=0)
    return Order.objects.filter(owner=owner, created_at__lt=today).exists()
