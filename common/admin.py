"""Admin actions that change something are Unfold dialogs: a GET only shows the dialog (a confirmation),
and the change happens on its POST, which carries the CSRF token. Nothing changes on a crafted link."""

from django import forms
from django.http import HttpResponse
from unfold.forms import BaseDialogForm
from unfold.widgets import UnfoldAdminTextareaWidget


class ConfirmForm(BaseDialogForm):
    """No input beyond the confirmation itself (BaseDialogForm's hidden `_form_submitted`)."""


class NoteForm(BaseDialogForm):
    note = forms.CharField(
        required=False, max_length=500, widget=UnfoldAdminTextareaWidget(attrs={"rows": 2}), label="Note"
    )


def confirm_dialog(title: str, description: str, submit: str, form_class=ConfirmForm) -> dict:
    return {"title": title, "description": description, "form_class": form_class, "form_submit_text": submit}


def dialog_redirect(url: str) -> HttpResponse:
    """Dialogs are posted through HTMX: it follows HX-Redirect (messages show on the page it lands on)."""
    return HttpResponse(headers={"HX-Redirect": url})
