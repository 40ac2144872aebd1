"""Exports in the admin: an "Export" button above the exportable lists (ExportListMixin), and the list of
one's own exports with their downloads (ExportAdmin).

The export dialog is opened like every Unfold dialog (a GET shows it and changes nothing), but its form is
posted by the browser itself, not through HTMX: the answer to that POST may be the file, which a
script-driven request could not hand to the browser as a download. Downloads of stored exports are POSTs
as well (each one is an audit record), from a button inside the page's own form, whose CSRF token it sends.
"""

from urllib.parse import urlsplit

from django import forms
from django.apps import apps
from django.conf import settings
from django.contrib import admin, messages
from django.http import FileResponse, Http404, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html
from unfold.admin import ModelAdmin
from unfold.contrib.filters.admin import ChoicesDropdownFilter
from unfold.decorators import action, display
from unfold.widgets import UnfoldAdminRadioSelectWidget

from common.admin import ReadOnlyAdminMixin, dialog_redirect, sees_full_contacts
from exports import services
from exports.exceptions import ExportError, ExportUnavailable
from exports.models import Export, ExportFormat, ExportStatus
from exports.selectors import exports_of, list_rows

EXPORT_STATUS_COLOURS = {
    ExportStatus.QUEUED: "info",
    ExportStatus.RUNNING: "info",
    ExportStatus.READY: "success",
    ExportStatus.FAILED: "danger",
    ExportStatus.EXPIRED: "warning",
}


class ExportForm(forms.Form):
    format = forms.ChoiceField(
        choices=ExportFormat.choices,
        initial=ExportFormat.CSV,
        widget=UnfoldAdminRadioSelectWidget,
        label="Format",
    )
    # The list's query string (filters, search, ordering), read from the page the dialog was opened on.
    query = forms.CharField(required=False, widget=forms.HiddenInput)


def file_response(export: Export, file) -> FileResponse:
    response = FileResponse(
        file,
        as_attachment=True,
        filename=services.download_name(export),
        content_type=services.CONTENT_TYPES[export.format],
    )
    add_never_cache_headers(response)  # customer rows: never in a shared cache
    return response


class ExportListMixin:
    """Adds "Export" above a ModelAdmin's list: the rows the list shows for its current filters, search and
    ordering, as CSV or XLSX, in the columns of `export_columns` (exports.columns.ExportColumn)."""

    export_columns: tuple = ()
    actions_list = ["export_list"]

    def has_export_list_permission(self, request) -> bool:
        return request.user.has_perm(services.EXPORT_PERMISSION) and self.has_view_permission(request)

    def _changelist_url(self, query: str = "") -> str:
        opts = self.model._meta
        url = reverse(f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_changelist")
        return f"{url}?{query}" if query else url

    def _page_query(self, request) -> str:
        """The query string of the list page the dialog was opened from (HTMX names it; the Referer too)."""
        page = request.headers.get("HX-Current-URL") or request.headers.get("Referer") or ""
        parts = urlsplit(page)
        return parts.query if parts.path == self._changelist_url() else ""

    @action(description="Export", icon="download", permissions=["export_list"])
    def export_list(self, request):
        if request.method != "POST":
            return self._export_dialog(request)
        form = ExportForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Choose CSV or XLSX.")
            return self._back(request, self._changelist_url())
        query = form.cleaned_data["query"]
        try:
            export = services.export_create(
                actor=request.user,
                list_label=self.model._meta.label_lower,
                query=query,
                fmt=form.cleaned_data["format"],
            )
            if export.status == ExportStatus.READY:
                export, file = services.export_download(actor=request.user, export_id=export.pk)
                return file_response(export, file)
        except ExportError as exc:
            messages.error(request, exc.message)
            return self._back(request, self._changelist_url())
        messages.info(request, "Your export is being written; it will be listed under Exports.")
        return self._back(request, self._changelist_url(export.query))

    # Makes Unfold open the action in its modal (see the module docstring for why the dialog is ours).
    export_list.dialog = {"title": "Export"}

    @staticmethod
    def _back(request, url: str):
        return dialog_redirect(url) if request.headers.get("HX-Request") else redirect(url)

    def _export_dialog(self, request):
        query = self._page_query(request)
        context = {
            "title": f"Export {self.model._meta.verbose_name_plural}",
            "action_url": request.path,
            "form": ExportForm(initial={"query": query}),
            "full_contacts": sees_full_contacts(request),
            "sync_max_rows": settings.EXPORT_SYNC_MAX_ROWS,
            "retention_hours": settings.EXPORT_RETENTION_HOURS,
        }
        try:
            rows = list_rows(user=request.user, list_label=self.model._meta.label_lower, query=query)
        except ExportError as exc:
            context["error"] = exc.message
        else:
            context.update(
                count=rows.count,
                filtered=bool(rows.query),
                in_background=rows.count > settings.EXPORT_SYNC_MAX_ROWS,
            )
        return TemplateResponse(request, "admin/exports/export_dialog.html", context)


def can_see_exports(request) -> bool:
    user = request.user
    return user.has_perm("exports.view_export") or user.has_perm(services.EXPORT_PERMISSION)


@admin.register(Export)
class ExportAdmin(ReadOnlyAdminMixin, ModelAdmin):
    """Read-only: exports are made from the lists, and their files leave through the Download button."""

    list_display = [
        "id",
        "created_at",
        "list_link",
        "format",
        "show_status",
        "row_count",
        "size",
        "requested_by",
        "expires_at",
        "download",
    ]
    list_filter = [("status", ChoicesDropdownFilter), ("format", ChoicesDropdownFilter)]
    list_select_related = ["requested_by"]
    fields = [
        "list_link",
        "query",
        "format",
        "full_phones",
        "show_status",
        "row_count",
        "size",
        "requested_by",
        "created_at",
        "started_at",
        "finished_at",
        "expires_at",
        "error",
        "download",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        return exports_of(request.user)

    def has_module_permission(self, request):
        return can_see_exports(request)

    def has_view_permission(self, request, obj=None):
        return can_see_exports(request)

    def get_urls(self):
        download = path(
            "<int:export_id>/download/",
            self.admin_site.admin_view(self.download_view),
            name="exports_export_download",
        )
        return [download, *super().get_urls()]

    def download_view(self, request, export_id: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        try:
            export, file = services.export_download(actor=request.user, export_id=export_id)
        except ExportUnavailable as exc:
            raise Http404(exc.message) from exc
        return file_response(export, file)

    @display(description="List")
    def list_link(self, obj):
        try:
            model = apps.get_model(obj.list_label)
        except LookupError:
            return obj.list_label
        opts = model._meta
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        name = str(opts.verbose_name_plural).capitalize()
        if obj.query:
            return format_html('<a href="{}?{}">{}</a> (filtered)', url, obj.query, name)
        return format_html('<a href="{}">{}</a>', url, name)

    @display(description="Status", ordering="status", label=EXPORT_STATUS_COLOURS)
    def show_status(self, obj):
        return obj.status, obj.get_status_display()

    @display(description="Size")
    def size(self, obj):
        return filesizeformat(obj.size_bytes) if obj.size_bytes is not None else "–"

    @display(description="Download")
    def download(self, obj):
        if obj.status != ExportStatus.READY or not obj.file or obj.expires_at <= timezone.now():
            return "–"
        # Inside the list's (or the page's) form: the button posts it, CSRF token included, to the download.
        return format_html(
            '<button type="submit" formaction="{}" formmethod="post" class="font-medium '
            'text-primary-600 dark:text-primary-500">Download</button>',
            reverse("admin:exports_export_download", args=[obj.pk]),
        )
