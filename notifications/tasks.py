"""django-q2 entry points: plain module functions with JSON-able arguments; the work is in services."""

from notifications import services


def notification_send_task(notification_id: int) -> str:
    return services.notification_send(notification_id=notification_id).status


def notification_sweep_task() -> dict[str, int]:
    return services.notification_sweep()
