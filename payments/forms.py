"""Admin dialog forms for refunds (Unfold action dialogs). They validate input; the services decide."""

from django import forms
from unfold.forms import BaseDialogForm
from unfold.widgets import (
    UnfoldAdminDecimalFieldWidget,
    UnfoldAdminSelectWidget,
    UnfoldAdminTextareaWidget,
    UnfoldAdminTextInputWidget,
)


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
