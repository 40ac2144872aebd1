from django.contrib import admin
from django.contrib.admin import RelatedOnlyFieldListFilter
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime
from unfold.admin import ModelAdmin
from unfold.contrib.filters.admin import ChoicesDropdownFilter, RangeDateTimeFilter, RelatedDropdownFilter
from unfold.decorators import display

from audit.display import change_lines
from audit.models import AuditEntry
from audit.selectors import audit_entries_for, audit_timeline
from common.admin import ReadOnlyAdminMixin

TIMELINE_LIMIT = 50


class ActorFilter(RelatedDropdownFilter):
    """Only the people whose records the viewer may see (a Viewer's list offers only themself)."""

    def field_choices(self, field, request, model_admin):
        return RelatedOnlyFieldListFilter.field_choices(self, field, request, model_admin)


def object_url(entry: AuditEntry) -> str | None:
    if entry.content_type is None or not entry.object_id:
        return None
    try:
        return reverse(
            f"admin:{entry.content_type.app_label}_{entry.content_type.model}_change", args=[entry.object_id]
        )
    except NoReverseMatch:
        return None


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdminMixin, ModelAdmin):
    """The whole trail, newest first. Read-only for everyone: no one may add, change or delete a record."""

    list_display = ["at", "show_actor", "show_action", "show_object", "show_changes", "reason", "ip"]
    list_filter = [
        ("actor", ActorFilter),
        ("action", ChoicesDropdownFilter),
        ("at", RangeDateTimeFilter),
        ("content_type", RelatedOnlyFieldListFilter),
    ]
    list_filter_submit = True
    search_fields = ["=object_id", "object_repr", "actor_name", "reason"]
    list_select_related = ["actor", "content_type"]
    list_per_page = 50
    show_full_result_count = False
    fields = [
        "at",
        "show_actor",
        "ip",
        "show_action",
        "show_object",
        "show_changes",
        "reason",
        "data",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        return audit_entries_for(request.user)

    @display(description="Who", ordering="actor_name")
    def show_actor(self, obj):
        return obj.actor_name or "system"

    @display(description="Action", ordering="action")
    def show_action(self, obj):
        return obj.get_action_display()

    @display(description="Object")
    def show_object(self, obj):
        url = object_url(obj)
        if url:
            return format_html('<a href="{}" class="text-primary-600">{}</a>', url, obj.object_repr)
        return obj.object_repr or "—"

    @display(description="Changes")
    def show_changes(self, obj):
        return format_html_join("", "<div>{}</div>", ((line,) for line in change_lines(obj))) or "—"


class AuditTimelineMixin:
    """Adds the object's audit timeline under its change page. `audit_subjects` names the objects whose
    records belong on it (a payment's page shows its order's and refunds' records too)."""

    change_form_after_template = "audit/timeline.html"

    def audit_subjects(self, obj) -> list:
        return [obj]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # The object the page already loaded; add pages have none.
        if obj is not None and request.user.has_perm("audit.view_auditentry"):
            entries = list(
                audit_timeline(user=request.user, objects=self.audit_subjects(obj))[:TIMELINE_LIMIT]
            )
            context["audit_timeline"] = {
                "headers": ["When", "Who", "Action", "Object", "Changes", "Reason", "IP"],
                "rows": [_timeline_row(entry) for entry in entries],
            }
            context["audit_timeline_count"] = len(entries)
            context["audit_timeline_limit"] = TIMELINE_LIMIT
        return super().render_change_form(request, context, add, change, form_url, obj)


def _timeline_row(entry: AuditEntry) -> list:
    url = reverse("admin:audit_auditentry_change", args=[entry.pk])
    return [
        format_html(
            '<a href="{}" class="text-primary-600">{}</a>', url, f"{localtime(entry.at):%Y-%m-%d %H:%M}"
        ),
        entry.actor_name or "system",
        entry.get_action_display(),
        entry.object_repr,
        format_html_join("", "<div>{}</div>", ((line,) for line in change_lines(entry))) or "—",
        entry.reason or "—",
        entry.ip or "—",
    ]
