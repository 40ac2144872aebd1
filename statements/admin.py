"""The M-PESA statement in the admin: imports (and the page that brings one in), the lines they stored,
reconciliation runs with their totals, and the exceptions staff work through.

Everything here is read-only. A statement comes in through the import page (its POST, with the CSRF
token; the page's GET only shows the form), and an exception is resolved through the dialogs on its page
(a GET shows the dialog, the change is its POST). statements.imports and statements.resolution check the
permission again.
"""

from decimal import Decimal, InvalidOperation
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.db.models import Count, Q
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime
from unfold.admin import ModelAdmin
from unfold.contrib.filters.admin import ChoicesDropdownFilter, RangeDateFilter
from unfold.decorators import action, display
from unfold.enums import ActionVariant

from audit.admin import AuditTimelineMixin
from common.admin import (
    ContactMaskingMixin,
    ReadOnlyAdminMixin,
    confirm_dialog,
    dialog_redirect,
    phones_masked,
)
from common.masking import mask_phones_in
from payments.exceptions import PaymentError
from payments.models import Refund
from statements import imports, resolution
from statements.exceptions import StatementError
from statements.forms import AttachPaymentForm, MarkExpectedForm, OpenRefundForm, StatementImportForm
from statements.models import (
    ImportSource,
    ItemKind,
    ItemStatus,
    ReconciliationItem,
    ReconciliationRun,
    StatementImport,
    StatementLine,
)
from statements.selectors import open_items_count

IMPORT_PERMISSION = "statements.import_statement"
RESOLVE_PERMISSION = "statements.resolve_reconciliationitem"

# Which resolutions fit which exceptions (statements.resolution refuses the others anyway).
ATTACH_KINDS = (ItemKind.UNRECORDED_LINE,)
REFUND_KINDS = (ItemKind.DOUBLE_PAYMENT,)

ITEM_STATUS_COLOURS = {
    ItemStatus.OPEN: "warning",
    ItemStatus.RESOLVED: "success",
    ItemStatus.CLEARED: "info",
}
ITEM_KIND_COLOURS = {
    ItemKind.UNRECORDED_LINE: "warning",
    ItemKind.MISSING_FROM_STATEMENT: "danger",
    ItemKind.AMOUNT_DIFFERENCE: "danger",
    ItemKind.DOUBLE_PAYMENT: "warning",
    ItemKind.REFUND_WITHOUT_LINE: "danger",
    ItemKind.LINE_WITHOUT_REFUND: "danger",
}

# The run's totals (statements.reconciliation), in the order and words finance reads them. Money is
# stored as strings with two decimals; keys not listed here are shown after these, labelled from the key.
TOTAL_LABELS = {
    "statement_paid_in": "Statement: paid in",
    "matched_in": "Matched to our payments",
    "unmatched_in": "Received but not recorded",
    "our_completed": "Our completed M-Pesa payments",
    "matched_completed": "Of those, on the statement",
    "missing_amount": "Completed but not on the statement",
    "statement_paid_out": "Statement: paid out",
    "refunds_matched": "Matched to our refunds",
    "lines_without_refund": "Money out with no refund",
    "charges_total": "M-PESA charges",
    "amount_differences_total": "Amount differences",
    "difference": "Difference (statement paid in − our completed)",
    "explained": "Explained by the exceptions",
    "balanced": "Explained to the shilling",
    "refunds_without_line": "Refunds not on the statement",
    "double_payments_total": "Orders paid twice",
    "counts": "Lines",
    "matched_now": "Matched by this run",
    "items": "Exceptions by kind",
    "statuses": "Exceptions by status",
    **dict(ItemKind.choices),
}
# (what it says, left side, right side as keys added up)
IDENTITIES = (
    ("Statement paid in = matched + received but not recorded", "statement_paid_in",
     ("matched_in", "unmatched_in")),
    ("Our completed = matched + not on the statement", "our_completed",
     ("matched_completed", "missing_amount")),
    ("Difference explained to the shilling", "difference", ("explained",)),
)  # fmt: skip

READ_ONLY_FORM = {"show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False}


def _money(value) -> Decimal | None:
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def kes(value) -> str:
    amount = _money(value)
    return "–" if amount is None else f"KES {amount:,.2f}"


def _is_money(value) -> bool:
    return isinstance(value, str) and _money(value) is not None


def _label(key: str) -> str:
    return TOTAL_LABELS.get(key) or key.replace("_", " ").capitalize()


def _link(url: str, text) -> str:
    return format_html('<a href="{}" class="text-primary-600 dark:text-primary-500">{}</a>', url, text)


def payment_link(payment) -> str:
    if payment is None:
        return "–"
    url = reverse("admin:payments_payment_change", args=[payment.pk])
    return _link(url, f"#{payment.pk} · {payment.order.reference}")


def refund_link(refund) -> str:
    if refund is None:
        return "–"
    return _link(reverse("admin:payments_refund_change", args=[refund.pk]), f"Refund #{refund.pk}")


def _period(start, end) -> str:
    if start is None and end is None:
        return "–"
    first = f"{localtime(start):%Y-%m-%d %H:%M}" if start else "…"
    last = f"{localtime(end):%Y-%m-%d %H:%M}" if end else "…"
    return f"{first} → {last}"


def _table(headers: list[str], rows, testid: str) -> str:
    head = format_html_join(
        "", '<th class="pr-6 py-1 text-left font-semibold">{}</th>', ((h,) for h in headers)
    )
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        (
            (format_html_join("", '<td class="pr-6 py-1 align-top">{}</td>', ((cell,) for cell in row)),)
            for row in rows
        ),
    )
    return format_html(
        '<table data-testid="{}"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', testid, head, body
    )


def totals_table(totals: dict) -> str:
    """Every key of the run's totals, labelled, money as KES with two decimals."""
    known = [key for key in TOTAL_LABELS if key in totals]
    others = [key for key in totals if key not in TOTAL_LABELS]
    rows = []
    for key in known + others:
        value = totals[key]
        if isinstance(value, dict):
            shown = format_html_join(
                "",
                "<div>{}: {}</div>",
                ((_label(k), kes(v) if _is_money(v) else v) for k, v in value.items()),
            )
        elif isinstance(value, bool):
            shown = "Yes" if value else "No"
        elif _is_money(value):
            shown = kes(value)
        else:
            shown = "–" if value is None else value
        rows.append((_label(key), shown))
    if not rows:
        return "–"
    return _table(["Figure", "Value"], rows, "run-totals")


def identities_table(totals: dict) -> str:
    rows = []
    for title, left_key, right_keys in IDENTITIES:
        left = _money(totals.get(left_key))
        right_values = [_money(totals.get(key)) for key in right_keys]
        if left is None or None in right_values:
            continue
        right = sum(right_values, Decimal("0"))
        holds = left == right
        rows.append(
            (
                title,
                kes(left),
                " + ".join(kes(value) for value in right_values),
                format_html(
                    '<span class="font-semibold {}">{}</span>',
                    "text-green-700 dark:text-green-500" if holds else "text-red-600 dark:text-red-500",
                    "Holds" if holds else f"Off by {kes(left - right)}",
                ),
            )
        )
    if not rows:
        return "–"
    return _table(["Identity", "Left", "Right", ""], rows, "run-identities")


def exceptions_url(**query) -> str:
    url = reverse("admin:statements_reconciliationitem_changelist")
    return f"{url}?{urlencode(query)}" if query else url


# --- statement imports --------------------------------------------------------------------------------
@admin.register(StatementImport)
class StatementImportAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = [
        "created_at",
        "source",
        "shortcode",
        "file_name",
        "period",
        "lines_read",
        "lines_new",
        "lines_known",
        "imported_by",
    ]
    list_filter = [("source", ChoicesDropdownFilter), "shortcode", ("created_at", RangeDateFilter)]
    list_filter_submit = True
    list_select_related = ["imported_by"]
    search_fields = ["file_name", "shortcode", "file_sha256"]
    actions_list = ["import_statement"]
    fields = [
        "created_at",
        "source",
        "shortcode",
        "account_name",
        "file_name",
        "file_format",
        "file_sha256",
        "period",
        "imported_by",
        "lines_read",
        "lines_new",
        "lines_known",
        "lines_link",
        "runs_list",
        "masked_summary",
    ]
    readonly_fields = fields

    @display(description="Period")
    def period(self, obj):
        return _period(obj.period_start, obj.period_end)

    @display(description="Lines")
    def lines_link(self, obj):
        url = reverse("admin:statements_statementline_changelist")
        return _link(
            f"{url}?statement_import__id__exact={obj.pk}", f"The {obj.lines_new} lines it brought in"
        )

    @display(description="Reconciliation runs")
    def runs_list(self, obj):
        runs = list(obj.runs.order_by("-created_at", "-id"))
        if not runs:
            return "–"
        return format_html_join(
            "",
            "<div>{} · {} · difference {}</div>",
            (
                (
                    _link(
                        reverse("admin:statements_reconciliationrun_change", args=[run.pk]), f"Run #{run.pk}"
                    ),
                    _period(run.period_start, run.period_end),
                    kes(run.totals.get("difference")),
                )
                for run in runs
            ),
        )

    @display(description="Summary")
    def masked_summary(self, obj):
        return phones_masked(obj.summary) if obj.summary else "–"

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), **READ_ONLY_FORM}
        return super().changeform_view(request, object_id, form_url, extra_context)

    def has_import_statement_permission(self, request):
        return request.user.has_perm(IMPORT_PERMISSION)

    @action(
        description="Import statement",
        icon="upload_file",
        permissions=["import_statement"],
        url_path="import",
        variant=ActionVariant.PRIMARY,
    )
    def import_statement(self, request):
        """The import page: a GET shows the form and changes nothing; its POST (CSRF token) imports."""

        if request.method == "POST":
            form = StatementImportForm(request.POST, request.FILES)
            if form.is_valid():
                upload = form.cleaned_data["file"]
                try:
                    statement_import = imports.statement_import(
                        fileobj=upload,
                        file_name=upload.name,
                        actor=request.user,
                        shortcode=form.cleaned_data["shortcode"] or None,
                        source=ImportSource.UPLOAD,
                    )
                except StatementError as exc:
                    form.add_error("shortcode" if exc.field == "shortcode" else "file", exc.message)
                else:
                    return self._imported(request, statement_import)
        else:
            form = StatementImportForm()
        context = {
            **self.admin_site.each_context(request),
            "title": "Import an M-PESA statement",
            "opts": self.model._meta,
            "form": form,
            "changelist_url": reverse("admin:statements_statementimport_changelist"),
        }
        return TemplateResponse(request, "admin/statements/import.html", context)

    def _imported(self, request, statement_import: StatementImport):
        read, new, known = (
            statement_import.lines_read,
            statement_import.lines_new,
            statement_import.lines_known,
        )
        summary = (
            f"Statement imported: {read} line{'s' if read != 1 else ''} read, {new} new, "
            f"{known} already known."
        )
        run = (
            getattr(statement_import, "reconciliation_run", None)
            or statement_import.runs.order_by("-created_at").first()
        )
        if run is None:
            messages.success(request, summary)
            return redirect("admin:statements_statementimport_change", statement_import.pk)
        open_items = run.items.filter(status=ItemStatus.OPEN).count()
        if open_items:
            messages.success(
                request,
                f"{summary} Reconciled: {open_items} exception{'s' if open_items != 1 else ''} to look at.",
            )
        else:
            messages.success(request, f"{summary} Reconciled: nothing to look at.")
        return redirect("admin:statements_reconciliationrun_change", run.pk)


# --- statement lines ----------------------------------------------------------------------------------
class MatchedFilter(admin.SimpleListFilter):
    title = "matched"
    parameter_name = "matched"

    def lookups(self, request, model_admin):
        return [("yes", "Matched to a payment or refund"), ("no", "Not matched")]

    def queryset(self, request, queryset):
        matched = Q(payment__isnull=False) | Q(refund__isnull=False)
        if self.value() == "yes":
            return queryset.filter(matched)
        if self.value() == "no":
            return queryset.exclude(matched)
        return queryset


def _party_phone(line: StatementLine) -> str:
    """The other party's number as far as the statement shows it (2547*****149)."""
    if not (line.party_phone_prefix or line.party_phone_suffix):
        return ""
    hidden = max(
        (line.party_phone_length or 0) - len(line.party_phone_prefix) - len(line.party_phone_suffix), 0
    )
    return f"{line.party_phone_prefix}{'*' * hidden}{line.party_phone_suffix}"


@admin.register(StatementLine)
class StatementLineAdmin(ContactMaskingMixin, ReadOnlyAdminMixin, ModelAdmin):
    masked_contacts = {
        "masked_other_party": "other_party",
        "masked_party_phone": "party_phone",
        "masked_details": "details",
        "masked_raw": "raw",
    }
    list_display = [
        "completed_at",
        "receipt",
        "kind",
        "paid_in",
        "withdrawn",
        "masked_other_party",
        "account_number",
        "shortcode",
        "matched_to",
        "match_method",
    ]
    list_filter = [
        ("kind", ChoicesDropdownFilter),
        MatchedFilter,
        "shortcode",
        ("completed_at", RangeDateFilter),
    ]
    list_filter_submit = True
    list_select_related = ["payment__order", "refund"]
    search_fields = ["receipt", "account_number", "linked_transaction_id"]
    search_help_text = "An M-Pesa receipt, an account number (A/C No.) or a linked transaction id."
    show_full_result_count = False
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "receipt",
                    "kind",
                    "shortcode",
                    "completed_at",
                    "initiated_at",
                    "masked_details",
                    "transaction_status",
                    "paid_in",
                    "withdrawn",
                    "balance",
                    "balance_confirmed",
                    "reason_type",
                ]
            },
        ),
        (
            "Other party",
            {"fields": ["masked_other_party", "masked_party_phone", "party_name", "account_number"]},
        ),
        (
            "Matching",
            {
                "fields": [
                    "matched_to",
                    "match_method",
                    "matched_at",
                    "matched_by",
                    "linked_transaction_id",
                    "import_link",
                    "masked_raw",
                ]
            },
        ),
    ]
    readonly_fields = [name for _title, options in fieldsets for name in options["fields"]]

    @display(description="Other party")
    def masked_other_party(self, obj):
        return mask_phones_in(obj.other_party) or "–"

    @display(description="Details")
    def masked_details(self, obj):
        return mask_phones_in(obj.details) or "–"

    @display(description="Phone (as the statement shows it)")
    def masked_party_phone(self, obj):
        return mask_phones_in(_party_phone(obj)) or "–"

    @display(description="Phone (as the statement shows it)")
    def party_phone(self, obj):
        return _party_phone(obj) or "–"

    @display(description="The row as the file had it")
    def masked_raw(self, obj):
        return phones_masked(obj.raw)

    @display(description="Matched to")
    def matched_to(self, obj):
        if obj.payment_id:
            return payment_link(obj.payment)
        if obj.refund_id:
            return refund_link(obj.refund)
        return "–"

    @display(description="Import")
    def import_link(self, obj):
        url = reverse("admin:statements_statementimport_change", args=[obj.statement_import_id])
        return _link(url, f"Import #{obj.statement_import_id}")

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), **READ_ONLY_FORM}
        return super().changeform_view(request, object_id, form_url, extra_context)


# --- reconciliation runs --------------------------------------------------------------------------------
@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = [
        "id",
        "created_at",
        "shortcode",
        "period",
        "import_link",
        "started_by",
        "paid_in",
        "difference",
        "explained",
    ]
    list_filter = ["shortcode", ("created_at", RangeDateFilter)]
    list_filter_submit = True
    list_select_related = ["statement_import", "started_by"]
    fields = [
        "shortcode",
        "period",
        "import_link",
        "started_by",
        "created_at",
        "totals_table",
        "identities",
        "items_by_kind",
    ]
    readonly_fields = fields

    @display(description="Period")
    def period(self, obj):
        return _period(obj.period_start, obj.period_end)

    @display(description="Import")
    def import_link(self, obj):
        if obj.statement_import_id is None:
            return "–"
        url = reverse("admin:statements_statementimport_change", args=[obj.statement_import_id])
        return _link(url, str(obj.statement_import))

    @display(description="Statement paid in")
    def paid_in(self, obj):
        return kes(obj.totals.get("statement_paid_in"))

    @display(description="Difference")
    def difference(self, obj):
        return kes(obj.totals.get("difference"))

    @display(description="Explained")
    def explained(self, obj):
        return kes(obj.totals.get("explained"))

    @display(description="Totals")
    def totals_table(self, obj):
        return totals_table(obj.totals or {})

    @display(description="Identities")
    def identities(self, obj):
        return identities_table(obj.totals or {})

    @display(description="Exceptions by kind")
    def items_by_kind(self, obj):
        counts = dict(obj.items.values_list("kind").annotate(count=Count("pk")).order_by())
        open_counts = dict(
            obj.items.filter(status=ItemStatus.OPEN)
            .values_list("kind")
            .annotate(count=Count("pk"))
            .order_by()
        )
        if not counts:
            return "None: the statement and our records agree."
        rows = [
            (
                _link(
                    exceptions_url(kind__exact=kind, last_run__id__exact=obj.pk, status="all"),
                    ItemKind(kind).label,
                ),
                counts[kind],
                open_counts.get(kind, 0),
            )
            for kind in ItemKind.values
            if kind in counts
        ]
        return _table(["Kind", "Exceptions", "Still open"], rows, "run-items")

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), **READ_ONLY_FORM}
        return super().changeform_view(request, object_id, form_url, extra_context)


# --- reconciliation exceptions --------------------------------------------------------------------------
class ItemStatusFilter(admin.SimpleListFilter):
    """Open exceptions unless another status (or all) is chosen: the list is a work queue."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [*ItemStatus.choices, ("all", "All")]

    def value(self):
        return super().value() or ItemStatus.OPEN

    def choices(self, changelist):
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == str(lookup),
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        if self.value() == "all":
            return queryset
        return queryset.filter(status=self.value())


@admin.register(ReconciliationItem)
class ReconciliationItemAdmin(AuditTimelineMixin, ContactMaskingMixin, ReadOnlyAdminMixin, ModelAdmin):
    masked_contacts = {"masked_detail": "detail"}
    list_display = [
        "id",
        "show_kind",
        "amount",
        "occurred_at",
        "line_receipt",
        "payment_column",
        "suggested_column",
        "show_status",
    ]
    list_filter = [ItemStatusFilter, ("kind", ChoicesDropdownFilter), "shortcode"]
    list_select_related = ["line", "payment__order", "suggested_payment__order", "refund"]
    search_fields = ["line__receipt", "payment__mpesa_receipt_number", "payment__order__reference"]
    search_help_text = "An M-Pesa receipt or an order reference."
    actions_detail = ["attach_payment", "mark_expected", "open_refund"]
    fieldsets = [
        (
            None,
            {"fields": ["show_kind", "show_status", "amount", "occurred_at", "shortcode", "masked_detail"]},
        ),
        (
            "What it is about",
            {"fields": ["line_link", "payment_column", "refund_column", "suggested_column"]},
        ),
        ("Runs", {"fields": ["first_run_link", "last_run_link", "created_at", "updated_at"]}),
        ("Resolution", {"fields": ["resolution", "note", "resolved_by", "resolved_at"]}),
    ]
    readonly_fields = [name for _title, options in fieldsets for name in options["fields"]]

    def audit_subjects(self, obj):
        return [subject for subject in (obj, obj.payment, obj.suggested_payment) if subject is not None]

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), **READ_ONLY_FORM}
        return super().changeform_view(request, object_id, form_url, extra_context)

    # --- columns ------------------------------------------------------------------------------------
    @display(description="Kind", ordering="kind", label=ITEM_KIND_COLOURS)
    def show_kind(self, obj):
        return obj.kind, obj.get_kind_display()

    @display(description="Status", ordering="status", label=ITEM_STATUS_COLOURS)
    def show_status(self, obj):
        return obj.status, obj.get_status_display()

    @display(description="Statement line", ordering="line__receipt")
    def line_receipt(self, obj):
        return obj.line.receipt if obj.line_id else "–"

    @display(description="Statement line")
    def line_link(self, obj):
        if not obj.line_id:
            return "–"
        url = reverse("admin:statements_statementline_change", args=[obj.line_id])
        return _link(url, f"{obj.line.receipt} · {obj.line.get_kind_display()} · {kes(obj.line.amount)}")

    @display(description="Payment")
    def payment_column(self, obj):
        return payment_link(obj.payment)

    @display(description="Refund")
    def refund_column(self, obj):
        return refund_link(obj.refund)

    @display(description="Suggested payment")
    def suggested_column(self, obj):
        return payment_link(obj.suggested_payment)

    @display(description="Detail")
    def masked_detail(self, obj):
        return mask_phones_in(obj.detail) or "–"

    @display(description="First found by")
    def first_run_link(self, obj):
        return _link(
            reverse("admin:statements_reconciliationrun_change", args=[obj.first_run_id]),
            f"Run #{obj.first_run_id}",
        )

    @display(description="Last seen by")
    def last_run_link(self, obj):
        return _link(
            reverse("admin:statements_reconciliationrun_change", args=[obj.last_run_id]),
            f"Run #{obj.last_run_id}",
        )

    # --- which actions apply (offered only there; the services check again) ------------------------
    @staticmethod
    def _item_is(object_id, kinds=None) -> bool:
        if object_id is None:
            return True
        items = ReconciliationItem.objects.filter(pk=object_id, status=ItemStatus.OPEN)
        if kinds is not None:
            items = items.filter(kind__in=kinds)
        return items.exists()

    def has_attach_payment_permission(self, request, object_id=None):
        return request.user.has_perm(RESOLVE_PERMISSION) and self._item_is(object_id, ATTACH_KINDS)

    def has_mark_expected_permission(self, request, object_id=None):
        return request.user.has_perm(RESOLVE_PERMISSION) and self._item_is(object_id)

    def has_open_refund_permission(self, request, object_id=None):
        return request.user.has_perm(RESOLVE_PERMISSION) and self._item_is(object_id, REFUND_KINDS)

    def _page(self, object_id) -> str:
        return reverse("admin:statements_reconciliationitem_change", args=[object_id])

    def _resolve(self, request, object_id, call, told):
        """Run the service; its refusal becomes an error message, its result the success message."""
        try:
            result = call()
        except (StatementError, PaymentError) as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, told(result))
        return dialog_redirect(self._page(object_id))

    # --- actions ------------------------------------------------------------------------------------
    @action(
        description="Attach to payment",
        icon="link",
        permissions=["attach_payment"],
        dialog=confirm_dialog(
            "Attach this statement line to a payment",
            "The line is the money of that payment: the payment takes its receipt where it has none, and "
            "the exception is resolved.",
            "Attach",
            AttachPaymentForm,
        ),
    )
    def attach_payment(self, request, form, object_id):
        payment_id = form.cleaned_data["payment_id"]
        return self._resolve(
            request,
            object_id,
            lambda: resolution.item_attach(
                item_id=int(object_id),
                payment_id=payment_id,
                actor=request.user,
                note=form.cleaned_data["note"],
            ),
            lambda _result: f"Statement line attached to payment #{payment_id}; the exception is resolved.",
        )

    @action(
        description="Mark as expected",
        icon="task_alt",
        permissions=["mark_expected"],
        dialog=confirm_dialog(
            "Mark this exception as expected",
            "Nothing changes in the payments: the exception is closed with your note, which stays on it.",
            "Mark as expected",
            MarkExpectedForm,
        ),
    )
    def mark_expected(self, request, form, object_id):
        return self._resolve(
            request,
            object_id,
            lambda: resolution.item_mark_expected(
                item_id=int(object_id), actor=request.user, note=form.cleaned_data["note"]
            ),
            lambda _result: "Exception marked as expected.",
        )

    @action(
        description="Open refund",
        icon="undo",
        permissions=["open_refund"],
        variant=ActionVariant.DANGER,
        dialog=confirm_dialog(
            "Refund the second payment",
            "The order was paid twice: a refund of the extra payment is requested (above the approval "
            "threshold a second person approves it) and the exception is resolved.",
            "Open refund",
            OpenRefundForm,
        ),
    )
    def open_refund(self, request, form, object_id):
        return self._resolve(
            request,
            object_id,
            lambda: resolution.item_open_refund(
                item_id=int(object_id), actor=request.user, reason=form.cleaned_data["reason"]
            ),
            _refund_opened,
        )


def _refund_opened(result) -> str:
    refund = result if isinstance(result, Refund) else getattr(result, "refund", None)
    if refund is None:
        return "Refund opened; the exception is resolved."
    return f"Refund #{refund.pk} of KES {refund.amount} opened; the exception is resolved."


def open_exceptions_badge(request) -> str:
    count = open_items_count()
    return str(count) if count else ""
