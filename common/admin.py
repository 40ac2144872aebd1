"""Admin actions that change something are Unfold dialogs: a GET only shows the dialog (a confirmation),
and the change happens on its POST, which carries the CSRF token. Nothing changes on a crafted link.

Customers' phone numbers and emails appear masked, except to staff who may see them in full
(ContactMaskingMixin)."""

import json

from django import forms
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse
from unfold.forms import BaseDialogForm
from unfold.widgets import UnfoldAdminTextareaWidget

from common.masking import mask_phones_in

# Defined on orders.Customer (its Meta); named here so that every app's admin asks the same question.
FULL_CONTACT_PERMISSION = "orders.view_full_phone"


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


def sees_full_contacts(request) -> bool:
    return request.user.has_perm(FULL_CONTACT_PERMISSION)


def phones_masked(value) -> str:
    """A stored body or JSON document (callback, event data) as the admin shows it, phone numbers masked."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, cls=DjangoJSONEncoder)
    return mask_phones_in(text)


class ContactMaskingMixin:
    """Lists, pages and inlines name the masked form of a contact (a display method); `masked_contacts` maps
    each such name to the field it masks, which takes its place for staff with FULL_CONTACT_PERMISSION.

    Masked forms are always read-only. An admin using this declares `fields` or `fieldsets` (Django's default
    field list would show the raw fields as well). Search keeps naming the real fields, so a full number is
    found by everyone who may see the list.
    """

    masked_contacts: dict[str, str] = {}

    def _unmask(self, name):
        if isinstance(name, list | tuple):
            return type(name)(self._unmask(part) for part in name)
        return self.masked_contacts.get(name, name) if isinstance(name, str) else name

    def _contact_names(self, request, names):
        return [self._unmask(name) for name in names] if sees_full_contacts(request) else list(names)

    def get_list_display(self, request):
        return self._contact_names(request, super().get_list_display(request))

    def get_fields(self, request, obj=None):
        return self._contact_names(request, super().get_fields(request, obj))

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if not sees_full_contacts(request):
            return fieldsets
        return [
            (title, {**options, "fields": self._unmask(options["fields"])}) for title, options in fieldsets
        ]

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if sees_full_contacts(request):
            return [self._unmask(name) for name in readonly]
        return readonly + [name for name in self.masked_contacts if name not in readonly]


class ReadOnlyAdminMixin:
    """Evidence and records (history, audit, runs, exports): nobody adds, edits or deletes them in the admin."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
