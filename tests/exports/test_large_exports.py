"""Exports above EXPORT_SYNC_MAX_ROWS: queued, written by the task, listed under Exports, downloaded by their
requester alone (each download audited, by POST only), deleted when they expire; a task that cannot
finish leaves the export failed with its reason, never open."""

import datetime as dt
import io
from pathlib import Path

import openpyxl
import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule

from audit.models import AuditAction, AuditEntry
from exports import services, tasks
from exports.models import Export, ExportStatus
from orders.models import OrderStatus
from tests.admin.test_no_change_on_get import snapshot
from tests.exports import support
from tests.exports.support import PHONE, VIEW_LISTS


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.EXPORT_SYNC_MAX_ROWS = 2
    return tmp_path / "media"


@pytest.fixture
def payments(api_user):
    placed = support.order(api_user, status=OrderStatus.CONFIRMED)
    return [support.payment(placed) for _ in range(4)] + [support.payment(placed, status="completed")]


@pytest.fixture
def exporter(client, django_user_model):
    user = support.staff(django_user_model, "exporter", "export_lists", *VIEW_LISTS)
    client.force_login(user)
    client.user = user
    return client


def download_url(export: Export) -> str:
    return reverse("admin:exports_export_download", args=[export.pk])


def _queue(client, django_capture_on_commit_callbacks, query="status__exact=failed", fmt="csv"):
    """Ask for a large export; the task (synchronous in tests) runs when the request's transaction commits."""
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = support.post_export(client, "payments", query, fmt)
    return response, callbacks


@pytest.mark.django_db
def test_a_large_export_is_queued_audited_and_written_by_the_task(
    payments, exporter, media, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = support.post_export(exporter, "payments", "status__exact=failed")

    assert response.status_code == 302
    assert response["Location"] == support.changelist_url("payments") + "?status__exact=failed"
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "Your export is being written; it will be listed under Exports."
    ]
    export = Export.objects.get()
    assert export.status == ExportStatus.QUEUED and not export.file
    created = AuditEntry.objects.get(action=AuditAction.EXPORT_CREATED)
    assert created.data["rows"] == 4 and created.data["filters"] == {"status__exact": "failed"}
    assert created.actor == exporter.user
    assert len(callbacks) == 1

    callbacks[0]()  # after commit: the task (Q_SYNC runs it here)

    export.refresh_from_db()
    assert export.status == ExportStatus.READY
    assert export.row_count == 4 and export.size_bytes == Path(export.file.path).stat().st_size
    assert Path(export.file.path).is_relative_to(media / "exports")
    assert export.expires_at == export.finished_at + dt.timedelta(hours=24)
    rows = support.csv_rows(exporter.post(download_url(export)))
    assert sorted(int(row[0]) for row in rows[1:]) == sorted(p.pk for p in payments if p.status == "failed")


@pytest.mark.django_db
def test_the_htmx_post_of_a_large_export_is_redirected_like_a_dialog(
    payments, exporter, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = support.htmx_post_export(exporter, "payments", "")

    assert response.status_code == 200 and response["HX-Redirect"] == support.changelist_url("payments")
    assert Export.objects.get().status == ExportStatus.READY


@pytest.mark.django_db
def test_only_the_requester_downloads_it_each_download_is_audited_and_get_changes_nothing(
    payments, exporter, django_user_model, django_capture_on_commit_callbacks
):
    _queue(exporter, django_capture_on_commit_callbacks, fmt="xlsx")
    export = Export.objects.get()
    colleague = support.staff(django_user_model, "colleague", "export_lists", "view_export", *VIEW_LISTS)
    other = Client()
    other.force_login(colleague)
    before = snapshot()

    assert exporter.get(download_url(export)).status_code == 405
    assert other.post(download_url(export)).status_code == 404
    assert snapshot() == before

    response = exporter.post(download_url(export))
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment")
    assert "no-store" in response["Cache-Control"] or "no-cache" in response["Cache-Control"]
    workbook = openpyxl.load_workbook(io.BytesIO(support.body(response)))
    assert workbook.worksheets[0].max_row == 5  # header and four rows
    downloads = AuditEntry.objects.filter(action=AuditAction.EXPORT_DOWNLOADED)
    assert [(entry.actor, entry.object_id) for entry in downloads] == [(exporter.user, str(export.pk))]


@pytest.mark.django_db
def test_a_download_needs_a_csrf_token(payments, exporter, django_capture_on_commit_callbacks):
    _queue(exporter, django_capture_on_commit_callbacks)
    export = Export.objects.get()
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(exporter.user)

    assert browser.post(download_url(export)).status_code == 403
    assert not AuditEntry.objects.filter(action=AuditAction.EXPORT_DOWNLOADED).exists()


@pytest.mark.django_db
def test_people_see_their_own_exports_and_superusers_everyones(
    payments, exporter, admin_client, django_user_model, django_capture_on_commit_callbacks
):
    _queue(exporter, django_capture_on_commit_callbacks)
    export = Export.objects.get()
    colleague = support.staff(django_user_model, "colleague", "export_lists", "view_export", *VIEW_LISTS)
    client = Client()
    client.force_login(colleague)
    changelist = reverse("admin:exports_export_changelist")

    own = exporter.get(changelist)
    assert list(own.context["cl"].result_list) == [export]
    assert download_url(export) in own.content.decode()
    assert list(client.get(changelist).context["cl"].result_list) == []
    assert client.get(reverse("admin:exports_export_change", args=[export.pk])).status_code == 302
    assert list(admin_client.get(changelist).context["cl"].result_list) == [export]
    assert admin_client.post(download_url(export)).status_code == 200


@pytest.mark.django_db
def test_expiry_deletes_the_file_and_the_download_goes(
    payments, exporter, django_capture_on_commit_callbacks
):
    _queue(exporter, django_capture_on_commit_callbacks)
    export = Export.objects.get()
    path = Path(export.file.path)
    assert path.exists()

    assert services.exports_expire(now=export.expires_at - dt.timedelta(seconds=1))["expired"] == 0
    assert exporter.post(download_url(export)).status_code == 200
    counts = services.exports_expire(now=export.expires_at)

    assert counts["expired"] == 1 and not path.exists()
    export.refresh_from_db()
    assert export.status == ExportStatus.EXPIRED and not export.file
    assert exporter.post(download_url(export)).status_code == 404


@pytest.mark.django_db
def test_an_export_past_its_expiry_is_not_downloaded_even_before_the_sweep(
    payments, exporter, django_capture_on_commit_callbacks
):
    _queue(exporter, django_capture_on_commit_callbacks)
    export = Export.objects.get()
    Export.objects.filter(pk=export.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))

    assert exporter.post(download_url(export)).status_code == 404
    assert not AuditEntry.objects.filter(action=AuditAction.EXPORT_DOWNLOADED).exists()


@pytest.mark.django_db
def test_the_expiry_schedule_exists():
    assert Schedule.objects.filter(name="exports-expiry", func="exports.tasks.expire_exports").exists()
    assert tasks.expire_exports() == "expired 0, stopped 0, never_started 0"


@pytest.mark.django_db
def test_a_permission_revoked_before_the_task_runs_fails_the_export_without_a_file(
    payments, exporter, media, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        support.post_export(exporter, "payments", "")
    exporter.user.user_permissions.remove(Permission.objects.get(codename="export_lists"))

    callbacks[0]()

    export = Export.objects.get()
    assert export.status == ExportStatus.FAILED and export.error == "You may not export lists."
    assert not export.file and not list((media / "exports").glob("**/*.csv"))


@pytest.mark.django_db
def test_a_failing_task_marks_the_export_failed_with_the_error(payments, exporter, monkeypatch):
    export = Export.objects.create(requested_by=exporter.user, list_label="payments.payment", format="csv")

    def broken(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(services.writers, "write_csv", broken)
    assert tasks.export_write(export.pk) == f"export {export.pk}: failed"

    export.refresh_from_db()
    assert export.status == ExportStatus.FAILED and export.error == "OSError: No space left on device"
    assert tasks.export_write(export.pk) == "not queued"  # a second delivery does nothing


@pytest.mark.django_db
def test_exports_whose_task_died_or_never_ran_are_failed_by_the_sweep(exporter, settings):
    now = timezone.now()
    running = Export.objects.create(
        requested_by=exporter.user,
        list_label="payments.payment",
        format="csv",
        status=ExportStatus.RUNNING,
        started_at=now - dt.timedelta(seconds=settings.EXPORT_TASK_TIMEOUT) - dt.timedelta(minutes=11),
    )
    queued = Export.objects.create(requested_by=exporter.user, list_label="payments.payment", format="csv")
    Export.objects.filter(pk=queued.pk).update(created_at=now - dt.timedelta(hours=25))
    recent = Export.objects.create(
        requested_by=exporter.user,
        list_label="payments.payment",
        format="csv",
        status=ExportStatus.RUNNING,
        started_at=now - dt.timedelta(minutes=5),
    )

    assert services.exports_expire(now=now) == {"expired": 0, "stopped": 1, "never_started": 1}

    statuses = dict(Export.objects.values_list("pk", "status"))
    assert statuses == {running.pk: "failed", queued.pk: "failed", recent.pk: "running"}


@pytest.mark.django_db
def test_the_masking_choice_is_the_requesters_and_is_checked_again_by_the_task(
    payments, exporter, django_capture_on_commit_callbacks
):
    exporter.user.user_permissions.add(Permission.objects.get(codename="view_full_phone"))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        support.post_export(exporter, "payments", "")
    exporter.user.user_permissions.remove(Permission.objects.get(codename="view_full_phone"))

    callbacks[0]()

    export = Export.objects.get()
    assert export.full_phones is False and export.status == ExportStatus.READY  # what the file holds
    text = support.body(exporter.post(download_url(export))).decode()
    assert PHONE not in text and "2547*****001" in text


@pytest.mark.django_db
def test_a_file_with_full_phone_numbers_is_not_handed_to_someone_who_may_no_longer_see_them(
    payments, exporter, django_capture_on_commit_callbacks
):
    exporter.user.user_permissions.add(Permission.objects.get(codename="view_full_phone"))
    _queue(exporter, django_capture_on_commit_callbacks)
    export = Export.objects.get()
    assert export.status == ExportStatus.READY and export.full_phones

    exporter.user.user_permissions.remove(Permission.objects.get(codename="view_full_phone"))
    exporter.force_login(type(exporter.user).objects.get(pk=exporter.user.pk))

    assert exporter.post(download_url(export)).status_code == 404
    assert not AuditEntry.objects.filter(action=AuditAction.EXPORT_DOWNLOADED).exists()
