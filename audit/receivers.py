"""Sign-ins, sign-outs, failed sign-ins and lockouts, recorded as they happen."""

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from audit.models import AuditAction
from audit.services import audit_record


@receiver(user_logged_in, dispatch_uid="audit.login_succeeded")
def _logged_in(sender, request, user, **kwargs):
    audit_record(action=AuditAction.LOGIN_SUCCEEDED, actor=user, obj=user)


@receiver(user_logged_out, dispatch_uid="audit.logged_out")
def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        audit_record(action=AuditAction.LOGGED_OUT, actor=user, obj=user)


@receiver(user_login_failed, dispatch_uid="audit.login_failed")
def _login_failed(sender, credentials, request=None, **kwargs):
    # Django has already replaced the password in `credentials` with asterisks; only the name is kept.
    username = str(credentials.get("username", ""))[:150]
    audit_record(action=AuditAction.LOGIN_FAILED, data={"username": username}, object_repr=username)


@receiver(user_locked_out, dispatch_uid="audit.login_locked_out")
def _locked_out(sender, request, username, ip_address, **kwargs):
    audit_record(
        action=AuditAction.LOGIN_LOCKED_OUT,
        data={"username": str(username or "")[:150], "ip": ip_address},
        object_repr=str(username or ""),
    )
