"""Reads about alerts: the unresolved ones, for the dashboard, the sidebar badge and report emails."""

from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet
from django.urls import reverse

from reports.models import ALERT_ACTIVE_STATUSES, Alert, AlertStatus

VIEW_PERMISSION = "reports.view_alert"
DASHBOARD_LIMIT = 5


def active_alerts() -> QuerySet[Alert]:
    """Open and acknowledged alerts, oldest first."""
    return (
        Alert.objects.filter(status__in=ALERT_ACTIVE_STATUSES)
        .select_related("rule", "acknowledged_by")
        .order_by("opened_at", "pk")
    )


def active_alerts_url() -> str:
    return reverse("admin:reports_alert_changelist") + "?active=yes"


def can_see_alerts(user) -> bool:
    return bool(user and user.is_active and user.is_staff and user.has_perm(VIEW_PERMISSION))


@dataclass(frozen=True)
class DashboardAlerts:
    count: int  # open and acknowledged
    unacknowledged: int  # open: nobody has said they are on it
    alerts: list[Alert]  # the oldest DASHBOARD_LIMIT
    url: str  # the admin list of all of them


def dashboard_alerts(user) -> DashboardAlerts | None:
    """What the dashboard shows of the unresolved alerts; None for a user who may not see alerts."""
    if not can_see_alerts(user):
        return None
    counts = Alert.objects.filter(status__in=ALERT_ACTIVE_STATUSES).aggregate(
        count=Count("pk"), unacknowledged=Count("pk", filter=Q(status=AlertStatus.OPEN))
    )
    alerts = list(active_alerts()[:DASHBOARD_LIMIT]) if counts["count"] else []
    return DashboardAlerts(**counts, alerts=alerts, url=active_alerts_url())


def active_alerts_badge(request) -> str:
    """The sidebar badge (settings.UNFOLD): unresolved alerts, or nothing."""
    count = Alert.objects.filter(status__in=ALERT_ACTIVE_STATUSES).count()
    return str(count) if count else ""
