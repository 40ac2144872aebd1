"""The message templates shipped with the app, in English and Swahili.

The data migration copies them into MessageTemplate rows (editable in the admin); when a row is missing
(deleted, or a test database flushed) the sender falls back to the text here.
"""

# fmt: off
DEFAULT_SMS = {
    ("payment_initiated", "en"): "{{ business_name }}: Check your phone and enter your M-Pesa PIN to pay {{ amount }} for order {{ order_reference }}.",
    ("payment_initiated", "sw"): "{{ business_name }}: Angalia simu yako na uweke PIN yako ya M-Pesa ili kulipa {{ amount }} kwa oda {{ order_reference }}.",
    ("payment_completed", "en"): "{{ business_name }}: Payment of {{ amount }} received for order {{ order_reference }}.{% if receipt %} M-Pesa receipt {{ receipt }}.{% endif %} Thank you!",
    ("payment_completed", "sw"): "{{ business_name }}: Malipo ya {{ amount }} kwa oda {{ order_reference }} yamepokelewa.{% if receipt %} Risiti ya M-Pesa {{ receipt }}.{% endif %} Asante!",
    ("payment_failed", "en"): "{{ business_name }}: Your payment of {{ amount }} for order {{ order_reference }} did not go through. {{ reason }} {{ retry_hint }}",
    ("payment_failed", "sw"): "{{ business_name }}: Malipo yako ya {{ amount }} kwa oda {{ order_reference }} hayakufanikiwa. {{ reason }} {{ retry_hint }}",
    ("order_confirmed", "en"): "{{ business_name }}: Order {{ order_reference }} is confirmed. Please pay {{ amount }} in cash on delivery.",
    ("order_confirmed", "sw"): "{{ business_name }}: Oda {{ order_reference }} imethibitishwa. Tafadhali lipa {{ amount }} taslimu utakapopokea mzigo.",
    ("order_cancelled", "en"): "{{ business_name }}: Order {{ order_reference }} has been cancelled.{% if reason %} {{ reason }}{% endif %} If you still want it, please place a new order.",
    ("order_cancelled", "sw"): "{{ business_name }}: Oda {{ order_reference }} imeghairiwa.{% if reason %} {{ reason }}{% endif %} Ikiwa bado unaihitaji, tafadhali weka oda mpya.",
    ("refund_succeeded", "en"): "{{ business_name }}: We have refunded {{ refund_amount }} for order {{ order_reference }} to your M-Pesa.",
    ("refund_succeeded", "sw"): "{{ business_name }}: Tumekurejeshea {{ refund_amount }} kwa oda {{ order_reference }} kupitia M-Pesa.",
    ("alert_opened", "en"): "{{ business_name }} ALERT #{{ alert_id }}: {{ alert_title }} {{ admin_url }}",
    ("alert_reminder", "en"): "{{ business_name }} ALERT #{{ alert_id }} still open since {{ alert_opened_at }}: {{ alert_title }} {{ admin_url }}",
    ("alert_resolved", "en"): "{{ business_name }} alert #{{ alert_id }} resolved: {{ alert_title }}. {{ alert_resolution }}",
}

DEFAULT_EMAIL = {
    ("payment_initiated", "en"): (
        "Complete your payment for order {{ order_reference }}",
        "Hello {{ customer_name }},\n\nWe have sent an M-Pesa payment request of {{ amount }} for order {{ order_reference }} to your phone {{ phone }}. Check your phone and enter your M-Pesa PIN to pay.\n\n{{ business_name }}",
    ),
    ("payment_initiated", "sw"): (
        "Kamilisha malipo ya oda {{ order_reference }}",
        "Habari {{ customer_name }},\n\nTumetuma ombi la malipo ya M-Pesa la {{ amount }} kwa oda {{ order_reference }} kwenye simu yako {{ phone }}. Angalia simu yako na uweke PIN yako ya M-Pesa ili kulipa.\n\n{{ business_name }}",
    ),
    ("payment_completed", "en"): (
        "Payment received for order {{ order_reference }}",
        "Hello {{ customer_name }},\n\nWe have received your payment of {{ amount }} for order {{ order_reference }}.{% if receipt %}\nM-Pesa receipt: {{ receipt }}{% endif %}\n\nThank you for shopping with {{ business_name }}.",
    ),
    ("payment_completed", "sw"): (
        "Malipo ya oda {{ order_reference }} yamepokelewa",
        "Habari {{ customer_name }},\n\nTumepokea malipo yako ya {{ amount }} kwa oda {{ order_reference }}.{% if receipt %}\nRisiti ya M-Pesa: {{ receipt }}{% endif %}\n\nAsante kwa kununua kutoka {{ business_name }}.",
    ),
    ("payment_failed", "en"): (
        "Your payment for order {{ order_reference }} did not go through",
        "Hello {{ customer_name }},\n\nYour M-Pesa payment of {{ amount }} for order {{ order_reference }} did not go through.\n{{ reason }}\n\n{{ retry_hint }}\n\n{{ business_name }}",
    ),
    ("payment_failed", "sw"): (
        "Malipo ya oda {{ order_reference }} hayakufanikiwa",
        "Habari {{ customer_name }},\n\nMalipo yako ya M-Pesa ya {{ amount }} kwa oda {{ order_reference }} hayakufanikiwa.\n{{ reason }}\n\n{{ retry_hint }}\n\n{{ business_name }}",
    ),
    ("order_confirmed", "en"): (
        "Order {{ order_reference }} confirmed",
        "Hello {{ customer_name }},\n\nYour order {{ order_reference }} is confirmed. Please have {{ amount }} ready to pay in cash on delivery.\n\n{{ business_name }}",
    ),
    ("order_confirmed", "sw"): (
        "Oda {{ order_reference }} imethibitishwa",
        "Habari {{ customer_name }},\n\nOda yako {{ order_reference }} imethibitishwa. Tafadhali andaa {{ amount }} ili ulipe taslimu utakapopokea mzigo.\n\n{{ business_name }}",
    ),
    ("order_cancelled", "en"): (
        "Order {{ order_reference }} cancelled",
        "Hello {{ customer_name }},\n\nYour order {{ order_reference }} ({{ order_total }}) has been cancelled.{% if reason %} {{ reason }}{% endif %} If you still want it, please place a new order.\n\n{{ business_name }}",
    ),
    ("order_cancelled", "sw"): (
        "Oda {{ order_reference }} imeghairiwa",
        "Habari {{ customer_name }},\n\nOda yako {{ order_reference }} ({{ order_total }}) imeghairiwa.{% if reason %} {{ reason }}{% endif %} Ikiwa bado unaihitaji, tafadhali weka oda mpya.\n\n{{ business_name }}",
    ),
    ("refund_succeeded", "en"): (
        "Refund for order {{ order_reference }}",
        "Hello {{ customer_name }},\n\nWe have refunded {{ refund_amount }} for order {{ order_reference }} to your M-Pesa. It may take a few minutes to show in your balance.\n\n{{ business_name }}",
    ),
    ("refund_succeeded", "sw"): (
        "Marejesho ya pesa kwa oda {{ order_reference }}",
        "Habari {{ customer_name }},\n\nTumekurejeshea {{ refund_amount }} kwa oda {{ order_reference }} kupitia M-Pesa. Huenda ikachukua dakika chache kuonekana kwenye salio lako.\n\n{{ business_name }}",
    ),
    ("refund_failed", "en"): (
        "Refund #{{ refund_id }} failed (order {{ order_reference }})",
        "A refund of {{ refund_amount }} for order {{ order_reference }} (payment #{{ payment_id }}{% if receipt %}, M-Pesa receipt {{ receipt }}{% endif %}) failed.{% if reason %}\nM-Pesa said: {{ reason }}{% endif %}\n\nThe payment is still recorded as paid. Check the refund and decide how to return the money:\n{{ admin_url }}",
    ),
    ("alert_opened", "en"): (
        "[Alert #{{ alert_id }}] {{ alert_title }}",
        "{{ alert_rule }} opened alert #{{ alert_id }} at {{ alert_opened_at }}:\n{{ alert_title }}\n\nWhat it saw:\n{{ alert_details }}\n\nAcknowledge it when you are on it (reminders stop), or resolve it with a note:\n{{ admin_url }}\n\nIt resolves by itself once the condition has been clear for a while.\n\n{{ business_name }} back office",
    ),
    ("alert_reminder", "en"): (
        "[Alert #{{ alert_id }} still open] {{ alert_title }}",
        "Alert #{{ alert_id }} ({{ alert_rule }}) has been open since {{ alert_opened_at }} and nobody has acknowledged it:\n{{ alert_title }}\n\nNow:\n{{ alert_details }}\n\n{{ admin_url }}\n\n{{ business_name }} back office",
    ),
    ("alert_resolved", "en"): (
        "[Alert #{{ alert_id }} resolved] {{ alert_title }}",
        "Alert #{{ alert_id }} ({{ alert_rule }}), open since {{ alert_opened_at }}, is resolved.\n{{ alert_resolution }}\n\nLast figures:\n{{ alert_details }}\n\n{{ admin_url }}\n\n{{ business_name }} back office",
    ),
}

DEFAULT_RULES = [
    (event, channel)
    for event in (
        "payment_initiated",
        "payment_completed",
        "payment_failed",
        "order_confirmed",
        "order_cancelled",
        "refund_succeeded",
    )
    for channel in ("sms", "email")
] + [("refund_failed", "email")] + [
    (event, channel)
    for event in ("alert_opened", "alert_reminder", "alert_resolved")
    for channel in ("sms", "email")
]
# fmt: on


def default_text(event: str, channel: str, language: str) -> tuple[str, str] | None:
    """(subject, body) shipped for this event, channel and language, or None."""
    if channel == "sms":
        body = DEFAULT_SMS.get((event, language))
        return ("", body) if body else None
    return DEFAULT_EMAIL.get((event, language))
