"""Customers are recognised by phone (or by email without a phone), no longer by the API user.

A migration of its own: on PostgreSQL, altering orders_customer in the transaction that just repointed
orders (0003) fails with "pending trigger events" from the deferred foreign-key checks.
"""

import django.db.models.functions.text
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0003_order_contact_snapshot"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="customer",
            name="user",
        ),
        migrations.AlterField(
            model_name="customer",
            name="sms_opt_out",
            field=models.BooleanField(
                default=False,
                help_text="Customer asked not to receive SMS. Messages about an order follow the choice made "
                "with that order.",
            ),
        ),
        migrations.AddConstraint(
            model_name="customer",
            constraint=models.UniqueConstraint(
                condition=models.Q(("phone", ""), _negated=True), fields=("phone",), name="customer_phone_unique"
            ),
        ),
        migrations.AddConstraint(
            model_name="customer",
            constraint=models.UniqueConstraint(
                django.db.models.functions.text.Lower("email"),
                condition=models.Q(("phone", ""), models.Q(("email", ""), _negated=True)),
                name="customer_email_unique_without_phone",
            ),
        ),
    ]
