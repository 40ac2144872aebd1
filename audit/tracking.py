"""Records of rows edited through the admin (or anywhere else): message templates, alert rules, report
subscriptions, users and roles. Each tracked model names the fields whose before/after is kept; secrets are
recorded as changed without their values, and many-to-many fields (a role's permissions, a user's roles)
record what was added and removed.

Money rows are not tracked here: their services write an explicit record of each action, with the reason.
"""

from collections.abc import Iterable

from django.db import models
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save

from audit.models import AuditAction
from audit.services import audit_record, changes_between, field_values

HIDDEN = "(hidden)"


def track(
    model: type[models.Model],
    *,
    fields: Iterable[str],
    secret: Iterable[str] = (),
    m2m: Iterable[str] = (),
) -> None:
    """Record every create, change and delete of `model` (and changes of its many-to-many `m2m`)."""
    fields = tuple(fields)
    secret = frozenset(secret)
    label = model._meta.label_lower

    def values(instance):
        found = field_values(instance, fields)
        return {name: (HIDDEN if name in secret else value) for name, value in found.items()}

    def remember(sender, instance, raw=False, **kwargs):
        if raw or instance._state.adding or instance.pk is None:
            instance._audit_before = None
            return
        old = sender._default_manager.filter(pk=instance.pk).first()
        before = field_values(old, fields) if old is not None else None
        if before is not None:
            # A secret counts as changed when its stored value changed; its values are never recorded.
            for name in secret:
                if before[name] != getattr(instance, instance._meta.get_field(name).attname):
                    before[name] = "(previous)"
                else:
                    before[name] = HIDDEN
        instance._audit_before = before

    def saved(sender, instance, created, raw=False, **kwargs):
        if raw:
            return
        if created:
            audit_record(
                action=AuditAction.CREATED, obj=instance, changes=changes_between({}, values(instance))
            )
            return
        before = getattr(instance, "_audit_before", None)
        if before is None:
            return
        changes = changes_between(before, values(instance))
        if changes:
            audit_record(action=AuditAction.CHANGED, obj=instance, changes=changes)

    def deleted(sender, instance, **kwargs):
        audit_record(action=AuditAction.DELETED, obj=instance, changes=changes_between(values(instance), {}))

    pre_save.connect(remember, sender=model, weak=False, dispatch_uid=f"audit.pre_save.{label}")
    post_save.connect(saved, sender=model, weak=False, dispatch_uid=f"audit.post_save.{label}")
    post_delete.connect(deleted, sender=model, weak=False, dispatch_uid=f"audit.post_delete.{label}")
    for name in m2m:
        _track_m2m(model, name)


def _track_m2m(model: type[models.Model], name: str) -> None:
    field = model._meta.get_field(name)
    through = field.remote_field.through
    target = field.related_model

    def changed(sender, instance, action, reverse, model, pk_set, **kwargs):
        if action not in ("post_add", "post_remove", "pre_clear") or reverse:
            # Reverse edits (adding a user to a group from the group's side) arrive on the other model's
            # own tracked field when it has one; a clear is recorded before it happens, with what it removes.
            return
        if action == "pre_clear":
            pk_set = set(getattr(instance, name).values_list("pk", flat=True))
        if not pk_set:
            return
        names = sorted(str(item) for item in target._default_manager.filter(pk__in=pk_set))
        added, removed = (names, []) if action == "post_add" else ([], names)
        audit_record(
            action=AuditAction.PERMISSIONS_CHANGED,
            obj=instance,
            changes={name: {"added": added, "removed": removed}},
        )

    m2m_changed.connect(
        changed, sender=through, weak=False, dispatch_uid=f"audit.m2m.{model._meta.label_lower}.{name}"
    )
