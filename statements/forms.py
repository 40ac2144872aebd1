"""The statement import page's form and the reconciliation exceptions' dialog forms. They validate input;
statements.imports and statements.resolution decide (and check the permission again)."""

from pathlib import PurePath

from django import forms
from django.conf import settings
from django.template.defaultfilters import filesizeformat
from unfold.forms import BaseDialogForm
from unfold.widgets import (
    UnfoldAdminFileFieldWidget,
    UnfoldAdminIntegerFieldWidget,
    UnfoldAdminTextareaWidget,
    UnfoldAdminTextInputWidget,
)

from statements.models import ReconciliationItem

STATEMENT_EXTENSIONS = (".csv", ".xlsx")


class StatementImportForm(forms.Form):
    file = forms.FileField(
        widget=UnfoldAdminFileFieldWidget(attrs={"accept": ",".join(STATEMENT_EXTENSIONS)}),
        label="Statement file",
        help_text="The organisation's M-PESA statement as the M-PESA org portal exports it: CSV or XLSX.",
    )
    shortcode = forms.CharField(
        required=False,
        max_length=12,
        widget=UnfoldAdminTextInputWidget,
        label="Shortcode",
        help_text="Only when the file does not name its shortcode (the preamble's Organization / "
        "Short Code line); when it does, the two must agree.",
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if PurePath(upload.name or "").suffix.lower() not in STATEMENT_EXTENSIONS:
            raise forms.ValidationError("Choose a .csv or .xlsx file exported from the M-PESA org portal.")
        limit = settings.STATEMENT_IMPORT_MAX_BYTES
        if upload.size > limit:
            raise forms.ValidationError(
                f"The file is {filesizeformat(upload.size)}; statements up to {filesizeformat(limit)} are read."
            )
        return upload

    def clean_shortcode(self):
        shortcode = self.cleaned_data["shortcode"].strip()
        if shortcode and not shortcode.isdigit():
            raise forms.ValidationError("A shortcode is digits only (e.g. 600999).")
        return shortcode


class AttachPaymentForm(BaseDialogForm):
    payment_id = forms.IntegerField(
        min_value=1,
        widget=UnfoldAdminIntegerFieldWidget,
        label="Payment number",
        help_text="The payment this statement line is the money of.",
    )
    note = forms.CharField(
        required=False, max_length=500, widget=UnfoldAdminTextareaWidget(attrs={"rows": 2}), label="Note"
    )

    def __init__(self, request, object_id=None, *args, **kwargs):
        super().__init__(request, object_id, *args, **kwargs)
        item = (
            ReconciliationItem.objects.select_related("suggested_payment__order").filter(pk=object_id).first()
            if object_id
            else None
        )
        suggested = item.suggested_payment if item is not None else None
        if suggested is not None:
            self.fields["payment_id"].initial = suggested.pk
            self.fields["payment_id"].help_text = (
                f"Suggested: #{suggested.pk} · order {suggested.order.reference} · KES {suggested.amount} · "
                f"{suggested.masked_phone} · {suggested.get_status_display()}. Check it against the line first."
            )


class MarkExpectedForm(BaseDialogForm):
    note = forms.CharField(
        max_length=500,
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 3}),
        label="Why it is expected",
        help_text="E.g. a paybill payment taken outside the shop, a bank settlement. Kept on the exception.",
    )


class OpenRefundForm(BaseDialogForm):
    reason = forms.CharField(
        max_length=200,
        widget=UnfoldAdminTextInputWidget,
        label="Reason",
        help_text="The customer sees this reason.",
    )
