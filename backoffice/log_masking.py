"""Keep URL secrets out of every log line.

Daraja and Africa's Talking do not sign their callbacks, so the URLs we give them carry a secret path
segment (`/hooks/daraja/stk/<token>/`, `/hooks/sms/delivery/<token>/`). Request lines, "Not Found: <path>"
warnings and tracebacks would write it to the logs, and whoever reads the logs could forge callbacks.

Two masks, both applied to every record: the path segment after `/hooks/<provider>/<kind>/` (every
secret-bearing route follows that shape; tests/backoffice/test_log_masking.py walks the URLconf to keep it
so), and the configured secret values themselves wherever they appear: the two URL tokens (explicit or
derived) and the credentials in _SECRET_SETTINGS. The second needs Django's settings and is skipped in a
process that has none (gunicorn's arbiter before it loads the app).

Used by the LOGGING filter in settings (every Django and django-q2 handler) and by
backoffice.gunicorn_logging (gunicorn's access and error logs).
"""

import logging
import re
from collections.abc import Callable
from functools import lru_cache

from django.conf import settings

MASK = "***"
_SEGMENT = r"[^/\s?#\"'<>]+"
SECRET_PATH_RE = re.compile(rf"(/hooks/{_SEGMENT}/{_SEGMENT}/){_SEGMENT}")
# Credentials that must never be logged, besides the two URL tokens.
_SECRET_SETTINGS = (
    "SECRET_KEY",
    "MPESA_CONSUMER_SECRET",
    "MPESA_PASSKEY",
    "MPESA_INITIATOR_PASSWORD",
    "MPESA_SECURITY_CREDENTIAL",
    "AFRICASTALKING_API_KEY",
)
# Shorter values would mask ordinary words; real secrets are far longer.
_MIN_SECRET_LENGTH = 8
_traceback_formatter = logging.Formatter()


def mask_secrets(text: str) -> str:
    return secret_masker()(text)


def secret_masker() -> Callable[[str], str]:
    """A masking function for many strings at once (settings are looked up once)."""
    values = _configured_secrets_re()

    def mask(text: str) -> str:
        if values is not None:
            text = values.sub(MASK, text)
        if "/hooks/" in text:
            text = SECRET_PATH_RE.sub(rf"\g<1>{MASK}", text)
        return text

    return mask


def _configured_secrets_re() -> re.Pattern | None:
    if not settings.configured:
        return None
    try:
        names = (*_SECRET_SETTINGS, "MPESA_CALLBACK_TOKEN", "NOTIFICATIONS_WEBHOOK_TOKEN")
        return _secrets_re_for(tuple(str(getattr(settings, name, "") or "") for name in names))
    except Exception:  # a log filter must never break logging
        return None


@lru_cache(maxsize=8)
def _secrets_re_for(values: tuple[str, ...]) -> re.Pattern | None:
    # `values` is the cache key: the URL tokens are derived from SECRET_KEY when not set explicitly.
    from notifications.hooks import webhook_token
    from payments.callback_urls import callback_token

    candidates = {*values, callback_token(), webhook_token()}
    # Longest first, so a secret containing another is masked whole.
    secrets = sorted((v for v in candidates if len(v) >= _MIN_SECRET_LENGTH), key=len, reverse=True)
    return re.compile("|".join(map(re.escape, secrets))) if secrets else None


def mask_record(record: logging.LogRecord) -> None:
    """Mask the record in place: its message (arguments merged in), traceback and stack."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: logging reports it itself when the handler formats it
        return
    masked = mask_secrets(message)
    if masked != message:
        record.msg, record.args = masked, None
    if record.exc_info and not record.exc_text:
        # Formatters reuse exc_text when it is set, so the traceback they print is the masked one.
        record.exc_text = _traceback_formatter.formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = mask_secrets(record.exc_text)
    if record.stack_info:
        record.stack_info = mask_secrets(record.stack_info)


class SecretMaskingFilter(logging.Filter):
    """Masks URL secrets in every record it sees; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        mask_record(record)
        return True
