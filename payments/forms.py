"""Admin dialog forms (Unfold action dialogs). They validate input; the services decide."""

from django import forms
from unfold.forms import BaseDialogForm
from unfold.widgets import (
    UnfoldAdminDecimalFieldWidget,
    UnfoldAdminIntegerFieldWidget,
    UnfoldAdminSelectWidget,
    UnfoldAdminTextareaWidget,
    UnfoldAdminTextInputWidget,
)

from payments.models import CallbackInbox
from payments.selectors import callback_candidates


class RefundRequestForm(BaseDialogForm):
    amount = forms.DecimalField(
        required=False,
        min_value=1,
        max_digits=12,
        decimal_places=0,
        widget=UnfoldAdminDecimalFieldWidget,
        help_text="Whole shillings. Leave empty to refund everything not yet refunded (a full reversal).",
    )
    reason = forms.CharField(
        max_length=200, widget=UnfoldAdminTextInputWidget, help_text="The customer sees this reason."
    )
    internal_note = forms.CharField(
        required=False, widget=UnfoldAdminTextareaWidget(attrs={"rows": 3}), help_text="Staff only."
    )


class RefundRejectForm(BaseDialogForm):
    note = forms.CharField(
        required=False, max_length=500, widget=UnfoldAdminTextareaWidget(attrs={"rows": 3}), label="Why"
    )


class RefundResolveForm(BaseDialogForm):
    outcome = forms.ChoiceField(
        choices=[("succeeded", "The money was paid out"), ("failed", "The money was not paid out")],
        widget=UnfoldAdminSelectWidget,
    )
    transaction_id = forms.CharField(
        required=False,
        max_length=32,
        widget=UnfoldAdminTextInputWidget,
        label="M-Pesa receipt of the refund",
        help_text="From the M-Pesa org portal statement, when it was paid out.",
    )
    note = forms.CharField(
        max_length=500,
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 3}),
        help_text="How you know (e.g. the statement line).",
    )


class ReviewResolveForm(BaseDialogForm):
    outcome = forms.ChoiceField(
        choices=[
            ("paid", "The money arrived: the payment is paid"),
            ("not_paid", "No money arrived: it failed"),
        ],
        widget=UnfoldAdminSelectWidget,
    )
    receipt = forms.CharField(
        required=False,
        max_length=32,
        widget=UnfoldAdminTextInputWidget,
        label="M-Pesa receipt",
        help_text="Needed for paid when M-Pesa sent none (from the M-Pesa statement).",
    )
    note = forms.CharField(
        max_length=500,
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 3}),
        help_text="How you know (e.g. the statement line).",
    )


class ReceiptForm(BaseDialogForm):
    receipt = forms.CharField(max_length=32, widget=UnfoldAdminTextInputWidget, label="M-Pesa receipt")
    note = forms.CharField(
        required=False,
        max_length=500,
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 2}),
        help_text="Where it comes from (e.g. the statement line).",
    )


class NotCollectedForm(BaseDialogForm):
    reason = forms.CharField(
        max_length=300,
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 2}),
        help_text="E.g. the customer refused the delivery, nobody was there.",
    )


class AttachCallbackForm(BaseDialogForm):
    """Pick the payment an unmatched callback belongs to: a candidate, or any payment by its number."""

    candidate = forms.ChoiceField(required=False, widget=UnfoldAdminSelectWidget, label="Candidate payment")
    payment_id = forms.IntegerField(
        required=False, min_value=1, widget=UnfoldAdminIntegerFieldWidget, label="Or payment number"
    )
    note = forms.CharField(
        required=False, max_length=500, widget=UnfoldAdminTextareaWidget(attrs={"rows": 2}), label="Note"
    )

    def __init__(self, request, object_id=None, *args, **kwargs):
        super().__init__(request, object_id, *args, **kwargs)
        inbox = CallbackInbox.objects.filter(pk=object_id).first() if object_id else None
        candidates = callback_candidates(inbox) if inbox is not None else []
        self.fields["candidate"].choices = [("", "-")] + [
            (
                str(p.pk),
                f"#{p.pk} · order {p.order.reference} · KES {p.amount} · {p.masked_phone} · "
                f"{p.get_status_display()} · {p.created_at:%Y-%m-%d %H:%M}",
            )
            for p in candidates
        ]

    def clean(self):
        cleaned = super().clean()
        chosen = cleaned.get("payment_id") or (
            int(cleaned["candidate"]) if cleaned.get("candidate") else None
        )
        if not chosen:
            raise forms.ValidationError("Choose a candidate or give a payment number.")
        cleaned["chosen_payment_id"] = chosen
        return cleaned
