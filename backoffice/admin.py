from axes import admin as axes_admin
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.models import Group, User
from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.urls import reverse
from django.utils import timezone
from django_q import admin as q_admin
from django_q.models import Failure, OrmQ, Schedule, Success
from unfold.admin import ModelAdmin
from unfold.decorators import action, display
from unfold.forms import AdminPasswordChangeForm, UserChangeForm, UserCreationForm

from audit.admin import AuditEntryAdmin
from audit.models import AuditEntry
from backoffice.exceptions import ApiTokenError
from backoffice.models import ApiToken, ApiTokenStatus
from backoffice.services import api_token_revoke
from common.admin import confirm_dialog, dialog_redirect
from exports.admin import ExportListMixin
from exports.columns import ExportColumn

TOKEN_STATUS_COLOURS = {
    ApiTokenStatus.ACTIVE: "success",
    ApiTokenStatus.EXPIRED: "warning",
    ApiTokenStatus.REVOKED: "danger",
}

admin.site.unregister(User)
admin.site.unregister(Group)


def superusers_only(request) -> bool:
    return request.user.is_active and request.user.is_superuser


class SuperusersOnlyMixin:
    """Users, roles and the task queue are administered by superusers alone. (Django's default lets anyone
    holding auth.change_user make themself a superuser; no role holds it, and this keeps it so.)"""

    def _superuser(self, request) -> bool:
        return superusers_only(request)

    def has_module_permission(self, request):
        return self._superuser(request) and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return self._superuser(request) and super().has_view_permission(request, obj)

    def has_add_permission(self, request, *args):
        return self._superuser(request) and super().has_add_permission(request, *args)

    def has_change_permission(self, request, obj=None):
        return self._superuser(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._superuser(request) and super().has_delete_permission(request, obj)


@admin.register(User)
class UserAdmin(SuperusersOnlyMixin, BaseUserAdmin, ModelAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    change_password_form = AdminPasswordChangeForm


@admin.register(Group)
class GroupAdmin(SuperusersOnlyMixin, BaseGroupAdmin, ModelAdmin):
    pass


class ApiTokenStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return ApiTokenStatus.choices

    def queryset(self, request, queryset):
        now = timezone.now()
        unexpired = Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        match self.value():
            case ApiTokenStatus.ACTIVE:
                return queryset.filter(unexpired, revoked_at__isnull=True)
            case ApiTokenStatus.EXPIRED:
                return queryset.filter(expires_at__lte=now, revoked_at__isnull=True)
            case ApiTokenStatus.REVOKED:
                return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(ModelAdmin):
    """Tokens are issued by `manage.py issue_api_token` (the raw token is printed once, never stored or shown
    again). Here: what each may do, until when, whether it is used, and revoking it (a dialog, on POST)."""

    list_display = [
        "key_prefix",
        "user",
        "name",
        "show_scopes",
        "show_status",
        "expires_at",
        "last_used_at",
        "created_at",
    ]
    list_filter = [ApiTokenStatusFilter]
    search_fields = ["user__username", "name", "key_prefix"]
    list_select_related = ["user"]
    fields = [
        "user",
        "name",
        "key_prefix",
        "show_scopes",
        "show_status",
        "expires_at",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    # Scopes and expiry are chosen at issue; revoking is the action below. Only the label is editable.
    readonly_fields = [field for field in fields if field != "name"]
    actions_detail = ["revoke"]

    def has_add_permission(self, request):
        # Tokens are shown once at creation: `manage.py issue_api_token <username>`.
        return False

    def has_revoke_permission(self, request, object_id=None):
        return request.user.has_perm("backoffice.change_apitoken") and (
            object_id is None or ApiToken.objects.filter(pk=object_id, revoked_at__isnull=True).exists()
        )

    @display(description="Scopes")
    def show_scopes(self, obj):
        return ", ".join(obj.scopes) or "-"

    @display(description="Status", label=TOKEN_STATUS_COLOURS)
    def show_status(self, obj):
        return obj.status, obj.status.label

    @action(
        description="Revoke",
        icon="block",
        permissions=["revoke"],
        dialog=confirm_dialog(
            "Revoke this API token",
            "Its next request is refused (401). This cannot be undone: issue a new token instead.",
            "Revoke",
        ),
    )
    def revoke(self, request, form, object_id):
        try:
            token = api_token_revoke(token_id=int(object_id), actor=request.user)
        except ApiTokenError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"API token {token.key_prefix}… of {token.user} is revoked.")
        return dialog_redirect(reverse("admin:backoffice_apitoken_change", args=[object_id]))


for model in (Schedule, Success, Failure, OrmQ):
    if admin.site.is_registered(model):
        admin.site.unregister(model)


@admin.register(Schedule)
class ScheduleAdmin(SuperusersOnlyMixin, q_admin.ScheduleAdmin, ModelAdmin):
    pass


@admin.register(Success)
class SuccessAdmin(SuperusersOnlyMixin, q_admin.TaskAdmin, ModelAdmin):
    pass


@admin.register(Failure)
class FailureAdmin(SuperusersOnlyMixin, q_admin.FailAdmin, ModelAdmin):
    pass


@admin.register(OrmQ)
class QueueAdmin(SuperusersOnlyMixin, q_admin.QueueAdmin, ModelAdmin):
    pass


# --- sign-in throttling (django-axes) ---------------------------------------------------------------
for model in (AccessAttempt, AccessLog, AccessFailureLog):
    if admin.site.is_registered(model):
        admin.site.unregister(model)


class SignInRecordsAdminMixin:
    """Failed sign-ins, lockouts and the access log: seen by superusers alone, never edited."""

    def has_module_permission(self, request):
        return superusers_only(request)

    def has_view_permission(self, request, obj=None):
        return superusers_only(request)

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AccessAttempt)
class AccessAttemptAdmin(SignInRecordsAdminMixin, axes_admin.AccessAttemptAdmin, ModelAdmin):
    """An account or address with AXES_FAILURE_LIMIT failures is locked out; deleting its attempt lifts
    the lockout (django-axes' documented way, like `manage.py axes_reset_username`)."""

    def has_delete_permission(self, request, obj=None):
        return superusers_only(request)


@admin.register(AccessLog)
class AccessLogAdmin(SignInRecordsAdminMixin, axes_admin.AccessLogAdmin, ModelAdmin):
    pass


@admin.register(AccessFailureLog)
class AccessFailureLogAdmin(SignInRecordsAdminMixin, axes_admin.AccessFailureLogAdmin, ModelAdmin):
    pass


admin.site.unregister(AuditEntry)


@admin.register(AuditEntry)
class AuditTrailAdmin(ExportListMixin, AuditEntryAdmin):
    """The audit trail with an Export button, for the period an auditor checks (an export of the trail is
    itself a record in it). Wired here: `audit` imports nothing of ours."""

    export_columns = (
        ExportColumn("Record ID", "id", "number"),
        ExportColumn("When (Nairobi)", "at", "datetime"),
        ExportColumn("Who", "actor_name"),
        ExportColumn("IP address", "ip"),
        ExportColumn("Action", "action", "label"),
        ExportColumn("Object type", "content_type__model"),
        ExportColumn("Object ID", "object_id"),
        ExportColumn("Object", "object_repr", width=32),
        ExportColumn("Changes", "changes_text", width=48, expression=Cast("changes", TextField())),
        ExportColumn("Reason", "reason", width=32),
        ExportColumn("Details", "data_text", width=32, expression=Cast("data", TextField())),
    )
