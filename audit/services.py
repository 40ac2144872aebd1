"""Writing the audit trail. Services call `audit_record` inside their own transaction, after the change."""

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import models

from audit.context import current
from audit.models import AuditAction, AuditEntry


def field_values(instance: models.Model, fields: Iterable[str]) -> dict[str, Any]:
    """The current values of some fields of a row, as people read them: a foreign key by its name
    ("manager", not 4), money with its decimal places."""
    values = {}
    for name in fields:
        field = instance._meta.get_field(name)
        value = getattr(instance, field.attname)
        if field.is_relation and field.many_to_one and value is not None:
            value = str(getattr(instance, name))
        if isinstance(value, int | float) and isinstance(field, models.DecimalField):
            value = Decimal(value)
        if isinstance(value, Decimal):
            # Money reads as the admin shows it, whether it came from the database ("10.00") or a form ("10").
            places = getattr(field, "decimal_places", None)
            value = str(value.quantize(Decimal(1).scaleb(-places)) if places is not None else value)
        values[name] = value
    return values


def changes_between(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{"field": {"before": old, "after": new}} for every field whose value differs (empty and unset are
    the same: a new row's blank fields are not changes)."""
    return {
        name: {"before": before.get(name), "after": after.get(name)}
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name) and not (_empty(before.get(name)) and _empty(after.get(name)))
    }


def _empty(value) -> bool:
    return value is None or value == "" or value == [] or value == {}


def audit_record(
    *,
    action: AuditAction | str,
    actor=None,
    obj: models.Model | None = None,
    changes: Mapping[str, Any] | None = None,
    reason: str = "",
    data: Mapping[str, Any] | None = None,
    object_repr: str | None = None,
) -> AuditEntry:
    """Append one record. Call it inside the transaction that makes the change it describes.

    `actor` is the person acting (None: the system). The address is the current request's, when there is one.
    """
    context = current()
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None  # AnonymousUser: a failed login names the username in `data` instead
    if actor is None and context is not None and getattr(context.user, "is_authenticated", False):
        actor = context.user
    entry = AuditEntry(
        action=str(action),
        actor=actor,
        actor_name=actor.get_username() if actor is not None else "",
        ip=context.ip if context is not None else None,
        changes=dict(changes or {}),
        reason=reason or "",
        data=dict(data or {}),
    )
    if obj is not None:
        entry.content_type = ContentType.objects.get_for_model(obj, for_concrete_model=False)
        entry.object_id = str(obj.pk)
        entry.object_repr = (object_repr if object_repr is not None else str(obj))[:200]
    elif object_repr:
        entry.object_repr = object_repr[:200]
    entry.save()
    return entry
