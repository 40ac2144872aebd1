"""Daraja's inbound requests. Store first, answer quickly, never 500.

Daraja does not sign callbacks (daraja.md §8): the defences are the secret token in the URL, an optional
source-IP allowlist, and trusting only CheckoutRequestIDs we created, with the amount we asked for.
"""

import ipaddress
import logging

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.utils.log import log_response
from django.views.decorators.csrf import csrf_exempt

from common.net import client_ip
from common.outage import RETRY_AFTER_SECONDS, outage_kind, outage_log
from payments import inbox as inbox_service
from payments.callback_urls import token_matches
from payments.models import InboxKind, InboxStatus

logger = logging.getLogger(__name__)

ACK = {"ResultCode": 0, "ResultDesc": "Accepted"}
KEPT_HEADERS = ("CONTENT_TYPE", "CONTENT_LENGTH", "HTTP_USER_AGENT", "HTTP_X_FORWARDED_FOR", "HTTP_HOST")


def _refuse(status: int, desc: str, code: str = "rejected") -> JsonResponse:
    # Daraja reads ResultCode/ResultDesc; the API's standard error body rides along for everyone else.
    body = {"ResultCode": 1, "ResultDesc": desc, "error": {"code": code, "message": desc, "fields": {}}}
    return JsonResponse(body, status=status)


def ip_allowed(ip: str | None) -> bool:
    allowed = settings.MPESA_CALLBACK_ALLOWED_IPS
    if not allowed:
        return True
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(entry, strict=False) for entry in allowed)


def _headers(request: HttpRequest) -> dict:
    return {name: request.META[name][:300] for name in KEPT_HEADERS if name in request.META}


def _read_capped(request: HttpRequest) -> tuple[bytes, int] | None:
    """The body, or None when it is over the cap (a lying Content-Length included)."""
    cap = settings.MPESA_CALLBACK_MAX_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > cap:
        return None
    body = request.read(cap + 1)
    if len(body) > cap:
        return None
    return body, len(body)


def receive(request: HttpRequest, *, kind: str, token: str | None) -> JsonResponse:
    """The shared front door of every Daraja endpoint: store, then process by kind (payments.inbox)."""
    response = _receive(request, kind=kind, token=token)
    if response.status_code >= 400:
        # Logged here, with the URL secret masked: Django's own line would be "Bad Request: <full path>"
        # (and carry the request to error reporters), putting the callback token in the logs.
        log_response("%s: %s", response.reason_phrase, _masked_path(request, token), response=response)
    return response


def _masked_path(request: HttpRequest, token: str | None) -> str:
    return request.path.replace(token, "<token>") if token else request.path


def _receive(request: HttpRequest, *, kind: str, token: str | None) -> JsonResponse:
    if request.method != "POST":
        response = _refuse(405, "Method not allowed", "method_not_allowed")
        response["Allow"] = "POST"
        return response
    if token is not None and not token_matches(token):
        return _refuse(404, "Not found", "not_found")
    ip = client_ip(request)
    content_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    try:
        read = _read_capped(request)
        if read is None:
            inbox_service.inbox_store(
                kind=kind,
                body=b"",
                headers=_headers(request),
                source_ip=ip,
                path=_masked_path(request, token),
                status=InboxStatus.REJECTED,
                error="Body larger than MPESA_CALLBACK_MAX_BYTES; not stored.",
            )
            return _refuse(413, "Body too large", "payload_too_large")
        body, _size = read
        if content_type not in ("application/json", ""):
            inbox_service.inbox_store(
                kind=kind,
                body=body,
                headers=_headers(request),
                source_ip=ip,
                path=_masked_path(request, token),
                status=InboxStatus.REJECTED,
                error=f"Unsupported Content-Type {content_type!r}",
            )
            return _refuse(415, "Content-Type must be application/json", "unsupported_media_type")
        if not ip_allowed(ip):
            # Quarantined, not dropped: if Safaricom's addresses change, staff can reprocess it.
            inbox_service.inbox_store(
                kind=kind,
                body=body,
                headers=_headers(request),
                source_ip=ip,
                path=_masked_path(request, token),
                status=InboxStatus.REJECTED,
                error="Source IP not in MPESA_CALLBACK_ALLOWED_IPS",
            )
            logger.warning("Daraja request from a source outside the allowlist quarantined")
            return _refuse(403, "Forbidden", "forbidden")
        malformed = inbox_service.inbox_malformed(kind=kind, body=body)
        if not malformed:
            duplicate_of = inbox_service.inbox_duplicate_of(kind=kind, body=body)
            if duplicate_of is not None:
                # A byte-identical repeat of a request already processed: counted on the first row, not
                # stored again.
                inbox_service.inbox_repeat_received(inbox_id=duplicate_of)
                return JsonResponse(ACK)
        inbox = inbox_service.inbox_store(
            kind=kind,
            body=body,
            headers=_headers(request),
            source_ip=ip,
            path=_masked_path(request, token),
            status=InboxStatus.REJECTED if malformed else InboxStatus.RECEIVED,
            error=malformed,
        )
        if malformed:
            return _refuse(400, malformed.splitlines()[0][:200], "malformed")
        if inbox_service.apply_in_worker():
            # Stored and committed: Daraja may stop retrying. A task applies it; if the queue lost it,
            # the inbox sweeper does.
            inbox_service.inbox_enqueue("payments.tasks.inbox_apply", inbox.pk)
            return JsonResponse(ACK)
        inbox = inbox_service.inbox_process(inbox_id=inbox.pk)
    except DatabaseError as exc:
        if outage_kind(exc):
            outage_log.record("database", exc, _masked_path(request, token))
        else:
            logger.exception("Database error while receiving a Daraja request")
        # 503, not 200: a sender that retries should retry; reconciliation covers one that doesn't.
        response = _refuse(503, "Temporarily unavailable", "unavailable")
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        response._has_been_logged = True
        return response
    if inbox.status == InboxStatus.REJECTED:
        return _refuse(400, inbox.error.splitlines()[0][:200] if inbox.error else "Rejected")
    return JsonResponse(ACK)


@csrf_exempt
def stk_callback(request: HttpRequest, token: str) -> JsonResponse:
    return receive(request, kind=InboxKind.STK_CALLBACK, token=token)


@csrf_exempt
def stk_callback_legacy(request: HttpRequest) -> JsonResponse:
    """The original service's path, `POST /api/v1/payments/mpesa/callback`: it has no secret, so whatever
    arrives here only makes us ask Daraja (STK Query) about that CheckoutRequestID."""
    if not settings.MPESA_LEGACY_CALLBACK_ENABLED:
        return _refuse(404, "Not found", "not_found")
    return receive(request, kind=InboxKind.STK_CALLBACK_LEGACY, token=None)


@csrf_exempt
def daraja_result(request: HttpRequest, token: str) -> JsonResponse:
    """ResultURL of Reversal, B2C and Transaction Status."""
    return receive(request, kind=InboxKind.RESULT, token=token)


@csrf_exempt
def daraja_queue_timeout(request: HttpRequest, token: str) -> JsonResponse:
    """QueueTimeOutURL: the request waited too long in Daraja's queue; its outcome is unknown, not failed."""
    return receive(request, kind=InboxKind.QUEUE_TIMEOUT, token=token)
