"""An admin list read as the list shows it: the rows of its changelist for a query string (filters, search
and ordering), counted and then streamed as typed cells.

The queryset comes from the list's own ModelAdmin ChangeList, built for the requester, so the file has
exactly the rows the list shows, and a query string the list would refuse (an unknown field, a lookup it
does not allow, a bad value) is refused here too.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ALL_VAR, ERROR_FLAG, PAGE_VAR, ChangeListSearchForm
from django.core.exceptions import FieldError, SuspiciousOperation, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, QueryDict
from django.urls import reverse
from django.utils.text import slugify

from exports.columns import ExportColumn, row_converter
from exports.exceptions import ExportError, ExportNotAllowed
from exports.models import Export
from exports.writers import CHUNK_ROWS, Column

# Page and error flags choose a page of the list, not its rows.
_NOT_FILTERS = (PAGE_VAR, ERROR_FLAG, ALL_VAR)


@dataclass(frozen=True)
class ListRows:
    list_label: str  # "payments.payment"
    model_admin: Any
    queryset: QuerySet  # the changelist's: filtered, searched, ordered
    count: int
    query: str  # the list's query string, without page flags

    @property
    def columns(self) -> tuple[ExportColumn, ...]:
        return tuple(self.model_admin.export_columns)

    @property
    def cells(self) -> tuple[Column, ...]:
        return tuple(column.cell for column in self.columns)

    @property
    def title(self) -> str:
        return str(self.model_admin.model._meta.verbose_name_plural).capitalize()

    @property
    def file_stem(self) -> str:
        return slugify(self.model_admin.model._meta.verbose_name_plural)

    @property
    def filters(self) -> dict[str, str | list[str]]:
        """The query string as a dict (search under "q", ordering under "o"), for the audit trail."""
        return {
            key: values[0] if len(values) == 1 else values for key, values in QueryDict(self.query).lists()
        }


def exportable_admin(list_label: str):
    """The registered ModelAdmin of an exportable list ("payments.payment"), or ExportError."""
    try:
        model = apps.get_model(list_label)
    except (LookupError, ValueError) as exc:
        raise ExportError("There is no such list.") from exc
    model_admin = admin.site._registry.get(model)
    if model_admin is None or not getattr(model_admin, "export_columns", None):
        raise ExportError("This list cannot be exported.")
    return model_admin


def list_query(query: str) -> QueryDict:
    """The list's query string without the page it was on."""
    params = QueryDict(query or "", mutable=True)
    for name in _NOT_FILTERS:
        params.pop(name, None)
    return params


def list_rows(*, user, list_label: str, query: str) -> ListRows:
    """The rows `user` sees in the list for this query string, counted (one COUNT, as the list does)."""
    model_admin = exportable_admin(list_label)
    params = list_query(query)
    request = _list_request(user=user, model_admin=model_admin, params=params)
    if not model_admin.has_view_permission(request):
        raise ExportNotAllowed("You may not see this list.")
    if not ChangeListSearchForm(params).is_valid():
        raise ExportError("The list's search cannot be read.")
    try:
        changelist = model_admin.get_changelist_instance(request)
    except (IncorrectLookupParameters, SuspiciousOperation, FieldError, ValidationError) as exc:
        raise ExportError(
            "The list's filters are not valid; open the list again and export from there."
        ) from exc
    return ListRows(
        list_label=model_admin.model._meta.label_lower,
        model_admin=model_admin,
        queryset=changelist.queryset,
        count=changelist.result_count,
        query=params.urlencode(),
    )


def list_cells(rows: ListRows, *, full_contacts: bool) -> Iterator[list]:
    """The rows as typed cells in column order, read from the database CHUNK_ROWS at a time (a
    server-side cursor on PostgreSQL, chunked fetches on SQLite): memory stays flat whatever the count."""
    columns = rows.columns
    queryset = rows.queryset
    annotations = {column.field: column.expression for column in columns if column.expression is not None}
    if annotations:
        queryset = queryset.annotate(**annotations)
    convert = row_converter(columns, rows.model_admin.model, full_contacts=full_contacts)
    values = queryset.values_list(*(column.field for column in columns)).iterator(chunk_size=CHUNK_ROWS)
    return map(convert, values)


def _list_request(*, user, model_admin, params: QueryDict) -> HttpRequest:
    """The GET of the changelist page the requester would make (also from a task, with no request)."""
    opts = model_admin.model._meta
    request = HttpRequest()
    request.method = "GET"
    request.path = request.path_info = reverse(
        f"{model_admin.admin_site.name}:{opts.app_label}_{opts.model_name}_changelist"
    )
    request.GET = params
    request.user = user
    return request


def exports_of(user) -> QuerySet[Export]:
    """The exports a person sees: their own; superusers see everyone's."""
    exports = Export.objects.select_related("requested_by")
    return exports if user.is_superuser else exports.filter(requested_by=user)
