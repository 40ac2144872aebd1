"""A hand-built history whose every figure is worked out by hand below, edges included.

Period under test: 10 and 11 November 2026, Nairobi days (UTC 2026-11-09 21:00 to 2026-11-11 21:00).

| order | attempt | created (EAT)        | outcome                                              |
| O1    | A1      | 10 Nov 08:00         | failed 1032 (customer) by callback, answered in 18 s  |
| O1    | A2      | 10 Nov 08:05         | retry: paid 100 by callback in 28 s; refunded 100 on 11 Nov 23:59:59 |
| O2    | A3      | 10 Nov 23:59:59      | failed 26 (system) by query in 45 s (last second of the day) |
| O3    | A4      | 11 Nov 00:00:00      | in flight (first second of the next day)             |
| O4    | A5      | 09 Nov 23:59:59      | before the period; paid 50 at 10 Nov 00:00:10 (money in the period), refund of 20 requested in the period, in flight |
| O5    | A6      | 11 Nov 10:00         | expired (no answer by the deadline)                  |
| O6    | A7      | 11 Nov 11:00         | under review (amount differs)                        |
| O7    | A8      | 11 Nov 12:00         | paid 200 by STK Query in 60 s; refunded 50 on 12 Nov 00:00:00 (after the period) |
| O8    | C1      | 10 Nov 09:00         | cash on delivery, 300 awaiting collection            |
| O9    | C2      | 11 Nov 14:00         | cash on delivery, 150 collected 11 Nov 15:00 by staff |

Expected, by hand:
- attempts 7 (A1 A2 A3 A4 A6 A7 A8): completed 2, failed 3, in flight 1, under review 1;
- attempt success 2 / (2 + 3) = 0.4; technical success 2 / (2 + 2) = 0.5 (A1 is the customer's);
- orders with an M-Pesa attempt 6 (O1 O2 O3 O5 O6 O7), paid 2 (O1 once, O7): conversion 1/3;
- settled by callback 2 (A1 A2), query 2 (A3 A8), system 1 (A6);
- time to result 18, 28, 45, 60 s: p50 28, p90 60;
- collected 100 + 50 + 200 + 150 = 500.00; refunded 100.00; net 400.00; refunds in flight 20.00;
  cash awaiting 300.00;
- 10 Nov: 3 attempts, 1 completed, 2 failed, collected 150.00; 11 Nov: 4, 1, 1, 350.00, refunded 100.00.
"""

import datetime as dt
import itertools
from decimal import Decimal
from zoneinfo import ZoneInfo

from orders.models import Customer, Order, OrderStatus
from payments.models import Payment, Refund, RefundMethod, RefundStatus

EAT = ZoneInfo("Africa/Nairobi")
_numbers = itertools.count(1)


def eat(day: int, hour: int = 0, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, second, tzinfo=EAT)


def order(owner, *, total: str = "100", status: str = OrderStatus.PENDING) -> Order:
    customer, _ = Customer.objects.get_or_create(phone="254708374149", defaults={"full_name": "Amina"})
    return Order.objects.create(
        owner=owner,
        customer=customer,
        total=Decimal(total),
        status=status,
        shipping_full_name="Amina",
        shipping_address="1 Moi Avenue",
        shipping_city="Nairobi",
    )


def attempt(
    for_order: Order,
    *,
    created: dt.datetime,
    status: str,
    amount: str = "100",
    method: str = "mpesa",
    took: int | None = None,
    settled_by: str = "",
    result_code: str = "",
    failure_class: str = "",
    completed: dt.datetime | None = None,
    refunded: str = "0",
) -> Payment:
    """A payment row with the timestamps a real one would have (created_at is set after the insert)."""
    number = next(_numbers)
    initiated = created + dt.timedelta(seconds=2) if method == "mpesa" else None
    finished = initiated + dt.timedelta(seconds=took) if took is not None else completed
    paid = status in ("completed", "partially_refunded", "refunded")
    payment = Payment.objects.create(
        order=for_order,
        method=method,
        status=status,
        amount=Decimal(amount),
        phone="254708374149",
        checkout_request_id=f"ws_CO_DATASET{number:08d}" if method == "mpesa" else None,
        mpesa_receipt_number=f"SDS{number:07d}" if paid and method == "mpesa" else None,
        paid_amount=Decimal(amount) if paid else None,
        result_code=result_code,
        failure_class=failure_class,
        settled_by=settled_by,
        refunded_amount=Decimal(refunded),
        initiated_at=initiated,
        completed_at=finished if paid else None,
        failed_at=finished if status == "failed" else None,
    )
    Payment.objects.filter(pk=payment.pk).update(created_at=created)
    payment.refresh_from_db()
    return payment


def refund(payment: Payment, *, amount: str, status: str, created: dt.datetime, completed=None) -> Refund:
    number = next(_numbers)
    made = Refund.objects.create(
        payment=payment,
        status=status,
        method=RefundMethod.REVERSAL if Decimal(amount) == payment.amount else RefundMethod.B2C,
        amount=Decimal(amount),
        reason="Dataset",
        idempotency_key=f"dataset-refund-{number}",
        original_receipt=payment.mpesa_receipt_number or "",
        transaction_id=f"SRF{number:07d}" if status == RefundStatus.SUCCEEDED else "",
        completed_at=completed,
    )
    Refund.objects.filter(pk=made.pk).update(created_at=created)
    return made


def build(owner) -> dict[str, Payment]:
    o1, o2, o3, o4, o5, o6, o7 = (order(owner) for _ in range(7))
    a = {
        "A1": attempt(o1, created=eat(10, 8), status="failed", took=18, settled_by="callback",
                      result_code="1032", failure_class="customer"),
        "A2": attempt(o1, created=eat(10, 8, 5), status="refunded", took=28, settled_by="callback",
                      refunded="100"),
        "A3": attempt(o2, created=eat(10, 23, 59, 59), status="failed", took=45, settled_by="query",
                      result_code="26", failure_class="system"),
        "A4": attempt(o3, created=eat(11), status="initiated"),
        "A5": attempt(o4, created=eat(9, 23, 59, 59), status="completed", amount="50",
                      completed=eat(10, 0, 0, 10), settled_by="callback"),
        "A6": attempt(o5, created=eat(11, 10), status="failed", completed=eat(11, 10, 5), settled_by="system",
                      failure_class="expired"),
        "A7": attempt(o6, created=eat(11, 11), status="needs_review"),
        "A8": attempt(o7, created=eat(11, 12), status="partially_refunded", amount="200", took=60,
                      settled_by="query", refunded="50"),
    }  # fmt: skip
    a["C1"] = attempt(order(owner, total="300"), created=eat(10, 9), status="pending_delivery", amount="300",
                      method="cod")  # fmt: skip
    a["C2"] = attempt(order(owner, total="150"), created=eat(11, 14), status="completed", amount="150",
                      method="cod", completed=eat(11, 15), settled_by="staff")  # fmt: skip
    refund(
        a["A2"],
        amount="100",
        status=RefundStatus.SUCCEEDED,
        created=eat(11, 9),
        completed=eat(11, 23, 59, 59),
    )
    refund(a["A8"], amount="50", status=RefundStatus.SUCCEEDED, created=eat(11, 13), completed=eat(12))
    refund(a["A5"], amount="20", status=RefundStatus.APPROVED, created=eat(10, 12))
    return a
