"""Statement lines, payments and refunds built directly as rows, in the states reconciliation meets them.

Times are Nairobi local time on 10 November 2026 (`at(9, 30)`); the default statement period is that whole
day. The shortcode is settings.MPESA_SHORTCODE, the one our STK pushes are paid to.
"""

import datetime as dt
import itertools
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission

from orders.models import Customer, Order
from payments.models import Payment, PaymentMethod, PaymentStatus, Refund, RefundMethod, RefundStatus
from statements.models import ImportSource, LineKind, StatementImport, StatementLine

EAT = ZoneInfo("Africa/Nairobi")
PHONE = "254708374149"
OTHER_PHONE = "254711000222"
_numbers = itertools.count(1)


def at(hour: int, minute: int = 0, second: int = 0, *, day: int = 10) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, second, tzinfo=EAT)


DAY_START = at(0)
DAY_END = at(23, 59, 59)


def shortcode() -> str:
    return settings.MPESA_SHORTCODE


def user_with(django_user_model, username: str, *perms: str):
    """A staff user with permissions named "app_label.codename"."""
    user = django_user_model.objects.create_user(username, is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(codename=codename, content_type__app_label=app_label)
        )
    return django_user_model.objects.get(pk=user.pk)


class Rows:
    """Factories for the rows a reconciliation reads."""

    def __init__(self, owner):
        self.owner = owner
        self.customer = Customer.objects.create(full_name="Amina", phone=PHONE)

    def order(self, total: str = "100") -> Order:
        return Order.objects.create(
            owner=self.owner,
            customer=self.customer,
            total=Decimal(total),
            payment_method="mpesa",
            shipping_full_name="Amina",
            shipping_address="1 Moi Avenue",
            shipping_city="Nairobi",
        )

    def payment(
        self,
        *,
        order: Order | None = None,
        status: str = PaymentStatus.COMPLETED,
        amount: str = "100",
        phone: str = PHONE,
        receipt: str | None = "auto",
        receipt_pending: bool = False,
        initiated_at: dt.datetime | None = None,
        completed_at: dt.datetime | None = None,
        paid_amount: str | None = "auto",
        account_reference: str = "",
        method: str = PaymentMethod.MPESA,
        refunded: str = "0",
        review_reason: str = "",
    ) -> Payment:
        """A payment row. A paid one gets a receipt (unless pending) and completed_at 30 s after its push."""
        number = next(_numbers)
        paid = status in (PaymentStatus.COMPLETED, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED)
        initiated_at = initiated_at or at(9)
        if receipt == "auto":
            receipt = f"SPX{number:07d}" if paid and not receipt_pending else None
        if paid_amount == "auto":
            paid_amount = amount if paid else None
        payment = Payment.objects.create(
            order=order or self.order(amount),
            method=method,
            status=status,
            amount=Decimal(amount),
            phone=phone if method == PaymentMethod.MPESA else "",
            account_reference=account_reference,
            checkout_request_id=f"ws_CO_STMT{number:08d}" if method == PaymentMethod.MPESA else None,
            mpesa_receipt_number=receipt,
            receipt_pending=receipt_pending,
            paid_amount=Decimal(paid_amount) if paid_amount is not None else None,
            refunded_amount=Decimal(refunded),
            initiated_at=initiated_at if method == PaymentMethod.MPESA else None,
            completed_at=completed_at or (initiated_at + dt.timedelta(seconds=30) if paid else None),
            failed_at=initiated_at + dt.timedelta(minutes=5) if status == PaymentStatus.FAILED else None,
            review_reason=review_reason,
        )
        Payment.objects.filter(pk=payment.pk).update(created_at=initiated_at - dt.timedelta(seconds=2))
        payment.refresh_from_db()
        return payment

    def refund(
        self,
        payment: Payment,
        *,
        amount: str | None = None,
        status: str = RefundStatus.SUCCEEDED,
        method: str | None = None,
        transaction_id: str = "",
        submitted_at: dt.datetime | None = None,
        completed_at: dt.datetime | None = None,
    ) -> Refund:
        number = next(_numbers)
        amount = Decimal(amount) if amount is not None else payment.amount
        return Refund.objects.create(
            payment=payment,
            status=status,
            method=method or (RefundMethod.REVERSAL if amount == payment.amount else RefundMethod.B2C),
            amount=amount,
            reason="Customer asked",
            idempotency_key=f"stmt-refund-{number}",
            original_receipt=payment.mpesa_receipt_number or "",
            transaction_id=transaction_id,
            submitted_at=submitted_at or at(11),
            completed_at=completed_at or at(11, 1),
        )

    def statement(
        self,
        *,
        code: str | None = None,
        period_start: dt.datetime | None = DAY_START,
        period_end: dt.datetime | None = DAY_END,
        imported_by=None,
    ) -> StatementImport:
        return StatementImport.objects.create(
            shortcode=code or shortcode(),
            source=ImportSource.UPLOAD,
            period_start=period_start,
            period_end=period_end,
            file_name="statement.csv",
            imported_by=imported_by,
        )

    def line(
        self,
        statement: StatementImport,
        *,
        receipt: str | None = None,
        kind: str = LineKind.CUSTOMER_PAYMENT,
        completed_at: dt.datetime | None = None,
        paid_in: str = "0",
        withdrawn: str = "0",
        status: str = "Completed",
        prefix: str = "",
        suffix: str = "",
        length: int | None = None,
        account: str = "",
        linked: str = "",
    ) -> StatementLine:
        number = next(_numbers)
        return StatementLine.objects.create(
            statement_import=statement,
            shortcode=statement.shortcode,
            receipt=receipt or f"SLN{number:07d}",
            kind=kind,
            completed_at=completed_at or at(9, 0, 40),
            transaction_status=status,
            paid_in=Decimal(paid_in),
            withdrawn=Decimal(withdrawn),
            party_phone_prefix=prefix,
            party_phone_suffix=suffix,
            party_phone_length=length,
            linked_transaction_id=linked,
            account_number=account,
        )

    def paid_line(self, statement: StatementImport, payment: Payment, **fields) -> StatementLine:
        """The statement's line for a paid payment: its receipt and amount, masked phone digits."""
        fields.setdefault("paid_in", str(payment.paid_amount or payment.amount))
        fields.setdefault("completed_at", payment.completed_at)
        return self.line(
            statement, receipt=payment.mpesa_receipt_number, prefix="2547", suffix="149", length=12, **fields
        )

    def masked_line(self, statement: StatementImport, *, amount: str = "100", **fields) -> StatementLine:
        """A customer payment line we hold no receipt for, from 2547*****149."""
        fields.setdefault("prefix", "2547")
        fields.setdefault("suffix", "149")
        fields.setdefault("length", 12)
        return self.line(statement, paid_in=amount, **fields)


@pytest.fixture
def shop_owner(django_user_model):
    return django_user_model.objects.create_user("shop")


@pytest.fixture
def rows(db, shop_owner) -> Rows:
    return Rows(shop_owner)


@pytest.fixture
def resolver(django_user_model):
    return user_with(django_user_model, "resolver", "statements.resolve_reconciliationitem")


@pytest.fixture
def refunder(django_user_model):
    return user_with(
        django_user_model, "refunder", "statements.resolve_reconciliationitem", "payments.add_refund"
    )


@pytest.fixture
def importer(django_user_model):
    return user_with(django_user_model, "importer", "statements.import_statement")


@pytest.fixture
def viewer(django_user_model):
    return user_with(django_user_model, "viewer", "statements.view_reconciliationitem")
