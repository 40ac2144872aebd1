"""The audit trail itself: nobody can change or delete a record through the application (nor, on
PostgreSQL, through SQL), each person sees what their role allows, and each object shows its timeline."""

import csv
import io

import pytest
from django.contrib.auth.models import Group
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from audit.models import AuditAction, AuditEntry, AuditImmutable
from audit.services import audit_record
from backoffice import roles
from tests.payments.refunds_support import pay


@pytest.fixture
def role_user(django_user_model):
    def make(username: str, role: str):
        user = django_user_model.objects.create_user(username, password=username, is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        return django_user_model.objects.get(pk=user.pk)

    return make


@pytest.fixture
def entry(db, admin_user):
    return audit_record(
        action=AuditAction.REFUND_APPROVED, actor=admin_user, obj=admin_user, reason="checked"
    )


def test_a_record_cannot_be_changed_or_deleted_through_the_models(entry):
    entry.reason = "rewritten"
    with pytest.raises(AuditImmutable):
        entry.save()
    with pytest.raises(AuditImmutable):
        entry.delete()
    with pytest.raises(AuditImmutable):
        AuditEntry.objects.filter(pk=entry.pk).update(reason="rewritten")
    with pytest.raises(AuditImmutable):
        AuditEntry.objects.filter(pk=entry.pk).delete()
    with pytest.raises(AuditImmutable):
        AuditEntry.objects.bulk_update([entry], ["reason"])
    assert AuditEntry.objects.get(pk=entry.pk).reason == "checked"


def test_the_admin_offers_no_way_to_add_change_or_delete_a_record(entry, admin_client):
    change = reverse("admin:audit_auditentry_change", args=[entry.pk])
    page = admin_client.get(change)
    assert page.status_code == 200
    assert "checked" in page.content.decode()
    assert 'name="_save"' not in page.content.decode()

    assert admin_client.get(reverse("admin:audit_auditentry_add")).status_code == 403
    assert admin_client.post(change, {"reason": "rewritten"}).status_code == 403
    delete = reverse("admin:audit_auditentry_delete", args=[entry.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    changelist = reverse("admin:audit_auditentry_changelist")
    admin_client.post(
        changelist, {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"}
    )
    assert AuditEntry.objects.get(pk=entry.pk).reason == "checked"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_postgresql_refuses_update_and_delete_from_any_client(admin_user):
    entry = audit_record(action=AuditAction.TOKEN_ISSUED, actor=admin_user, obj=admin_user)
    for statement in (
        "UPDATE audit_auditentry SET reason = 'rewritten' WHERE id = %s",
        "DELETE FROM audit_auditentry WHERE id = %s",
    ):
        with (
            pytest.raises(DatabaseError, match="audit records cannot be changed or deleted"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement, [entry.pk])
    assert AuditEntry.objects.filter(pk=entry.pk, reason="").exists()


def test_viewers_and_operators_see_their_own_records_managers_and_auditors_see_all(role_user, client):
    people = {role: role_user(role.lower(), role) for role in roles.ROLES}
    for person in people.values():
        audit_record(action=AuditAction.PAYMENT_QUERIED, actor=person, obj=person)
    changelist = reverse("admin:audit_auditentry_changelist")

    def visible_actors(role):
        client.force_login(people[role])
        response = client.get(changelist)
        assert response.status_code == 200
        return {entry.actor_name for entry in response.context["cl"].result_list}

    everyone = {person.username for person in people.values()}
    assert visible_actors(roles.VIEWER) == {"viewer"}
    assert visible_actors(roles.OPERATOR) == {"operator"}
    assert visible_actors(roles.MANAGER) >= everyone
    assert visible_actors(roles.AUDITOR) >= everyone

    client.force_login(people[roles.VIEWER])
    others = AuditEntry.objects.exclude(actor=people[roles.VIEWER]).first()
    assert client.get(reverse("admin:audit_auditentry_change", args=[others.pk])).status_code == 302


def test_the_trail_filters_by_person_action_and_date(role_user, admin_client):
    manager, operator = role_user("manager", roles.MANAGER), role_user("operator", roles.OPERATOR)
    audit_record(action=AuditAction.REFUND_APPROVED, actor=manager, obj=manager)
    audit_record(action=AuditAction.PAYMENT_RETRIED, actor=operator, obj=operator)
    changelist = reverse("admin:audit_auditentry_changelist")

    def found(**params):
        response = admin_client.get(changelist, params)
        assert response.status_code == 200
        return [(entry.actor_name, entry.action) for entry in response.context["cl"].result_list]

    assert found(actor__id__exact=manager.pk) == [("manager", "refund_approved")]
    assert found(action__exact="payment_retried") == [("operator", "payment_retried")]
    assert found(at_from_0="2000-01-01", at_from_1="00:00", at_to_0="2000-01-02", at_to_1="00:00") == []
    assert {("manager", "refund_approved"), ("operator", "payment_retried")} <= set(
        found(at_from_0="2000-01-01", at_from_1="00:00")
    )


def test_a_payment_page_shows_its_timeline_with_its_refunds_and_order(
    admin_client, admin_user, place_order, fake_daraja
):
    _order, payment = place_order()
    payment = pay(payment)
    audit_record(action=AuditAction.PAYMENT_QUERIED, actor=admin_user, obj=payment, reason="customer called")
    audit_record(
        action=AuditAction.ORDER_CANCELLED, actor=admin_user, obj=payment.order, reason="on the order"
    )
    audit_record(action=AuditAction.PAYMENT_QUERIED, actor=admin_user, obj=admin_user, reason="elsewhere")

    page = admin_client.get(reverse("admin:payments_payment_change", args=[payment.pk])).content.decode()

    assert 'id="audit-timeline"' in page
    assert "customer called" in page and "on the order" in page
    assert "elsewhere" not in page


def test_an_auditor_exports_the_filtered_trail_and_the_export_is_itself_recorded(role_user, client):
    manager, auditor = role_user("manager", roles.MANAGER), role_user("auditor", roles.AUDITOR)
    payment_note = audit_record(
        action=AuditAction.REFUND_APPROVED, actor=manager, obj=manager, reason="=HYPERLINK(1)", changes={}
    )
    audit_record(action=AuditAction.PAYMENT_RETRIED, actor=manager, obj=manager)
    client.force_login(auditor)
    url = reverse("admin:audit_auditentry_export_list")

    response = client.post(url, {"format": "csv", "query": "action__exact=refund_approved"})

    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:5] == ["Record ID", "When (Nairobi)", "Who", "IP address", "Action"]
    assert [(row[0], row[2], row[4]) for row in rows[1:]] == [
        (str(payment_note.pk), "manager", "Approved a refund")
    ]
    assert rows[1][9] == "'=HYPERLINK(1)"  # a spreadsheet would run it
    export = AuditEntry.objects.filter(action=AuditAction.EXPORT_CREATED, actor=auditor).get()
    assert export.data["rows"] == 1 and export.data["filters"] == {"action__exact": "refund_approved"}

    client.force_login(role_user("viewer", roles.VIEWER))
    assert client.post(url, {"format": "csv", "query": ""}).status_code == 403
