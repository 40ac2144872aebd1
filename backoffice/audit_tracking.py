"""The rows whose edits the audit trail records (audit.tracking), registered from BackofficeConfig.ready().

What customers are told (templates, on/off rules), what alerts and reports watch and whom they reach, who
may sign in and what they may do (users, roles, API tokens). Money rows are not here: their services write
an explicit record of each action.
"""

from django.apps import apps
from django.conf import settings

from audit.tracking import track


def _password_rehash(user, update_fields) -> bool:
    # At sign-in Django re-hashes a password whose hasher is out of date, saving only `password` and clearing
    # `_password` ("Password hash upgrades shouldn't be considered password changes", base_user.py).
    return update_fields == frozenset({"password"}) and getattr(user, "_password", None) is None


TRACKED: dict[str, dict] = {
    "notifications.MessageTemplate": {
        "fields": ["event", "channel", "language", "subject", "body", "html_body"],
    },
    "notifications.NotificationRule": {"fields": ["event", "channel", "enabled"]},
    "reports.AlertRule": {
        "fields": [
            "name",
            "kind",
            "enabled",
            "window_minutes",
            "min_volume",
            "threshold",
            "technical_threshold",
            "baseline_points",
            "baseline_days",
            "grace_seconds",
            "remind_after_minutes",
            "resolve_after_minutes",
            "sms",
        ],
    },
    "reports.ReportSubscription": {
        "fields": ["name", "frequency", "send_at", "weekday", "file_format", "extra_emails", "active"],
        "m2m": ["recipients"],
    },
    "auth.Group": {"fields": ["name"], "m2m": ["permissions"]},
    # Not last_login: it changes at every sign-in, and sign-ins have records of their own.
    settings.AUTH_USER_MODEL: {
        "fields": ["username", "first_name", "last_name", "email", "is_active", "is_staff", "is_superuser"],
        "secret": ["password"],
        "m2m": ["groups", "user_permissions"],
        "ignore": _password_rehash,
    },
    "backoffice.ApiToken": {"fields": ["name", "revoked_at", "expires_at", "scopes"]},
}


def track_edits() -> None:
    for label, options in TRACKED.items():
        track(apps.get_model(label), **options)
