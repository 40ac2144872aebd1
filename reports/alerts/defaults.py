"""The alert rules a new installation starts with (created by reports/migrations/0002_alerts.py; the
statement rule by 0003_missing_from_statement_alert.py, for installations made before it).

The thresholds most deployments tune come from the environment (ALERT_WINDOW_MINUTES, ALERT_MIN_ATTEMPTS,
ALERT_SUCCESS_FLOOR, ALERT_TECHNICAL_FLOOR, ALERT_CALLBACK_SILENCE_MINUTES) when the rules are created;
after that the rules are edited in the admin.
"""

from django.conf import settings


def default_rules() -> list[dict]:
    window = settings.ALERT_WINDOW_MINUTES
    attempts = settings.ALERT_MIN_ATTEMPTS
    return [
        {
            "name": "M-Pesa success rate",
            "kind": "success_rate",
            "window_minutes": window,
            "min_volume": attempts,
            "threshold": settings.ALERT_SUCCESS_FLOOR,
            "technical_threshold": settings.ALERT_TECHNICAL_FLOOR,
            "baseline_points": 0.20,
            "baseline_days": 7,
            "remind_after_minutes": 60,
            "resolve_after_minutes": 10,
            "sms": True,
        },
        {
            "name": "Callback silence",
            "kind": "callback_silence",
            "window_minutes": settings.ALERT_CALLBACK_SILENCE_MINUTES,
            "min_volume": 5,
            "grace_seconds": 90,
            "remind_after_minutes": 30,
            "resolve_after_minutes": 5,
            "sms": True,
        },
        {
            "name": "Settled by STK Query instead of callback",
            "kind": "query_share",
            "window_minutes": window,
            "min_volume": attempts,
            "threshold": 0.50,
            "baseline_points": 0.25,
            "baseline_days": 7,
            "remind_after_minutes": 60,
            "resolve_after_minutes": 10,
            "sms": True,
        },
        {
            "name": "Failure spike",
            "kind": "failure_spike",
            "window_minutes": window,
            "min_volume": attempts,
            "threshold": 0.20,
            "remind_after_minutes": 60,
            "resolve_after_minutes": 10,
            "sms": True,
        },
        {
            "name": "Stuck items",
            "kind": "stuck_items",
            "window_minutes": 60,
            "min_volume": 1,
            "remind_after_minutes": 240,
            "resolve_after_minutes": 5,
            "sms": False,
        },
        {
            "name": "Background task failures",
            "kind": "task_failures",
            "window_minutes": 60,
            "min_volume": 1,
            "remind_after_minutes": 240,
            "resolve_after_minutes": 10,
            "sms": False,
        },
        {
            "name": "Task queue not draining",
            "kind": "queue_backlog",
            "window_minutes": 10,
            "min_volume": 1,
            "threshold": 1000,
            "remind_after_minutes": 30,
            "resolve_after_minutes": 5,
            "sms": True,
        },
        {
            "name": "SMS / email failures",
            "kind": "notification_failures",
            "window_minutes": 60,
            "min_volume": 10,
            "threshold": 0.25,
            "remind_after_minutes": 240,
            "resolve_after_minutes": 15,
            "sms": False,
        },
        {
            "name": "Completed but not on the statement",
            "kind": "missing_from_statement",
            "min_volume": 1,
            "remind_after_minutes": 24 * 60,
            "resolve_after_minutes": 5,
            "sms": False,
        },
    ]
