"""Reads for the admin: template previews against real payments."""

from dataclasses import dataclass

from notifications.context import SAMPLE_CONTEXT, format_kes, order_context, payment_context
from notifications.models import Channel, MessageTemplate, NotificationEvent
from notifications.rendering import RenderedMessage, render_message
from notifications.segments import SegmentInfo, count_segments
from payments.models import Payment, PaymentMethod

_PAYMENT_STATUS_FOR_EVENT = {
    NotificationEvent.PAYMENT_INITIATED: "initiated",
    NotificationEvent.PAYMENT_COMPLETED: "completed",
    NotificationEvent.PAYMENT_FAILED: "failed",
}


@dataclass(frozen=True)
class TemplatePreview:
    rendered: RenderedMessage
    segments: SegmentInfo | None
    source: str  # what the preview was rendered against
    payment_id: int | None


def _example_payment(template: MessageTemplate) -> Payment | None:
    payments = Payment.objects.select_related("order__customer")
    if template.event == NotificationEvent.ORDER_CONFIRMED:
        payments = payments.filter(method=PaymentMethod.COD)
    else:
        payments = payments.filter(method=PaymentMethod.MPESA)
    wanted = _PAYMENT_STATUS_FOR_EVENT.get(template.event)
    return (payments.filter(status=wanted).first() if wanted else None) or payments.first()


def message_template_preview(*, template: MessageTemplate, payment_id: int | None = None) -> TemplatePreview:
    payment = None
    if payment_id:
        payment = Payment.objects.select_related("order__customer").filter(pk=payment_id).first()
    payment = payment or _example_payment(template)
    language = template.language
    if payment is None:
        context, source = dict(SAMPLE_CONTEXT), "sample data (no payments yet)"
    elif template.event in (NotificationEvent.ORDER_CONFIRMED, NotificationEvent.ORDER_CANCELLED):
        context = order_context(payment.order, language=language)
        source = f"order {payment.order.reference} (payment #{payment.pk})"
    else:
        context = payment_context(payment, language=language)
        if template.event in (NotificationEvent.REFUND_SUCCEEDED, NotificationEvent.REFUND_FAILED):
            # Illustrative: the whole payment as the refund.
            context.update(refund_amount=format_kes(payment.amount, payment.currency), refund_id=0)
        source = f"payment #{payment.pk} ({payment.get_status_display()}, order {payment.order.reference})"
    rendered = render_message(
        channel=template.channel,
        subject=template.subject,
        body=template.body,
        html_body=template.html_body,
        context=context,
    )
    segments = count_segments(rendered.text) if template.channel == Channel.SMS else None
    return TemplatePreview(rendered, segments, source, payment.pk if payment else None)
