"""Message templates: shipped in English and Swahili, refused when broken, rendered without surprises."""

import pytest
from django.core.exceptions import ValidationError

from notifications.context import SAMPLE_CONTEXT
from notifications.models import EVENT_CHANNELS, STAFF_EVENTS, MessageTemplate, NotificationRule
from notifications.rendering import render_message

pytestmark = pytest.mark.django_db


def test_every_event_and_channel_ships_in_english_and_swahili():
    shipped = set(MessageTemplate.objects.values_list("event", "channel", "language"))
    for event, channels in EVENT_CHANNELS.items():
        for channel in channels:
            assert (event, channel, "en") in shipped
            if event not in STAFF_EVENTS:  # staff messages: English only
                assert (event, channel, "sw") in shipped


def test_every_shipped_template_passes_its_own_validation():
    for template in MessageTemplate.objects.all():
        template.full_clean()


def test_every_rule_is_seeded_on():
    pairs = {(event, channel) for event, channels in EVENT_CHANNELS.items() for channel in channels}
    assert set(NotificationRule.objects.filter(enabled=True).values_list("event", "channel")) == pairs


def make(**fields):
    """An unsaved template, checked on its own: the shipped one for the same event is not in the way."""
    template = MessageTemplate(**{"event": "payment_completed", "channel": "sms", "language": "en", **fields})
    template.full_clean = lambda: MessageTemplate.full_clean(
        template, validate_unique=False, validate_constraints=False
    )
    return template


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ("Paid {% if receipt %}{{ receipt }}", "syntax error"),
        ("Paid {{ reciept }}", "Unknown variable(s): reciept"),
        ("{% if customer_phone %}x{% endif %}", "Unknown variable(s): customer_phone"),
        ("{{ amount.cents }}", "Unknown variable(s): amount.cents"),
        ("{{ amount|no_such_filter }}", "syntax error"),
        ("{% include 'secrets.html' %}", "fails when rendered"),
    ],
)
def test_a_broken_template_is_refused_when_saved(body, complaint):
    with pytest.raises(ValidationError) as refused:
        make(body=body).full_clean()

    assert complaint in " ".join(refused.value.message_dict["body"])


def test_a_broken_html_part_or_subject_is_refused_too():
    with pytest.raises(ValidationError) as refused:
        make(
            channel="email", subject="Paid {{ order_ref }}", body="ok", html_body="<p>{{ recipt }}</p>"
        ).full_clean()

    assert set(refused.value.message_dict) == {"subject", "html_body"}


def test_email_needs_a_subject_and_sms_has_none():
    with pytest.raises(ValidationError) as email:
        make(channel="email", body="Hi").full_clean()
    with pytest.raises(ValidationError) as sms:
        make(subject="Hello", body="Hi").full_clean()

    assert "subject" in email.value.message_dict and "subject" in sms.value.message_dict


def test_an_event_only_on_the_channels_it_uses():
    with pytest.raises(ValidationError) as refused:
        make(event="refund_failed", body="x").full_clean()

    assert "channel" in refused.value.message_dict


def test_a_good_template_with_filters_and_conditions_is_accepted():
    make(
        language="sw",
        body="{{ customer_name|upper }}: {% if can_retry %}{{ retry_hint }}{% else %}{{ reason }}{% endif %}",
    ).full_clean()


def test_the_admin_form_refuses_a_broken_template(admin_client):
    response = admin_client.post(
        "/admin/notifications/messagetemplate/add/",
        {"event": "payment_completed", "channel": "sms", "language": "en", "body": "Paid {{ reciept }}"},
    )

    assert response.status_code == 200
    assert b"Unknown variable(s): reciept" in response.content
    assert not MessageTemplate.objects.filter(body__contains="reciept").exists()


def test_sms_text_is_not_html_escaped_and_whitespace_is_tidied():
    rendered = render_message(
        channel="sms",
        subject="",
        body="  {{ business_name }}:  Tea & coffee{% if receipt %}   {{ receipt }}{% endif %}  \n\n\n\nBye ",
        html_body="",
        context=dict(SAMPLE_CONTEXT) | {"business_name": "A&B <Shop>"},
    )

    assert rendered.text == "A&B <Shop>: Tea & coffee SGR7ABC123\n\nBye"
    assert rendered.subject == "" and rendered.html == ""


def test_custom_html_part_is_escaped():
    rendered = render_message(
        channel="email",
        subject="Hi {{ customer_name }}",
        body="Hi",
        html_body="<p>{{ customer_name }}</p>",
        context=dict(SAMPLE_CONTEXT) | {"customer_name": "<script>x</script>"},
    )

    assert rendered.html == "<p>&lt;script&gt;x&lt;/script&gt;</p>"
    assert rendered.subject == "Hi <script>x</script>"


def test_a_missing_template_row_falls_back_to_the_shipped_text(django_capture_on_commit_callbacks):
    from notifications import services

    MessageTemplate.objects.filter(event="payment_completed", channel="sms").delete()
    with django_capture_on_commit_callbacks(execute=True):
        notification = services.notification_queue(
            event="payment_completed",
            channel="sms",
            recipient="254708374149",
            language="sw",
            context=dict(SAMPLE_CONTEXT),
            dedupe_key="fallback:1:sms",
        )

    assert notification.template is None and notification.language == "sw"
    assert notification.body.startswith("Duka Bora: Malipo ya KES 1,250 kwa oda K7QX2M9A yamepokelewa.")
