"""Records of rows edited through the admin (or anywhere else): message templates, alert rules, report
subscriptions, users and roles. Each tracked model names the fields whose before/after is kept; secrets are
recorded as changed without their values, and many-to-many fields (a role's permissions, a user's roles)
record what was added and removed.

A save that changes none of the tracked fields writes nothing, and a save that writes none of them
(`update_fields`, e.g. a user's last_login at every sign-in) is not even compared.

Money rows are not tracked here: their services write an explicit record of each action, with the reason.
A service that writes its own record of a tracked row (an API token issued or revoked) makes the change
inside `untracked(Model)`, so that the change is recorded once.
"""

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import models
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save

from audit.models import AuditAction
from audit.services import audit_record, changes_between, field_values

HIDDEN = "(hidden)"
CHANGED = "(changed)"
# The row as it was in the database, kept on the instance between pre_save and post_save.
_BEFORE = "_audit_before"
# Targets whose many-to-many changes grant or take away access.
_ACCESS_MODELS = frozenset({"auth.permission", "auth.group"})

_untracked: ContextVar[frozenset[type[models.Model]]] = ContextVar("audit_untracked", default=frozenset())


@contextmanager
def untracked(*tracked_models: type[models.Model]) -> Iterator[None]:
    """Changes of these models inside the block are not recorded here: the caller records them itself."""
    token = _untracked.set(_untracked.get() | frozenset(tracked_models))
    try:
        yield
    finally:
        _untracked.reset(token)


def _is_untracked(model: type[models.Model]) -> bool:
    return model in _untracked.get()


def track(
    model: type[models.Model],
    *,
    fields: Iterable[str],
    secret: Iterable[str] = (),
    m2m: Iterable[str] = (),
    ignore: Callable[[models.Model, frozenset[str] | None], bool] | None = None,
) -> None:
    """Record every create, change and delete of `model` (and changes of its many-to-many `m2m`).

    `secret` fields (tracked even when not in `fields`) are recorded as changed, never with a value.
    `ignore(instance, update_fields)` says a save is no edit and is not recorded (a password hash that
    Django upgrades at sign-in).
    """
    secret = frozenset(secret)
    fields = tuple(dict.fromkeys((*fields, *secret)))
    watched = frozenset(fields)
    attnames = {name: model._meta.get_field(name).attname for name in fields}
    label = model._meta.label_lower

    def shown(instance, names: Iterable[str]) -> dict:
        names = tuple(names)
        values = field_values(instance, [name for name in names if name not in secret])
        return {name: HIDDEN if name in secret else values[name] for name in names}

    def remember(sender, instance, raw=False, update_fields=None, **kwargs):
        instance.__dict__.pop(_BEFORE, None)
        if raw or instance._state.adding or instance.pk is None or _is_untracked(sender):
            return
        if update_fields is not None and watched.isdisjoint(update_fields):
            return
        if ignore is not None and ignore(instance, update_fields):
            return
        old = sender._base_manager.filter(pk=instance.pk).first()
        if old is not None:
            instance.__dict__[_BEFORE] = old

    def saved(sender, instance, created, raw=False, update_fields=None, **kwargs):
        old = instance.__dict__.pop(_BEFORE, None)
        if raw or _is_untracked(sender):
            return
        if created:
            audit_record(
                action=AuditAction.CREATED, obj=instance, changes=changes_between({}, shown(instance, fields))
            )
            return
        if old is None:
            return
        # Compared as stored (a Decimal 5 and 5.00 are one value), shown as the admin shows them.
        names = [
            name
            for name in fields
            if getattr(old, attnames[name]) != getattr(instance, attnames[name])
            and (update_fields is None or name in update_fields)
        ]
        if not names:
            return
        before, after = shown(old, names), shown(instance, names)
        changes = {
            name: {"before": before[name], "after": CHANGED if name in secret else after[name]}
            for name in names
        }
        audit_record(action=AuditAction.CHANGED, obj=instance, changes=changes)

    def deleted(sender, instance, **kwargs):
        if _is_untracked(sender):
            return
        audit_record(
            action=AuditAction.DELETED, obj=instance, changes=changes_between(shown(instance, fields), {})
        )

    pre_save.connect(remember, sender=model, weak=False, dispatch_uid=f"audit.pre_save.{label}")
    post_save.connect(saved, sender=model, weak=False, dispatch_uid=f"audit.post_save.{label}")
    post_delete.connect(deleted, sender=model, weak=False, dispatch_uid=f"audit.post_delete.{label}")
    for name in m2m:
        _track_m2m(model, name)


def _track_m2m(model: type[models.Model], name: str) -> None:
    field = model._meta.get_field(name)
    through = field.remote_field.through
    target = field.related_model
    audit_action = (
        AuditAction.PERMISSIONS_CHANGED if target._meta.label_lower in _ACCESS_MODELS else AuditAction.CHANGED
    )

    def record(owner: models.Model, verb: str, names: list[str]) -> None:
        added, removed = (names, []) if verb == "post_add" else ([], names)
        audit_record(action=audit_action, obj=owner, changes={name: {"added": added, "removed": removed}})

    def changed(sender, instance, action, reverse, model, pk_set, **kwargs):
        if action not in ("post_add", "post_remove", "pre_clear"):
            return
        if not reverse:
            # user.groups.add(group): `instance` is the tracked row, `pk_set` the targets.
            if _is_untracked(type(instance)):
                return
            if action == "pre_clear":  # recorded before it happens, with what it removes
                pk_set = set(getattr(instance, name).values_list("pk", flat=True))
            if pk_set:
                targets = target._base_manager.filter(pk__in=pk_set)
                record(instance, action, sorted(str(item) for item in targets))
            return
        # group.user_set.add(user): `instance` is the target, `pk_set` the tracked rows it joins or leaves.
        if _is_untracked(model):
            return
        owners = model._base_manager.order_by("pk")
        owners = (
            owners.filter(**{name: instance.pk})
            if action == "pre_clear"
            else owners.filter(pk__in=pk_set or ())
        )
        for owner in owners:
            record(owner, action, [str(instance)])

    m2m_changed.connect(
        changed, sender=through, weak=False, dispatch_uid=f"audit.m2m.{model._meta.label_lower}.{name}"
    )
