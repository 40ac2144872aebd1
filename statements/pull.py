"""The Pull Transactions job: the last hours of C2B payments, fetched from Daraja into the statement store.

Every run pulls [now - MPESA_PULL_LOOKBACK_HOURS, now] (Daraja keeps 48 hours and refuses longer windows),
so consecutive runs overlap and a line pulled twice is stored once. Pull Transactions lists customer
payments only, never reversals, B2C payments or charges: the import says so (`summary["c2b_only"]`).
"""

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from payments.daraja.client import get_client
from payments.daraja.errors import DarajaError
from payments.daraja.pull import PulledTransaction, parse_pull_response, pull_row_count
from statements.models import ImportSource, LineKind, StatementImport
from statements.parsing import parse_other_party
from statements.types import ParsedLine

logger = logging.getLogger(__name__)

MAX_WINDOW_HOURS = 48
# Daraja documents no page size; a server that ignored the offset would otherwise be asked forever.
MAX_PAGES = 500


def _line(transaction_: PulledTransaction) -> ParsedLine:
    other_party = " - ".join(part for part in (transaction_.msisdn, transaction_.sender) if part)
    # Only digits whose place in the number is known: a whole number (written 254...), or the digits around
    # a mask. A bare fragment such as 72200000 cannot be placed and is kept in other_party only.
    prefix, suffix, length, _name = parse_other_party(transaction_.msisdn)
    return ParsedLine(
        receipt=transaction_.receipt,
        completed_at=transaction_.completed_at,
        kind=LineKind.CUSTOMER_PAYMENT,
        paid_in=transaction_.amount,
        transaction_status="Completed",
        reason_type=f"Pull Transactions: {transaction_.transaction_type}"[:100],
        other_party=other_party[:200],
        party_phone_prefix=prefix,
        party_phone_suffix=suffix,
        party_phone_length=length,
        party_name=transaction_.sender[:150],
        account_number=transaction_.bill_reference[:64],
        raw=transaction_.raw,
    )


def _pull(start: dt.datetime, end: dt.datetime) -> tuple[list[PulledTransaction], int]:
    client = get_client()
    pulled: dict[str, PulledTransaction] = {}
    offset = 0
    pages = 0
    while pages < MAX_PAGES:
        body = client.pull_transactions_query(start=start, end=end, offset=offset)
        pages += 1
        received = pull_row_count(body)
        if not received:
            break
        for transaction_ in parse_pull_response(body):
            pulled.setdefault(transaction_.receipt, transaction_)  # rows may shift between pages
        offset += received
    else:
        logger.warning("Pull Transactions: stopped after %s pages", MAX_PAGES)
    return sorted(pulled.values(), key=lambda t: t.completed_at), pages


def statement_pull(*, now: dt.datetime | None = None, hours: int | None = None) -> dict:
    """Pull the recent C2B payments into the statement store and reconcile that window.

    Returns counts: pulled, new, known, pages, errors (and import_id once something was stored). A Daraja
    error is logged and counted, never raised: the next run covers the same window again.
    """
    counts = {"pulled": 0, "new": 0, "known": 0, "pages": 0, "errors": 0}
    if not settings.MPESA_PULL_TRANSACTIONS_ENABLED:
        return {**counts, "skipped": "disabled"}
    end = now or timezone.now()
    hours = min(hours or settings.MPESA_PULL_LOOKBACK_HOURS, MAX_WINDOW_HOURS)
    start = end - dt.timedelta(hours=hours)
    shortcode = str(settings.MPESA_SHORTCODE)

    try:
        transactions, pages = _pull(start, end)
    except (DarajaError, ValueError) as exc:
        # Daraja's messages carry codes and descriptions, no phone numbers.
        logger.warning(
            "Pull Transactions for %s failed: %s %s",
            shortcode,
            type(exc).__name__,
            getattr(exc, "error_code", "") or exc,
        )
        return {**counts, "errors": 1}

    lines = [_line(t) for t in transactions]
    from statements.store import lines_store

    with transaction.atomic():
        statement_import = StatementImport.objects.create(
            shortcode=shortcode,
            source=ImportSource.PULL,
            account_name=(transactions[0].organization_name if transactions else "")[:200],
            period_start=start,
            period_end=end,
            lines_read=len(lines),
            summary={"c2b_only": True, "pages": pages},
        )
        new, known = lines_store(statement_import=statement_import, lines=lines)
        statement_import.lines_new, statement_import.lines_known = new, known
        statement_import.save(update_fields=["lines_new", "lines_known"])

    from statements.reconciliation import reconcile

    reconcile(
        shortcode=shortcode,
        period_start=start,
        period_end=end,
        actor=None,
        statement_import=statement_import,
    )
    logger.info("Pull Transactions for %s: %s pulled, %s new", shortcode, len(lines), new)
    return {
        **counts,
        "pulled": len(lines),
        "new": new,
        "known": known,
        "pages": pages,
        "import_id": statement_import.pk,
    }
