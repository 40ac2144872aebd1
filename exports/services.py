"""Exporting an admin list to a file, and handing the file to the person who asked for it.

- `export_create`: a list of at most EXPORT_SYNC_MAX_ROWS rows is written at once and is ready; a longer
  one is queued and written by a django-q2 task (`export_write`). Either way there is an Export row and an
  EXPORT_CREATED audit record (who, which list, which filters, how many rows), in one transaction.
- `export_download`: the file, for its requester (or a superuser), while it is ready and unexpired; every
  download is an EXPORT_DOWNLOADED audit record.
- `exports_expire` (scheduled): files past EXPORT_RETENTION_HOURS are deleted and their rows marked
  expired; exports whose task died or never ran are marked failed, so no export stays open forever.

Phone numbers and email addresses are masked unless the requester has FULL_CONTACT_PERMISSION.
"""

import contextlib
import datetime as dt
import logging
import os
import tempfile
from dataclasses import dataclass
from functools import partial

from django.conf import settings
from django.core.files import File
from django.db import transaction
from django.utils import timezone

from audit.models import AuditAction
from audit.services import audit_record
from common.admin import FULL_CONTACT_PERMISSION
from exports import writers
from exports.exceptions import ExportError, ExportNotAllowed, ExportUnavailable
from exports.models import Export, ExportFormat, ExportStatus
from exports.selectors import ListRows, list_cells, list_rows

logger = logging.getLogger(__name__)

EXPORT_PERMISSION = "exports.export_lists"
# A running export whose task has not finished this long after its timeout lost its worker.
STALE_MARGIN = dt.timedelta(minutes=10)
CONTENT_TYPES = {ExportFormat.CSV: writers.CSV_CONTENT_TYPE, ExportFormat.XLSX: writers.XLSX_CONTENT_TYPE}


@dataclass(frozen=True)
class WrittenFile:
    name: str  # in the file field's storage
    rows: int
    size: int


def _require_export_permission(user) -> None:
    if not (user.is_active and user.has_perm(EXPORT_PERMISSION)):
        raise ExportNotAllowed("You may not export lists.")


def _retention() -> dt.timedelta:
    return dt.timedelta(hours=settings.EXPORT_RETENTION_HOURS)


def _file_field():
    return Export._meta.get_field("file")


def export_create(*, actor, list_label: str, query: str, fmt: str) -> Export:
    """Export the list `list_label` ("payments.payment") as `actor` sees it for the list's query string."""
    _require_export_permission(actor)
    if fmt not in ExportFormat.values:
        raise ExportError("Choose CSV or XLSX.")
    rows = list_rows(user=actor, list_label=list_label, query=query)
    full_contacts = actor.has_perm(FULL_CONTACT_PERMISSION)
    fields = {
        "requested_by": actor,
        "list_label": rows.list_label,
        "query": rows.query,
        "format": fmt,
        "full_phones": full_contacts,
    }
    if rows.count > settings.EXPORT_SYNC_MAX_ROWS:
        with transaction.atomic():
            export = Export.objects.create(**fields, status=ExportStatus.QUEUED)
            _audit_created(export, rows, row_count=rows.count)
            transaction.on_commit(partial(export_enqueue, export_id=export.pk), robust=True)
        return export

    started_at = timezone.now()
    # The file is written before the transaction: on SQLite a transaction holds the write lock.
    written = _write_file(rows, fmt=fmt, full_contacts=full_contacts)
    finished_at = timezone.now()
    try:
        with transaction.atomic():
            export = Export.objects.create(
                **fields,
                status=ExportStatus.READY,
                file=written.name,
                row_count=written.rows,
                size_bytes=written.size,
                started_at=started_at,
                finished_at=finished_at,
                expires_at=finished_at + _retention(),
            )
            _audit_created(export, rows, row_count=written.rows)
    except BaseException:
        _file_field().storage.delete(written.name)
        raise
    return export


def _audit_created(export: Export, rows: ListRows, *, row_count: int) -> None:
    audit_record(
        action=AuditAction.EXPORT_CREATED,
        actor=export.requested_by,
        obj=export,
        data={
            "list": rows.list_label,
            "filters": rows.filters,
            "rows": row_count,
            "format": export.format,
            "full_phones": export.full_phones,
        },
    )


def export_enqueue(*, export_id: int) -> None:
    from common.queue import enqueue

    enqueue(
        "exports.tasks.export_write",
        export_id,
        q_options={"timeout": settings.EXPORT_TASK_TIMEOUT, "task_name": f"export-{export_id}"},
    )


def export_write(*, export_id: int) -> Export | None:
    """Write a queued export's file (the task). None when it is not queued: another delivery of the same
    task has it, or it is already done."""
    claimed = Export.objects.filter(pk=export_id, status=ExportStatus.QUEUED).update(
        status=ExportStatus.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return None
    export = Export.objects.select_related("requested_by").get(pk=export_id)
    requester = export.requested_by
    try:
        # Checked again: the permissions may have changed since the export was asked for.
        _require_export_permission(requester)
        rows = list_rows(user=requester, list_label=export.list_label, query=export.query)
        full_contacts = export.full_phones and requester.has_perm(FULL_CONTACT_PERMISSION)
        written = _write_file(rows, fmt=export.format, full_contacts=full_contacts)
    except Exception as exc:
        logger.exception("Export #%s of %s failed", export_id, export.list_label)
        error = exc.message if isinstance(exc, ExportError) else f"{type(exc).__name__}: {exc}"
        Export.objects.filter(pk=export_id, status=ExportStatus.RUNNING).update(
            status=ExportStatus.FAILED, error=error[:2000], finished_at=timezone.now()
        )
        export.refresh_from_db()
        return export
    finished_at = timezone.now()
    done = Export.objects.filter(pk=export_id, status=ExportStatus.RUNNING).update(
        status=ExportStatus.READY,
        full_phones=full_contacts,  # what the file holds, if the permission went in the meantime
        file=written.name,
        row_count=written.rows,
        size_bytes=written.size,
        finished_at=finished_at,
        expires_at=finished_at + _retention(),
    )
    if not done:  # given up as stale (exports_expire) while it was being written
        _file_field().storage.delete(written.name)
    export.refresh_from_db()
    return export


class _WrittenTempFile(File):
    """A finished temporary file: FileSystemStorage moves it into place instead of copying it."""

    def __init__(self, path: str, name: str):
        super().__init__(open(path, "rb"), name=name)  # noqa: SIM115 - closed by _write_file
        self._path = path

    def temporary_file_path(self) -> str:
        return self._path


def _write_file(rows: ListRows, *, fmt: str, full_contacts: bool) -> WrittenFile:
    """Stream the rows into a temporary file, then store it under exports/<year>/<month>/."""
    stamp = writers.nairobi(timezone.now())
    filename = f"{rows.file_stem}-{stamp:%Y%m%d-%H%M%S}.{fmt}"
    cells = list_cells(rows, full_contacts=full_contacts)
    descriptor, path = tempfile.mkstemp(prefix="export-", suffix=f".{fmt}")
    try:
        if fmt == ExportFormat.CSV:
            with os.fdopen(descriptor, "wb") as file:
                count = writers.write_csv(file, rows.cells, cells)
        else:
            os.close(descriptor)
            count = writers.write_xlsx(path, rows.cells, cells, sheet_title=rows.title)
        size = os.path.getsize(path)
        field = _file_field()
        content = _WrittenTempFile(path, filename)
        try:
            name = field.storage.save(field.generate_filename(None, filename), content)
        finally:
            content.close()
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return WrittenFile(name=name, rows=count, size=size)


def _may_download(actor, export: Export) -> bool:
    if actor.is_superuser:
        return True
    # A file written with full phone numbers is not handed to someone who may no longer see them.
    return (
        export.requested_by_id == actor.pk
        and actor.is_active
        and actor.has_perm(EXPORT_PERMISSION)
        and (not export.full_phones or actor.has_perm(FULL_CONTACT_PERMISSION))
    )


def export_download(*, actor, export_id: int) -> tuple[Export, File]:
    """The export's file, opened, for `actor`; ExportUnavailable for anyone else, or when it is not ready,
    has expired or its file is gone. The caller closes the file (FileResponse does)."""
    export = Export.objects.select_related("requested_by").filter(pk=export_id).first()
    if export is None or not _may_download(actor, export):
        raise ExportUnavailable("There is no such export.")
    if export.status != ExportStatus.READY or not export.file or export.expires_at <= timezone.now():
        raise ExportUnavailable("This export is not ready or has expired.")
    try:
        file = export.file.open("rb")
    except FileNotFoundError as exc:
        raise ExportUnavailable("This export's file is gone.") from exc
    try:
        with transaction.atomic():
            audit_record(
                action=AuditAction.EXPORT_DOWNLOADED,
                actor=actor,
                obj=export,
                data={"list": export.list_label, "rows": export.row_count, "format": export.format},
            )
    except BaseException:
        file.close()
        raise
    return export, file


def download_name(export: Export) -> str:
    return os.path.basename(export.file.name)


def exports_expire(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Delete the files of exports past their expiry and mark them expired; fail exports whose task died
    (running past its timeout) or never ran (queued longer than an export is kept)."""
    now = now or timezone.now()
    storage = _file_field().storage
    expired = 0
    due = Export.objects.filter(status=ExportStatus.READY, expires_at__lte=now).values_list("pk", "file")
    for export_id, name in list(due):
        # The file goes first: a row still marked ready without its file only refuses a download.
        if name:
            storage.delete(name)
        expired += Export.objects.filter(pk=export_id, status=ExportStatus.READY).update(
            status=ExportStatus.EXPIRED, file=""
        )
    stopped = Export.objects.filter(
        status=ExportStatus.RUNNING,
        started_at__lt=now - dt.timedelta(seconds=settings.EXPORT_TASK_TIMEOUT) - STALE_MARGIN,
    ).update(
        status=ExportStatus.FAILED,
        finished_at=now,
        error="The export stopped before it finished (its worker stopped or ran out of time). "
        "Export the list again.",
    )
    never_started = Export.objects.filter(
        status=ExportStatus.QUEUED, created_at__lt=now - _retention()
    ).update(
        status=ExportStatus.FAILED,
        finished_at=now,
        error="The task queue never started this export. Export the list again.",
    )
    return {"expired": expired, "stopped": stopped, "never_started": never_started}
