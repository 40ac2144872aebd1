"""The M-PESA statement of the demo history: what the portal would have listed for the money it moved.

The demo history (backoffice.demo_history) writes payments and refunds as the services would have; a
business that has run for weeks has also imported its statements. This writes one statement import for the
history's period, one line per paid M-Pesa attempt (those completed on an STK Query without their receipt
get it from their line) and per refund paid out (a B2C payment with its charge), and reconciles it, so the
history starts reconciled and a statement imported later (the simulator's, for today) only has today's live
payments to explain.
"""

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal

from django.conf import settings

from common.phone import mask_msisdn
from payments.models import PAID_STATUSES, Payment, PaymentMethod, Refund, RefundMethod, RefundStatus
from statements.models import ImportSource, LineKind, StatementImport
from statements.parsing import parse_other_party
from statements.reconciliation import reconcile_import
from statements.store import lines_store
from statements.types import ParsedLine

B2C_CHARGE_KES = Decimal("15.00")


def _party(phone: str, name: str) -> dict:
    text = f"{mask_msisdn(phone)} - {name.upper()}" if phone else name.upper()
    prefix, suffix, length, party_name = parse_other_party(text)
    return {
        "other_party": text,
        "party_phone_prefix": prefix,
        "party_phone_suffix": suffix,
        "party_phone_length": length,
        "party_name": party_name,
    }


def _payment_lines(owner, start: dt.datetime, end: dt.datetime) -> Iterator[ParsedLine]:
    paid = (
        Payment.objects.filter(
            order__owner=owner,
            method=PaymentMethod.MPESA,
            status__in=PAID_STATUSES,
            completed_at__range=(start, end),
        )
        .order_by("completed_at", "pk")
        .values_list(
            "pk",
            "mpesa_receipt_number",
            "completed_at",
            "initiated_at",
            "paid_amount",
            "amount",
            "phone",
            "account_reference",
            "order__contact_name",
        )
    )
    rows = paid.iterator(2000)
    for pk, receipt, completed_at, initiated_at, paid_amount, amount, phone, account, name in rows:
        party = _party(phone, name)
        yield ParsedLine(
            # Completed on an STK Query, the receipt never came: the statement has it (and fills it in).
            receipt=receipt or f"SDP{pk:07d}",
            completed_at=completed_at,
            initiated_at=initiated_at,
            kind=LineKind.CUSTOMER_PAYMENT,
            paid_in=paid_amount or amount,
            details=f"Pay Bill Online from {party['other_party']} Acc. {account}",
            transaction_status="Completed",
            reason_type="Pay Bill Online",
            account_number=account,
            **party,
        )


def _refund_lines(owner, start: dt.datetime, end: dt.datetime) -> Iterator[ParsedLine]:
    refunds = (
        Refund.objects.filter(
            payment__order__owner=owner,
            status__in=(RefundStatus.SUCCEEDED, RefundStatus.OVER_REFUNDED),
            completed_at__range=(start, end),
        )
        .exclude(transaction_id="")
        .order_by("completed_at", "pk")
        .values_list(
            "transaction_id", "method", "amount", "completed_at", "original_receipt", "payment__phone",
            "payment__order__contact_name",
        )
    )  # fmt: skip
    for receipt, method, amount, completed_at, original, phone, name in refunds.iterator(2000):
        party = _party(phone, name)
        if method == RefundMethod.REVERSAL:
            yield ParsedLine(
                receipt=receipt,
                completed_at=completed_at,
                kind=LineKind.REVERSAL,
                withdrawn=amount,
                details=f"Reversal of transaction {original}",
                transaction_status="Completed",
                reason_type="Reversal",
                linked_transaction_id=original,
                **party,
            )
            continue
        yield ParsedLine(
            receipt=receipt,
            completed_at=completed_at,
            kind=LineKind.B2C,
            withdrawn=amount,
            details=f"Business Payment to {party['other_party']}",
            transaction_status="Completed",
            reason_type="Business Payment to Customer via API",
            **party,
        )
        yield ParsedLine(
            receipt=receipt,
            completed_at=completed_at,
            kind=LineKind.CHARGE,
            withdrawn=B2C_CHARGE_KES,
            details="B2C Payment Charge",
            transaction_status="Completed",
            reason_type="B2C Payment Charge",
        )


def statement_history(*, owner, start: dt.datetime, end: dt.datetime) -> StatementImport:
    """Store and reconcile the statement of the demo storefront's money between `start` and `end`."""
    imported = StatementImport.objects.create(
        shortcode=settings.MPESA_SHORTCODE,
        source=ImportSource.UPLOAD,
        account_name="Demo Shop Ltd",
        period_start=start,
        period_end=end,
        file_name="demo history statement",
        file_format="csv",
    )
    new = known = 0
    for lines in (_payment_lines(owner, start, end), _refund_lines(owner, start, end)):
        added, seen = lines_store(statement_import=imported, lines=lines)
        new, known = new + added, known + seen
    imported.lines_read, imported.lines_new, imported.lines_known = new + known, new, known
    imported.save(update_fields=["lines_read", "lines_new", "lines_known"])
    reconcile_import(imported)
    return imported
