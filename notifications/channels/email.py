"""Email through Django's mailers and django-anymail. The ESP is chosen only in configuration (MAILERS).

The message goes to the mailer alias NOTIFICATIONS_MAILER ("default"); `using=` is the Django 6.1 way
(get_connection()/EMAIL_BACKEND are deprecated). With an Anymail backend the ESP's message id comes back in
`anymail_status` and is what tracking webhooks carry; other backends (console, locmem) give none.
"""

import logging
import smtplib

import requests
import urllib3.exceptions
from anymail.exceptions import AnymailAPIError, AnymailError, AnymailRecipientsRefused
from anymail.message import AnymailMessage
from django.conf import settings

from notifications.channels import OutcomeUnknownError, PermanentSendError, SendResult, TransientSendError
from notifications.masking import mask_email

logger = logging.getLogger(__name__)


def mailer_name(alias: str | None = None) -> str:
    """'anymail.backends.postmark.EmailBackend' -> 'postmark'; Django's console backend -> 'console'."""
    alias = alias or settings.NOTIFICATIONS_MAILER
    backend = settings.MAILERS.get(alias, {}).get("BACKEND", "smtp") if hasattr(settings, "MAILERS") else ""
    parts = backend.split(".")
    return parts[-2] if len(parts) >= 2 else backend or "smtp"


def send_email(
    *, to: str, subject: str, text: str, html: str = "", tags: list[str] | None = None, metadata=None
) -> SendResult:
    alias = settings.NOTIFICATIONS_MAILER
    provider = mailer_name(alias)
    message = AnymailMessage(
        subject=subject,
        body=text,
        from_email=settings.NOTIFICATIONS_FROM_EMAIL,
        to=[to],
        tags=tags or [],
        metadata=metadata or {},
    )
    if html:
        message.attach_alternative(html, "text/html")
    try:
        message.send(using=alias)
    except AnymailRecipientsRefused as exc:
        raise PermanentSendError(
            f"The email service refused {mask_email(to)}", provider=provider, provider_status="rejected"
        ) from exc
    except AnymailAPIError as exc:
        raise _classify_api_error(exc, provider) from exc
    except AnymailError as exc:
        # Serialisation or unsupported-feature problems: the same message fails the same way again.
        raise PermanentSendError(str(exc)[:400], status="failed", provider=provider) from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise TransientSendError(f"Mail server error: {exc}"[:400], provider=provider) from exc
    status = message.anymail_status
    message_id = status.message_id if isinstance(status.message_id, str | int) else ""
    statuses = sorted(status.status or [])
    logger.info("Email to %s sent through %s (%s)", mask_email(to), provider, ",".join(statuses) or "ok")
    return SendResult(
        provider=provider,
        message_id=str(message_id) if message_id is not None else "",
        provider_status=",".join(statuses)[:64],
    )


def _classify_api_error(exc: AnymailAPIError, provider: str) -> Exception:
    if isinstance(exc, requests.RequestException) and exc.status_code is None:
        # A network error wrapped by Anymail (the exception is also the original requests type).
        reason = (
            getattr(exc.__cause__.args[0], "reason", None) if exc.__cause__ and exc.__cause__.args else None
        )
        if isinstance(exc, requests.ConnectTimeout) or isinstance(
            reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError
        ):
            return TransientSendError(
                f"Cannot reach the email service: {exc.__cause__}"[:400], provider=provider
            )
        return OutcomeUnknownError(
            "The email service did not answer; the message may have been accepted", provider=provider
        )
    code = exc.status_code
    detail = f"{provider} answered HTTP {code}"
    if code is None or code >= 500 or code in (408, 429):
        return TransientSendError(detail if code else str(exc)[:400], provider=provider)
    if code in (401, 403):
        return PermanentSendError(
            f"{detail}: check the email service credentials", status="failed", provider=provider
        )
    return PermanentSendError(f"{detail}: the message was refused", provider=provider)
