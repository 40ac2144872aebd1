"""Everything that changes state for scheduled reports: subscriptions and their django-q2 schedules, and
report runs (build, send, record, retry).

Schedules: each subscription has one CRON schedule named `report-subscription-<pk>`, written in the same
transaction as the subscription. django-q2 evaluates cron expressions in the cluster's time zone
(Q_CLUSTER["time_zone"], else TIME_ZONE; read once when django_q loads), so the subscription's Nairobi
time is converted into that zone here. Nairobi has no daylight saving time; a cluster zone that has one
would move the send time by an hour for part of the year (keep Q_CLUSTER["time_zone"] Africa/Nairobi,
as the settings do). A paused subscription keeps its schedule with repeats = 0 (django-q2 skips it).
"""

import datetime as dt
import logging
import os
import re
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files import File
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from common.masking import mask_email
from reports import exports
from reports.chart import daily_chart_png
from reports.models import (
    Frequency,
    ReportFile,
    ReportFormat,
    ReportRun,
    ReportSubscription,
    RunStatus,
    RunTrigger,
)
from reports.periods import NAIROBI, Period, nairobi_today
from reports.permissions import can_see_figures
from reports.report_email import (
    ReportFileInfo,
    absolute_url,
    build_report_email,
    file_stem,
    report_figures,
    xlsx_summary_sheet,
)
from reports.report_periods import report_period

logger = logging.getLogger(__name__)

RUN_TASK = "reports.tasks.report_subscription_run"
CONTENT_TYPES = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
FORMATS = {ReportFormat.CSV: ("csv",), ReportFormat.XLSX: ("xlsx",), ReportFormat.BOTH: ("csv", "xlsx")}
# Progress bars for the command: (description, total rows) -> a callable taking rows done.
ProgressFactory = Callable[[str, int], Callable[[int], None]]


class ReportSendError(Exception):
    """A report that cannot be sent as asked (no recipients, bad address)."""


# --- subscriptions and their schedules ----------------------------------------------------------------
def schedule_name(subscription_id: int) -> str:
    return f"report-subscription-{subscription_id}"


def cluster_zone() -> ZoneInfo:
    """The zone django-q2 evaluates cron expressions in."""
    from django_q.conf import Conf

    return ZoneInfo(Conf.TIME_ZONE or settings.TIME_ZONE)


def cron_for(
    *, frequency: str, send_at: dt.time, weekday: int, zone: ZoneInfo, on: dt.date | None = None
) -> str:
    """A cron expression, in `zone`, for a Nairobi send time.

    Converting can move the day: 01:00 Nairobi on Monday is 22:00 UTC on Sunday, and 02:00 Nairobi on
    the 1st is 23:00 UTC on the last day of the month before ("L", which croniter understands).
    """
    on = on or nairobi_today()
    local = dt.datetime.combine(on, send_at, tzinfo=NAIROBI).astimezone(zone)
    shift = (local.date() - on).days
    minute, hour = local.minute, local.hour
    if frequency == Frequency.DAILY:
        return f"{minute} {hour} * * *"
    if frequency == Frequency.WEEKLY:
        cron_weekday = (weekday + 1 + shift) % 7  # cron counts from Sunday = 0, Python from Monday = 0
        return f"{minute} {hour} * * {cron_weekday}"
    if frequency == Frequency.MONTHLY:
        return f"{minute} {hour} {({-1: 'L', 0: '1', 1: '2'})[shift]} * *"
    raise ValueError(f"Unknown report frequency {frequency!r}.")


def report_schedule_sync(*, subscription: ReportSubscription):
    """Create or update the subscription's CRON schedule; paused (repeats = 0) when inactive."""
    from django_q.models import Schedule

    cron = cron_for(
        frequency=subscription.frequency,
        send_at=subscription.send_at,
        weekday=subscription.weekday,
        zone=cluster_zone(),
    )
    fields = {
        "name": schedule_name(subscription.pk),
        "func": RUN_TASK,
        "args": repr((subscription.pk,)),
        "kwargs": repr({"q_options": {"timeout": settings.REPORT_TASK_TIMEOUT}}),
        "schedule_type": Schedule.CRON,
        "cron": cron,
        "repeats": -1 if subscription.active else 0,
        # django-q2 passes the planned run time: the period is the one before it, even if the task runs late.
        "intended_date_kwarg": "intended_for",
    }
    schedule = (
        Schedule.objects.select_for_update().filter(pk=subscription.schedule_id).first()
        or Schedule.objects.select_for_update().filter(name=fields["name"]).first()
        or Schedule()
    )
    for name, value in fields.items():
        setattr(schedule, name, value)
    schedule.next_run = schedule.calculate_next_run()  # from now: no catch-up after a pause
    schedule.full_clean()
    schedule.save()
    if subscription.schedule_id != schedule.pk:
        subscription.schedule = schedule
        ReportSubscription.objects.filter(pk=subscription.pk).update(schedule=schedule)
    return schedule


@transaction.atomic
def report_subscription_save(*, subscription: ReportSubscription) -> ReportSubscription:
    """Save the subscription and create, update or pause its schedule in the same transaction."""
    subscription.full_clean(exclude=["recipients"])
    subscription.save()
    report_schedule_sync(subscription=subscription)
    return subscription


@transaction.atomic
def report_subscription_delete(*, subscription: ReportSubscription) -> None:
    """Delete the subscription and its schedule (its past runs stay, unlinked)."""
    from django_q.models import Schedule

    Schedule.objects.filter(name=schedule_name(subscription.pk)).delete()
    if subscription.schedule_id:
        Schedule.objects.filter(pk=subscription.schedule_id).delete()
    subscription.delete()


def report_subscription_send_now(*, subscription_id: int, actor) -> Period:
    """Staff send a subscription's latest complete period now, once (the schedule is not changed). The
    report is built by the task queue after commit: a month's report can take minutes."""
    if not (
        actor is not None and actor.has_perm("reports.change_reportsubscription") and can_see_figures(actor)
    ):
        raise PermissionDenied("You are not allowed to send reports.")
    from common.queue import enqueue

    subscription = ReportSubscription.objects.get(pk=subscription_id)
    period = report_period(subscription.frequency, before=nairobi_today())
    transaction.on_commit(
        lambda: enqueue(
            "reports.tasks.report_send_now",
            subscription.pk,
            actor.pk,
            q_options={"timeout": settings.REPORT_TASK_TIMEOUT, "task_name": f"report-now-{subscription.pk}"},
        )
    )
    return period


# --- recipients ---------------------------------------------------------------------------------------
def parse_addresses(text: str) -> list[str]:
    return [part for part in re.split(r"[\s,;]+", text or "") if part]


def validate_addresses(addresses: list[str]) -> list[str]:
    for address in addresses:
        try:
            validate_email(address)
        except ValidationError as exc:
            raise ReportSendError(f"Not an email address: {address!r}.") from exc
    return addresses


def subscription_recipients(subscription: ReportSubscription) -> list[str]:
    """Staff users' addresses (active staff with an address), then the extra ones, each once."""
    found = list(
        subscription.recipients.filter(is_active=True, is_staff=True)
        .exclude(email="")
        .order_by("pk")
        .values_list("email", flat=True)
    )
    found += parse_addresses(subscription.extra_emails)
    return list(dict.fromkeys(found))


# --- building and sending a report --------------------------------------------------------------------
@dataclass
class BuiltFile:
    info: ReportFileInfo
    path: str
    extension: str


def build_files(
    figures, *, formats: tuple[str, ...], folder: str, progress_factory: ProgressFactory | None = None
) -> list[BuiltFile]:
    """Write the period's payments as CSV and/or XLSX into `folder`, streaming rows from the database."""
    built = []
    total = exports.report_row_count(figures.period) if progress_factory else 0
    for extension in formats:
        name = f"{file_stem(figures.period)}.{extension}"
        path = os.path.join(folder, name)
        progress = progress_factory(name, total) if progress_factory else None
        if extension == "csv":
            with open(path, "wb") as file:
                rows = exports.write_csv(file, figures.period, progress=progress)
        else:
            rows = exports.write_xlsx(path, xlsx_summary_sheet(figures), figures.period, progress=progress)
        built.append(BuiltFile(ReportFileInfo(name, rows, os.path.getsize(path)), path, extension))
    return built


def _store(run: ReportRun, built: BuiltFile) -> ReportFileInfo:
    """Keep a file too large for email; the email links to the staff-only download instead."""
    stored = ReportFile(
        run=run,
        name=built.info.name,
        content_type=CONTENT_TYPES[built.extension],
        size=built.info.size,
        rows=built.info.rows,
    )
    with open(built.path, "rb") as content:
        stored.file.save(built.info.name, File(content), save=True)
    url = absolute_url(reverse("reports:file-download", args=[stored.pk]))
    return ReportFileInfo(built.info.name, built.info.rows, built.info.size, download_url=url)


def _claim(**fields) -> ReportRun | None:
    """The run's row, committed before any work; None when a scheduled attempt is already claimed
    (the same task delivered twice)."""
    try:
        with transaction.atomic():
            return ReportRun.objects.create(**fields)
    except IntegrityError:
        return None


def report_runs_abandon_stale(*, now: dt.datetime | None = None) -> int:
    """Runs still `running` long after any task could have finished lost their worker (killed, timed
    out): they are failed, so nothing stays running forever."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=2 * settings.REPORT_TASK_TIMEOUT)
    return ReportRun.objects.filter(status=RunStatus.RUNNING, started_at__lt=cutoff).update(
        status=RunStatus.FAILED,
        error="The worker stopped before the report was sent (killed or timed out).",
        finished_at=now,
    )


def report_send(
    *,
    period: Period,
    frequency: str,
    to: list[str],
    file_format: str,
    trigger: str,
    subscription: ReportSubscription | None = None,
    attempt: int = 1,
    requested_by=None,
    title: str = "",
    progress_factory: ProgressFactory | None = None,
) -> ReportRun | None:
    """Build the report of `period` and email it to `to`. The run is recorded first (committed), then
    marked sent or failed with the error; nothing raises for a failed send. None: a scheduled attempt
    that another delivery of the same task already claimed."""
    report_runs_abandon_stale()
    run = _claim(
        subscription=subscription,
        trigger=trigger,
        frequency=frequency,
        period_first=period.first,
        period_last=period.last,
        file_format=file_format,
        attempt=attempt,
        recipients=list(to),
        requested_by=requested_by,
    )
    if run is None:
        logger.info("Report %s %s attempt %s is already claimed", subscription, period.label, attempt)
        return None
    try:
        if not to:
            raise ReportSendError("No recipients: add staff users with an email address or other addresses.")
        validate_addresses(to)
        figures = report_figures(period)
        with tempfile.TemporaryDirectory(prefix="report-") as folder:
            built = build_files(
                figures, formats=FORMATS[file_format], folder=folder, progress_factory=progress_factory
            )
            attached, stored = [], []
            for item in built:
                if item.info.size > settings.REPORT_MAX_ATTACHMENT_BYTES:
                    stored.append(_store(run, item))
                else:
                    with open(item.path, "rb") as file:
                        attached.append((item.info, file.read(), CONTENT_TYPES[item.extension]))
            message = build_report_email(
                figures,
                to=list(to),
                chart_png=daily_chart_png(figures.summary),
                attachments=attached,
                stored=stored,
                title=title or (subscription.name if subscription else ""),
            )
            message.send(using=settings.NOTIFICATIONS_MAILER)
    except Exception as exc:
        logger.exception("Report %s for %s failed (attempt %s)", run.pk, period.label, attempt)
        run.status = RunStatus.FAILED
        run.error = "".join(traceback.format_exception_only(exc)).strip()[:2000]
    else:
        run.status = RunStatus.SENT
        run.attachments = [
            {"name": item.name, "rows": item.rows, "bytes": item.size, "stored": bool(item.download_url)}
            for item in [info for info, _content, _type in attached] + stored
        ]
        logger.info("Report %s for %s sent to %s", run.pk, period.label, ", ".join(mask_email(a) for a in to))
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "error", "attachments", "finished_at"])
    return run


def report_subscription_deliver(
    *,
    subscription_id: int,
    trigger: str,
    attempt: int = 1,
    period: Period | None = None,
    before: dt.date | None = None,
    requested_by=None,
) -> ReportRun | None:
    """Send a subscription's report: the period given, else the one ending before `before` (default
    today in Nairobi). A scheduled run that fails is tried again after REPORT_RETRY_SECONDS, up to
    REPORT_MAX_ATTEMPTS attempts in all, on the same period."""
    subscription = ReportSubscription.objects.filter(pk=subscription_id).first()
    if subscription is None:
        return None
    if trigger == RunTrigger.SCHEDULE and not subscription.active:
        logger.info("Report subscription %s is paused: not sent", subscription.pk)
        return None
    period = period or report_period(subscription.frequency, before=before or nairobi_today())
    run = report_send(
        period=period,
        frequency=subscription.frequency,
        to=subscription_recipients(subscription),
        file_format=subscription.file_format,
        trigger=trigger,
        subscription=subscription,
        attempt=attempt,
        requested_by=requested_by,
    )
    if run and run.status == RunStatus.FAILED and trigger == RunTrigger.SCHEDULE:
        report_run_schedule_retry(run=run)
    return run


@transaction.atomic
def report_run_schedule_retry(*, run: ReportRun):
    """A ONCE schedule for the next attempt of a failed scheduled run, unless it was the last one."""
    from django_q.models import Schedule

    if run.attempt >= settings.REPORT_MAX_ATTEMPTS or run.subscription_id is None:
        return None
    retry_at = timezone.now() + dt.timedelta(seconds=settings.REPORT_RETRY_SECONDS)
    schedule, _created = Schedule.objects.update_or_create(
        name=f"report-retry-{run.subscription_id}-{run.period_first}-{run.attempt + 1}",
        defaults={
            "func": RUN_TASK,
            "args": repr((run.subscription_id,)),
            "kwargs": repr(
                {
                    "attempt": run.attempt + 1,
                    "period_first": run.period_first.isoformat(),
                    "period_last": run.period_last.isoformat(),
                    "frequency": run.frequency,
                    "q_options": {"timeout": settings.REPORT_TASK_TIMEOUT},
                }
            ),
            "schedule_type": Schedule.ONCE,
            "repeats": -1,  # a ONCE schedule with negative repeats is deleted once it has run
            "next_run": retry_at,
        },
    )
    ReportRun.objects.filter(pk=run.pk).update(retry_at=retry_at)
    run.retry_at = retry_at
    return schedule
