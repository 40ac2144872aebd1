"""Email tracking events from any ESP (anymail's `tracking` signal) -> the Notification they belong to."""

import contextlib
import logging

from notifications.masking import mask_email
from notifications.models import Channel, NotificationStatus
from notifications.services import (
    EMAIL_FINAL_STATUSES,
    EMAIL_PROOF_OF_DELIVERY,
    notification_delivery_report_apply,
)

logger = logging.getLogger(__name__)


def on_email_tracking(sender, event, esp_name, **kwargs) -> None:
    event_type = str(event.event_type or "")
    new_status = EMAIL_FINAL_STATUSES.get(event_type)
    metadata = event.metadata or {}
    notification_id = None
    with contextlib.suppress(TypeError, ValueError):
        notification_id = int(metadata.get("notification_id"))
    notification = notification_delivery_report_apply(
        channel=Channel.EMAIL,
        provider_message_id=str(event.message_id or ""),
        provider_status=event_type,
        new_status=new_status,
        reason=" ".join(filter(None, [event.reject_reason, event.description, event.mta_response]))[:500],
        recipient=event.recipient or "",
        notification_id=notification_id,
    )
    if notification is None:
        logger.warning(
            "%s tracking event %s for unknown message %s (%s)",
            esp_name,
            event_type,
            event.message_id,
            mask_email(event.recipient or ""),
        )
        return
    if event_type in EMAIL_PROOF_OF_DELIVERY and notification.status == NotificationStatus.SENT:
        notification_delivery_report_apply(
            channel=Channel.EMAIL,
            provider_message_id=notification.provider_message_id,
            provider_status=event_type,
            new_status=NotificationStatus.DELIVERED,
            notification_id=notification.pk,
        )
