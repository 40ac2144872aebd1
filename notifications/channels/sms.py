"""SMS: the only module that talks to Africa's Talking (africastalking SDK 2.0.3), plus the local backend.

SMS_BACKEND=local records messages for the embedded default and logs each one without its text (phone
masked); =africastalking sends them. SDK quirks handled here (ecosystem.md §5):
- numbers must be +E.164 (+2547...); we store 2547... and convert;
- the SDK returns a dict only when Content-Type is exactly application/json, otherwise the body text;
- non-2xx answers raise AfricasTalkingException(body) without the status code;
- there is no public base-URL option: AFRICASTALKING_API_URL sets the service's private `_baseUrl`.
"""

import json
import logging
import re
import time
import uuid
from decimal import Decimal, InvalidOperation

import africastalking
import requests
import urllib3.exceptions
from africastalking.Service import AfricasTalkingException
from django.conf import settings

from common.phone import e164, mask_msisdn
from notifications.channels import OutcomeUnknownError, PermanentSendError, SendResult, TransientSendError
from notifications.segments import count_segments

logger = logging.getLogger(__name__)

PROVIDER_AT = "africastalking"
PROVIDER_LOCAL = "local"

ACCEPTED_CODES = {100: "Processed", 101: "Sent", 102: "Queued"}
# Per-recipient codes that no retry can fix: the message is rejected (ecosystem.md §5.2).
PERMANENT_CODES = {
    402: "InvalidSenderId: the sender id is not approved for this account",
    403: "InvalidPhoneNumber: the number is not valid",
    404: "UnsupportedNumberType: this number cannot receive SMS",
    406: "UserInBlacklist: the subscriber blocked messages from this sender",
    409: "DoNotDisturbRejection: the subscriber's do-not-disturb settings refused it",
}
# Worth trying again later.
TRANSIENT_CODES = {
    401: "RiskHold: held by the provider's risk checks",
    405: "InsufficientBalance: the Africa's Talking account is out of credit",
    407: "CouldNotRoute: no route to the network right now",
    500: "InternalServerError at the provider",
    501: "GatewayError at the provider",
    502: "RejectedByGateway: the network's gateway refused it for now",
}
_COST_RE = re.compile(r"^\s*([A-Za-z]{3})\s+([0-9.]+)\s*$")


def send_sms(*, to: str, text: str) -> SendResult:
    """Send one SMS to an MSISDN (2547XXXXXXXX). Raises the errors of notifications.channels."""
    if settings.SMS_BACKEND == "africastalking":
        return _send_africastalking(to=to, text=text)
    return _send_local(to=to, text=text)


def _send_local(*, to: str, text: str) -> SendResult:
    # A slow provider (SMS_LOCAL_LATENCY_MS): the message is recorded only once the wait is over, so a sender
    # that dies meanwhile has sent nothing.
    latency_ms = getattr(settings, "SMS_LOCAL_LATENCY_MS", 0)
    if latency_ms > 0:
        time.sleep(latency_ms / 1000)
    message_id = f"local-{uuid.uuid4().hex[:20]}"
    # Never the text: it carries the customer's name and receipt. It is on the Notification row.
    logger.info(
        "SMS (local backend, not sent) to %s [%s]: %s",
        mask_msisdn(to),
        message_id,
        count_segments(text).describe(),
    )
    return SendResult(provider=PROVIDER_LOCAL, message_id=message_id, provider_status="Recorded")


def _service():
    service = africastalking.SMSService(settings.AFRICASTALKING_USERNAME, settings.AFRICASTALKING_API_KEY)
    if settings.AFRICASTALKING_API_URL:
        # `_baseUrl` is private to the SDK (no public option exists); SMSService appends /version1 itself.
        service._baseUrl = settings.AFRICASTALKING_API_URL.rstrip("/") + "/version1"
    return service


def _redact(text: str) -> str:
    """Provider text for logs and last_error: no API key, no full phone number, bounded length."""
    text = str(text)
    if settings.AFRICASTALKING_API_KEY:
        text = text.replace(settings.AFRICASTALKING_API_KEY, "***")
    text = re.sub(r"\+?(\d{3})\d{5,}(\d{3})", r"\1*****\2", text)
    return text.replace("\r", " ").replace("\n", " ")[:400]


def parse_cost(raw) -> tuple[Decimal | None, str]:
    """'KES 0.8000' -> (Decimal('0.8000'), 'KES'); '0' or junk -> (0 or None, '')."""
    if raw in (None, ""):
        return None, ""
    match = _COST_RE.match(str(raw))
    if match:
        return Decimal(match.group(2)), match.group(1).upper()
    try:
        return Decimal(str(raw).strip()), ""
    except InvalidOperation:
        return None, ""


def _send_africastalking(*, to: str, text: str) -> SendResult:
    number = e164(to)
    sender_id = settings.AFRICASTALKING_SENDER_ID or None
    timeout = (settings.AFRICASTALKING_CONNECT_TIMEOUT, settings.AFRICASTALKING_READ_TIMEOUT)
    try:
        answer = _service().send(text, [number], sender_id=sender_id, timeout=timeout)
    except ValueError as exc:  # the SDK's own number check
        raise PermanentSendError(f"Invalid phone number {mask_msisdn(to)}", provider=PROVIDER_AT) from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        if _nothing_sent(exc):
            raise TransientSendError(
                f"Cannot reach Africa's Talking: {_redact(exc)}", provider=PROVIDER_AT
            ) from exc
        raise OutcomeUnknownError(
            f"No answer from Africa's Talking; the message may have been accepted: {_redact(exc)}",
            provider=PROVIDER_AT,
        ) from exc
    except requests.RequestException as exc:
        raise TransientSendError(f"HTTP error: {_redact(exc)}", provider=PROVIDER_AT) from exc
    except AfricasTalkingException as exc:
        # Non-2xx: the SDK hides the status code. 5xx and gateway pages are worth a retry; an auth or
        # request error keeps failing until someone fixes the configuration, and the retry cap ends it.
        raise TransientSendError(
            f"Africa's Talking refused the request: {_redact(exc)}", provider=PROVIDER_AT
        ) from exc
    return parse_send_response(answer, number=number)


def _nothing_sent(exc: Exception) -> bool:
    """True when the request provably never left us (no connection); False when it may have arrived
    (read timeout, connection dropped while waiting for the answer)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError)


def parse_send_response(answer, *, number: str) -> SendResult:
    """Turn the SDK's answer (a dict, or the body as a string) into a SendResult for one recipient."""
    if isinstance(answer, str | bytes):
        try:
            answer = json.loads(answer)
        except ValueError as exc:
            # A 2xx we cannot read: it may well have been sent.
            raise OutcomeUnknownError(
                f"Unreadable answer from Africa's Talking: {_redact(answer[:200])}", provider=PROVIDER_AT
            ) from exc
    data = answer.get("SMSMessageData") if isinstance(answer, dict) else None
    if not isinstance(data, dict):
        raise OutcomeUnknownError(
            f"Unexpected answer from Africa's Talking: {_redact(json.dumps(answer)[:200])}",
            provider=PROVIDER_AT,
        )
    recipients = data.get("Recipients") or []
    if not recipients:
        # e.g. {"Message": "InvalidSenderId", "Recipients": []}: nothing was queued, and it will not be.
        raise PermanentSendError(
            f"Africa's Talking sent nothing: {_redact(data.get('Message', ''))}",
            provider=PROVIDER_AT,
            provider_status=str(data.get("Message", ""))[:64],
        )
    recipient = next((r for r in recipients if r.get("number") == number), recipients[0])
    try:
        code = int(recipient.get("statusCode"))
    except (TypeError, ValueError):
        code = None
    status_word = str(recipient.get("status", ""))[:64]
    if code in ACCEPTED_CODES:
        cost, currency = parse_cost(recipient.get("cost"))
        message_id = str(recipient.get("messageId") or "")
        return SendResult(
            provider=PROVIDER_AT,
            message_id="" if message_id == "None" else message_id,
            provider_status=status_word or ACCEPTED_CODES[code],
            cost=cost,
            cost_currency=currency,
        )
    if code in PERMANENT_CODES:
        raise PermanentSendError(
            f"{code} {PERMANENT_CODES[code]}", provider=PROVIDER_AT, provider_status=status_word
        )
    meaning = TRANSIENT_CODES.get(code, f"{status_word or 'unknown status'}")
    raise TransientSendError(f"{code} {meaning}", provider=PROVIDER_AT, provider_status=status_word)
