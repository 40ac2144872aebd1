"""Each order keeps the contact it was placed with; customers become one per phone (or email).

Existing orders get the snapshot they would have had if placed today where the order itself knows it (the
shipping name; the phone of its first M-Pesa attempt, or the shipping phone for cash on delivery when it is
a mobile number), and the email, language and SMS opt-out of their current customer row, which orders never
stored. The customer row's own phone is not used: every order overwrote it, so it belongs to whichever order
came last. Snapshots are filled before customers are merged, so each order keeps its own row's details.

Then duplicate customers are merged, ready for the unique constraints of 0004: phones are normalised
(staff may have typed 07...), and per phone, or per email among customers without a phone, the oldest row
stays as it is, the others' orders move to it and the others are deleted.
"""

from collections import defaultdict

from django.db import migrations, models

from common.phone import InvalidPhoneNumber, normalize_msisdn

BATCH = 500
SNAPSHOT_FIELDS = ["contact_name", "contact_phone", "contact_email", "contact_language", "contact_sms_opt_out"]


def _msisdn_or_empty(raw):
    try:
        return normalize_msisdn(raw or "")
    except InvalidPhoneNumber:
        return ""


def fill_contact_snapshots(apps, schema_editor):
    Order = apps.get_model("orders", "Order")
    Payment = apps.get_model("payments", "Payment")
    last_pk = 0
    while True:
        batch = list(Order.objects.select_related("customer").filter(pk__gt=last_pk).order_by("pk")[:BATCH])
        if not batch:
            return
        last_pk = batch[-1].pk
        prompted = {}
        attempts = (
            Payment.objects.filter(order_id__in=[order.pk for order in batch])
            .exclude(phone="")
            .order_by("created_at", "pk")
            .values_list("order_id", "phone")
        )
        for order_id, phone in attempts:
            prompted.setdefault(order_id, phone)
        for order in batch:
            customer = order.customer
            order.contact_name = order.shipping_full_name or customer.full_name
            order.contact_phone = prompted.get(order.pk) or _msisdn_or_empty(order.shipping_phone)
            order.contact_email = customer.email
            order.contact_language = customer.language or "en"
            order.contact_sms_opt_out = customer.sms_opt_out
        Order.objects.bulk_update(batch, SNAPSHOT_FIELDS)


def merge_duplicate_customers(apps, schema_editor):
    Customer = apps.get_model("orders", "Customer")
    Order = apps.get_model("orders", "Order")
    groups = defaultdict(list)
    for pk, phone, email in Customer.objects.order_by("pk").values_list("pk", "phone", "email"):
        # An unusable number stays as typed: it is still a value the unique constraint compares.
        stored = _msisdn_or_empty(phone) or phone
        if stored != phone:
            Customer.objects.filter(pk=pk).update(phone=stored)
        if stored:
            groups["phone", stored].append(pk)
        elif email:
            groups["email", email.lower()].append(pk)
    for keep, *duplicates in groups.values():
        if duplicates:
            Order.objects.filter(customer_id__in=duplicates).update(customer_id=keep)
            Customer.objects.filter(pk__in=duplicates).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0002_money_safety"),
        ("payments", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="order",
            name="contact_name",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AddField(
            model_name="order",
            name="contact_phone",
            field=models.CharField(
                blank=True,
                help_text="2547XXXXXXXX: the M-Pesa number, or the shipping phone for cash on delivery.",
                max_length=12,
            ),
        ),
        migrations.AddField(
            model_name="order",
            name="contact_email",
            field=models.EmailField(blank=True, max_length=254),
        ),
        migrations.AddField(
            model_name="order",
            name="contact_language",
            field=models.CharField(
                choices=[("en", "English"), ("sw", "Kiswahili")], default="en", max_length=2
            ),
        ),
        migrations.AddField(
            model_name="order",
            name="contact_sms_opt_out",
            field=models.BooleanField(default=False, help_text="The customer asked for no SMS about this order."),
        ),
        migrations.RunPython(fill_contact_snapshots, migrations.RunPython.noop, elidable=True),
        migrations.RunPython(merge_duplicate_customers, migrations.RunPython.noop, elidable=True),
    ]
