"""Importing an M-PESA statement file (admin upload or `manage.py import_statement`), then reconciling it."""

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import PurePath

from django.conf import settings
from django.db import transaction

from audit.models import AuditAction
from audit.services import audit_record
from statements.exceptions import StatementError, StatementFormatError, StatementPermissionDenied
from statements.models import ImportSource, LineKind, StatementImport
from statements.parsing import COMPLETED, open_statement
from statements.store import lines_store
from statements.types import ParsedLine

logger = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
_ZERO = Decimal("0.00")


class _Tally:
    """What the lines held, counted as they stream past: per kind, the period they span."""

    def __init__(self):
        self.lines = 0
        self.not_completed = 0
        self.by_kind = {str(kind): [0, _ZERO, _ZERO] for kind in LineKind}
        self.first: dt.datetime | None = None
        self.last: dt.datetime | None = None

    def count(self, lines: Iterable[ParsedLine]) -> Iterator[ParsedLine]:
        for line in lines:
            self.lines += 1
            figures = self.by_kind[line.kind]
            figures[0] += 1
            figures[1] += line.paid_in
            figures[2] += line.withdrawn
            if line.transaction_status != COMPLETED:
                self.not_completed += 1
            if self.first is None or line.completed_at < self.first:
                self.first = line.completed_at
            if self.last is None or line.completed_at > self.last:
                self.last = line.completed_at
            yield line

    def summary(self) -> dict:
        return {
            "kinds": {
                kind: {"lines": lines, "paid_in": f"{paid_in:.2f}", "withdrawn": f"{withdrawn:.2f}"}
                for kind, (lines, paid_in, withdrawn) in self.by_kind.items()
            },
            "not_completed": self.not_completed,
        }


def statement_import(
    *,
    fileobj,
    file_name: str,
    actor,
    shortcode: str | None = None,
    source: str = ImportSource.UPLOAD,
    reconcile: bool = True,
) -> StatementImport:
    """Read an M-PESA portal statement (CSV or XLSX), store its lines not already known, and reconcile.

    `actor` needs `statements.import_statement`; an upload always needs an actor with it, while the
    command runs as the server operator (actor None, source COMMAND). The shortcode is `shortcode`, else
    the one the file's preamble names, else settings.MPESA_SHORTCODE; a file naming another shortcode
    than `shortcode` is refused. The period is the preamble's, else the span of the lines' completion times.

    Lines whose Transaction Status is not "Completed" are stored with their status and left out of the
    reconciliation. The import, its lines and its audit record are one transaction: a file refused
    (StatementFormatError naming the row or column) stores nothing. With `reconcile`, the import is then
    reconciled (statements.reconciliation.reconcile_import) and the run is `reconciliation_run` on the
    returned import (None without).
    """
    needs_permission = actor is not None or source == ImportSource.UPLOAD
    if needs_permission and (
        actor is None or not actor.is_active or not actor.has_perm("statements.import_statement")
    ):
        raise StatementPermissionDenied("You are not allowed to import M-PESA statements.")
    file_sha256 = _sha256_within_limit(fileobj, max_bytes=settings.STATEMENT_IMPORT_MAX_BYTES)
    file_name = PurePath(file_name or "").name[:255]
    with open_statement(fileobj, file_name=file_name) as statement:
        shortcode = _shortcode(asked=shortcode, in_file=statement.shortcode)
        tally = _Tally()
        with transaction.atomic():
            imported = StatementImport.objects.create(
                shortcode=shortcode,
                source=source,
                account_name=statement.account_name[:200],
                file_name=file_name,
                file_sha256=file_sha256,
                file_format=statement.file_format,
                imported_by=actor,
            )
            new, known = lines_store(statement_import=imported, lines=tally.count(statement.lines()))
            imported.lines_read, imported.lines_new, imported.lines_known = tally.lines, new, known
            imported.period_start = statement.period_start or tally.first
            # A statement of today, exported before the day ended, says "to 23:59:59": it covers no more
            # than what had happened when it was read. Payments completed later are not missing from it.
            imported.period_end = min(
                statement.period_end or tally.last or imported.created_at, imported.created_at
            )
            imported.summary = tally.summary()
            earlier = (
                StatementImport.objects.filter(file_sha256=file_sha256, shortcode=shortcode)
                .exclude(pk=imported.pk)
                .order_by("pk")
                .values_list("pk", flat=True)
                .first()
            )
            if earlier is not None:
                imported.summary["same_file_as"] = earlier
            imported.save(
                update_fields=[
                    "lines_read",
                    "lines_new",
                    "lines_known",
                    "period_start",
                    "period_end",
                    "summary",
                ]
            )
            audit_record(
                action=AuditAction.STATEMENT_IMPORTED,
                actor=actor,
                obj=imported,
                data={
                    "file_name": file_name,
                    "file_sha256": file_sha256,
                    "file_format": imported.file_format,
                    "source": str(source),
                    "shortcode": shortcode,
                    "period_start": _iso(imported.period_start),
                    "period_end": _iso(imported.period_end),
                    "lines_read": imported.lines_read,
                    "lines_new": new,
                    "lines_known": known,
                    "kinds": {kind: figures["lines"] for kind, figures in imported.summary["kinds"].items()},
                },
            )
    logger.info(
        "Statement import #%s (%s, %s) for shortcode %s: %s lines read, %s new, %s already known.",
        imported.pk,
        imported.file_format,
        source,
        shortcode,
        imported.lines_read,
        imported.lines_new,
        imported.lines_known,
    )
    imported.reconciliation_run = _reconcile(imported, actor=actor) if reconcile else None
    return imported


def _reconcile(statement_import: StatementImport, *, actor):
    from statements.reconciliation import reconcile_import

    return reconcile_import(statement_import, actor=actor)


def _shortcode(*, asked: str | None, in_file: str) -> str:
    asked = "".join((asked or "").split())
    if asked and in_file and asked != in_file:
        raise StatementError(
            f"This statement is for shortcode {in_file}, not {asked}: check the file or the shortcode.",
            field="shortcode",
        )
    shortcode = asked or in_file or settings.MPESA_SHORTCODE
    if len(shortcode) > 12:
        raise StatementError(f"{shortcode!r} is not a shortcode.", field="shortcode")
    return shortcode


def _sha256_within_limit(fileobj, *, max_bytes: int) -> str:
    """The file's sha256, read in chunks; StatementFormatError past `max_bytes` (checked before hashing when
    the upload knows its size)."""
    too_big = StatementFormatError(
        f"The file is larger than {max_bytes / (1024 * 1024):,.0f} MB, the most a statement import accepts: "
        "export a shorter period."
    )
    size = getattr(fileobj, "size", None)
    if isinstance(size, int) and size > max_bytes:
        raise too_big
    digest = hashlib.sha256()
    read = 0
    fileobj.seek(0)
    while chunk := fileobj.read(_CHUNK):
        read += len(chunk)
        if read > max_bytes:
            raise too_big
        digest.update(chunk)
    fileobj.seek(0)
    return digest.hexdigest()


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
