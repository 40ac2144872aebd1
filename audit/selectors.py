"""Reading the audit trail: who may see which records, and one object's timeline."""

from collections.abc import Iterable

from django.contrib.contenttypes.models import ContentType
from django.db.models import Q, QuerySet

from audit.models import AuditEntry

VIEW_ALL = "audit.view_all_auditentry"


def audit_entries_for(user) -> QuerySet[AuditEntry]:
    """Everything for those who may see every record (auditors, managers); otherwise one's own records."""
    entries = AuditEntry.objects.select_related("actor", "content_type")
    if user.has_perm(VIEW_ALL):
        return entries
    return entries.filter(actor_id=user.pk)


def audit_timeline(*, user, objects: Iterable) -> QuerySet[AuditEntry]:
    """The records about any of `objects` (say a payment, its order and its refunds) that `user` may see."""
    by_type: dict[ContentType, list[str]] = {}
    for obj in objects:
        content_type = ContentType.objects.get_for_model(obj, for_concrete_model=False)
        by_type.setdefault(content_type, []).append(str(obj.pk))
    if not by_type:
        return AuditEntry.objects.none()
    matches = Q()
    for content_type, ids in by_type.items():
        matches |= Q(content_type=content_type, object_id__in=ids)
    return audit_entries_for(user).filter(matches)
