"""Africa's Talking SMS delivery reports: form-encoded POSTs to a URL with a secret token in the path."""

import logging

from django.http import HttpResponse, HttpResponseBadRequest, HttpResponseNotFound
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from common.phone import mask_msisdn
from notifications.hooks import token_matches
from notifications.models import Channel
from notifications.services import AT_FINAL_STATUSES, notification_delivery_report_apply

logger = logging.getLogger(__name__)


def _clean(value: str, limit: int = 128) -> str:
    return (value or "").replace("\r", " ").replace("\n", " ").strip()[:limit]


@csrf_exempt
@require_POST
def sms_delivery_report(request, token: str):
    if not token_matches(token):
        return HttpResponseNotFound()
    message_id = _clean(request.POST.get("id", ""))
    status = _clean(request.POST.get("status", ""), 64)
    if not message_id or not status:
        return HttpResponseBadRequest("Form fields 'id' and 'status' are required.")
    failure_reason = _clean(request.POST.get("failureReason", ""), 200)
    notification = notification_delivery_report_apply(
        channel=Channel.SMS,
        provider_message_id=message_id,
        provider_status=status,
        new_status=AT_FINAL_STATUSES.get(status),
        reason=failure_reason,
    )
    phone = mask_msisdn(_clean(request.POST.get("phoneNumber", ""), 20).lstrip("+"))
    if notification is None:
        # Answer 200 all the same: an error would only make Africa's Talking send it again.
        logger.warning("SMS delivery report for unknown message %s (%s, %s)", message_id, status, phone)
    else:
        logger.info(
            "SMS delivery report for notification #%s: %s%s",
            notification.pk,
            status,
            f" ({failure_reason})" if failure_reason else "",
        )
    return HttpResponse("OK", content_type="text/plain")
