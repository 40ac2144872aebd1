"""The local SMS backend: records each message once, after SMS_LOCAL_LATENCY_MS when it plays a slow provider."""

import logging

from notifications.channels import sms


def test_the_local_backend_records_a_message_only_after_its_latency(settings, monkeypatch, caplog):
    settings.SMS_BACKEND = "local"
    settings.SMS_LOCAL_LATENCY_MS = 1200
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        logging.getLogger("test").info("waited")

    monkeypatch.setattr(sms.time, "sleep", sleep)

    with caplog.at_level(logging.INFO):
        result = sms.send_sms(to="254708374149", text="Paid, thank you")

    assert waits == [1.2]
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0] == "waited"
    assert messages[1].startswith(f"SMS (local backend, not sent) to 2547*****149 [{result.message_id}]")


def test_the_local_backend_answers_at_once_by_default(settings, monkeypatch):
    settings.SMS_BACKEND = "local"
    waits = []
    monkeypatch.setattr(sms.time, "sleep", waits.append)

    assert sms.send_sms(to="254708374149", text="Paid").message_id.startswith("local-")
    assert waits == []
