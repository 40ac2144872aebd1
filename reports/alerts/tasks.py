"""django-q2 entry point of the minute's alert evaluation: JSON-able result, the work in the service."""

from reports.alerts.services import alert_evaluate_all


def evaluate_alerts() -> dict[str, int]:
    return alert_evaluate_all()
