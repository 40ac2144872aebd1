import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import reverse

from orders.models import OrderStatus
from payments.callback_urls import callback_token, stk_callback_url
from payments.models import CallbackInbox, EventKind, InboxKind, InboxStatus, Payment, PaymentStatus
from tests.conftest import daraja_payload, stk_callback

LEGACY_PATH = "/api/v1/payments/mpesa/callback"
SAFARICOM_IP = "196.201.214.200"


def settings_dir() -> Path:
    return Path(__file__).resolve().parents[2]


def post(client, path, body, *, content_type="application/json", **extra):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post(path, data=data, content_type=content_type, **extra)


def acked(response) -> bool:
    return response.status_code == 200 and response.json() == {"ResultCode": 0, "ResultDesc": "Accepted"}


def state_of(payment: Payment) -> tuple:
    payment.refresh_from_db()
    return payment.status, payment.mpesa_receipt_number, payment.events.count()


# --- the URL we hand to Daraja ------------------------------------------------------------------
def test_callback_url_carries_a_secret_and_none_of_the_words_safaricom_blocks(settings):
    url = stk_callback_url()

    assert url.startswith(settings.MPESA_CALLBACK_BASE_URL)
    assert callback_token() in url and len(callback_token()) >= 32
    for word in ("mpesa", "m-pesa", "safaricom", "query", "exe", "cmd", "sql"):
        assert word not in url.lower().replace(settings.MPESA_CALLBACK_BASE_URL.lower(), "")


def test_push_sends_our_tokenised_callback_url(initiated, fake_daraja):
    assert fake_daraja.pushes[0]["CallBackURL"] == stk_callback_url()


# --- the happy path and duplicates --------------------------------------------------------------
def test_success_callback_is_acknowledged_and_completes_the_order(client, callback_path, initiated):
    response = post(client, callback_path, stk_callback(initiated.checkout_request_id))

    assert acked(response)
    initiated.refresh_from_db()
    assert initiated.status == PaymentStatus.COMPLETED
    assert initiated.mpesa_receipt_number == "NLJ7RT61SV"
    assert initiated.order.status == OrderStatus.CONFIRMED
    inbox = CallbackInbox.objects.get()
    assert inbox.status == InboxStatus.PROCESSED
    assert inbox.payment == initiated
    assert inbox.correlation_id == initiated.checkout_request_id
    assert json.loads(inbox.body) == stk_callback(initiated.checkout_request_id)


def test_duplicate_callback_is_acknowledged_and_changes_nothing(client, callback_path, initiated):
    body = stk_callback(initiated.checkout_request_id)
    post(client, callback_path, body)
    before = state_of(initiated)

    assert acked(post(client, callback_path, body))

    assert state_of(initiated)[:2] == before[:2]
    assert initiated.events.filter(kind=EventKind.RESULT_APPLIED).count() == 1
    assert initiated.events.filter(kind=EventKind.DUPLICATE_RESULT).count() == 1
    # Byte-identical repeats are counted on the first row, not stored again (no unbounded inbox growth).
    [stored] = CallbackInbox.objects.all()
    assert (stored.status, stored.duplicates) == (InboxStatus.PROCESSED, 1)


def test_safaricom_cancelled_sample_fails_the_payment(client, callback_path, fake_daraja, place_order):
    body = daraja_payload("stk_callback_cancelled")
    fake_daraja.checkout_ids.append(body["Body"]["stkCallback"]["CheckoutRequestID"])
    order, payment = place_order()

    assert acked(post(client, callback_path, body))

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED
    assert payment.result_code == "1032"
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING


# --- callbacks that arrive before we know the CheckoutRequestID (faults 5, 14) ------------------
def test_unknown_checkout_id_is_kept_unmatched_then_applied_when_the_payment_appears(
    client, callback_path, fake_daraja, place_order
):
    early = stk_callback("ws_CO_ARRIVED_BEFORE_COMMIT")

    response = post(client, callback_path, early)

    assert acked(response)  # Daraja must not keep retrying
    inbox = CallbackInbox.objects.get()
    assert inbox.status == InboxStatus.UNMATCHED
    assert inbox.correlation_id == "ws_CO_ARRIVED_BEFORE_COMMIT"
    assert not Payment.objects.exists()

    fake_daraja.checkout_ids.append("ws_CO_ARRIVED_BEFORE_COMMIT")
    order, payment = place_order()

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.COMPLETED
    assert payment.mpesa_receipt_number == "NLJ7RT61SV"
    order.refresh_from_db()
    assert order.status == OrderStatus.CONFIRMED
    inbox.refresh_from_db()
    assert inbox.status == InboxStatus.PROCESSED
    assert inbox.payment == payment


# --- bodies that are not callbacks (faults 10, 11, 12) -----------------------------------------
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b'{"Body": {"stkCallback": ', "not JSON", id="truncated-json"),
        pytest.param(b"ResultCode=0", "not JSON", id="form-encoded"),
        pytest.param(b"", "Empty body", id="empty"),
        pytest.param(b"   ", "", id="whitespace"),
        pytest.param(b"[]", "Malformed", id="json-list"),
        pytest.param(b'{"Body": {"somethingElse": {}}}', "Malformed", id="wrong-shape"),
        pytest.param(b"\xff\xfe\x00garbage", "", id="binary"),
    ],
)
def test_malformed_body_is_refused_with_400_and_kept_as_rejected(
    client, callback_path, initiated, body, reason
):
    before = state_of(initiated)

    response = post(client, callback_path, body)

    assert response.status_code == 400
    assert response.json()["ResultCode"] != 0
    assert state_of(initiated) == before
    inbox = CallbackInbox.objects.get()
    assert inbox.status == InboxStatus.REJECTED
    assert reason in inbox.error


@pytest.mark.parametrize("route", ["payments:stk-callback", "payments:daraja-result"])
def test_a_refused_request_never_writes_the_url_secret_to_the_log(client, initiated, settings, caplog, route):
    # Django logs every 4xx with its path ("Bad Request: /hooks/.../<token>/"); the token is the only
    # thing standing between the internet and our callbacks (faults.md row 40).
    path = reverse(route, kwargs={"token": callback_token()})
    settings.MPESA_CALLBACK_ALLOWED_IPS = ["196.201.214.0/24"]
    caplog.set_level("INFO")

    statuses = [
        post(client, path, b"{not json", REMOTE_ADDR=SAFARICOM_IP).status_code,
        post(client, path, b"{}", content_type="text/plain", REMOTE_ADDR=SAFARICOM_IP).status_code,
        post(client, path, {"Body": {}}, REMOTE_ADDR="203.0.113.9").status_code,
        client.get(path).status_code,
    ]

    assert statuses == [400, 415, 403, 405]
    assert caplog.records, "the refusals are still logged"
    assert not [r for r in caplog.records if callback_token() in r.getMessage()]
    # Nor the inbox, which every staff member with the admin page can read.
    assert CallbackInbox.objects.count() == 3
    assert not CallbackInbox.objects.filter(path__contains=callback_token()).exists()


def test_nul_bytes_in_a_body_are_refused_as_malformed_not_answered_503(client, callback_path, initiated):
    # PostgreSQL text columns cannot hold NUL: storing the raw body must not turn into a database error.
    before = state_of(initiated)

    response = post(client, callback_path, b'{"Body": \x00 "broken"}')

    assert response.status_code == 400
    assert state_of(initiated) == before
    assert CallbackInbox.objects.get().status == InboxStatus.REJECTED


def test_escaped_nul_in_result_desc_does_not_block_the_payment(client, callback_path, initiated):
    body = stk_callback(initiated.checkout_request_id, result_desc="processed\u0000 successfully")

    response = post(client, callback_path, body)

    assert acked(response)
    initiated.refresh_from_db()
    assert initiated.status == PaymentStatus.COMPLETED
    assert "\x00" not in initiated.result_desc


def test_checkout_id_with_control_characters_is_refused(client, callback_path, initiated):
    response = post(client, callback_path, stk_callback("ws_CO_\u0000\n1"))

    assert response.status_code == 400
    assert CallbackInbox.objects.get().status == InboxStatus.REJECTED


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("transaction_date", "00010101000000"),
        ("transaction_date", "yesterday"),
        ("amount", 1e20),
        ("amount", "NaN"),
    ],
)
def test_success_with_unreadable_metadata_is_acknowledged_and_sent_to_review(
    client, callback_path, initiated, field, value
):
    response = post(client, callback_path, stk_callback(initiated.checkout_request_id, **{field: value}))

    assert acked(response)
    initiated.refresh_from_db()
    assert initiated.status == PaymentStatus.NEEDS_REVIEW
    assert initiated.review_reason == "missing_metadata"
    assert initiated.mpesa_receipt_number == "NLJ7RT61SV"
    assert initiated.order.status == OrderStatus.PENDING
    assert CallbackInbox.objects.get().status == InboxStatus.PROCESSED


def test_oversized_body_is_refused_with_413_and_not_stored(client, callback_path, initiated, settings):
    before = state_of(initiated)
    body = stk_callback(
        initiated.checkout_request_id, result_desc="x" * (settings.MPESA_CALLBACK_MAX_BYTES + 1)
    )

    response = post(client, callback_path, body)

    assert response.status_code == 413
    assert state_of(initiated) == before
    inbox = CallbackInbox.objects.get()
    assert inbox.status == InboxStatus.REJECTED
    assert inbox.body == ""


def test_content_length_claiming_a_huge_body_is_refused_before_reading(client, callback_path, initiated):
    before = state_of(initiated)

    response = post(
        client, callback_path, stk_callback(initiated.checkout_request_id), CONTENT_LENGTH="10485760"
    )

    assert response.status_code == 413
    assert state_of(initiated) == before


def test_content_length_understating_the_body_reads_no_more_than_declared(client, callback_path, initiated):
    before = state_of(initiated)
    body = json.dumps(stk_callback(initiated.checkout_request_id)).encode()

    response = post(client, callback_path, body, CONTENT_LENGTH="20")

    assert response.status_code == 400
    assert state_of(initiated) == before
    assert len(CallbackInbox.objects.get().body) <= 20


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_methods_other_than_post_get_405(client, callback_path, initiated, method):
    before = state_of(initiated)

    response = getattr(client, method)(callback_path)

    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert state_of(initiated) == before
    assert not CallbackInbox.objects.exists()


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "text/html"])
def test_non_json_content_type_gets_415_and_changes_nothing(client, callback_path, initiated, content_type):
    before = state_of(initiated)

    response = post(
        client, callback_path, stk_callback(initiated.checkout_request_id), content_type=content_type
    )

    assert response.status_code == 415
    assert state_of(initiated) == before
    assert CallbackInbox.objects.get().status == InboxStatus.REJECTED


def test_json_content_type_with_charset_is_accepted(client, callback_path, initiated):
    response = post(
        client,
        callback_path,
        stk_callback(initiated.checkout_request_id),
        content_type="application/json; charset=utf-8",
    )

    assert acked(response)
    assert state_of(initiated)[0] == PaymentStatus.COMPLETED


# --- who may post (faults 13, 15) --------------------------------------------------------------
@pytest.mark.parametrize("token", ["wrong-token", "", callback_token()[:-1], callback_token() + "x"])
def test_wrong_url_token_gets_404_and_changes_nothing(client, initiated, token):
    before = state_of(initiated)
    path = f"/hooks/daraja/stk/{token}/" if token else "/hooks/daraja/stk//"

    response = post(client, path, stk_callback(initiated.checkout_request_id))

    assert response.status_code == 404
    assert state_of(initiated) == before
    assert not CallbackInbox.objects.exists()


def test_source_outside_the_allowlist_gets_403_and_is_quarantined(client, callback_path, initiated, settings):
    settings.MPESA_CALLBACK_ALLOWED_IPS = [SAFARICOM_IP, "196.201.213.0/24"]
    before = state_of(initiated)
    body = stk_callback(initiated.checkout_request_id)

    response = post(client, callback_path, body, REMOTE_ADDR="203.0.113.9")

    assert response.status_code == 403
    assert state_of(initiated) == before
    inbox = CallbackInbox.objects.get()
    assert inbox.status == InboxStatus.REJECTED
    assert inbox.source_ip == "203.0.113.9"
    assert json.loads(inbox.body) == body  # kept for staff to reprocess if Safaricom's range changed


@pytest.mark.parametrize("remote_addr", [SAFARICOM_IP, "196.201.213.44"])
def test_source_on_the_allowlist_is_processed(client, callback_path, initiated, settings, remote_addr):
    settings.MPESA_CALLBACK_ALLOWED_IPS = [SAFARICOM_IP, "196.201.213.0/24"]

    response = post(
        client, callback_path, stk_callback(initiated.checkout_request_id), REMOTE_ADDR=remote_addr
    )

    assert acked(response)
    assert state_of(initiated)[0] == PaymentStatus.COMPLETED


@pytest.mark.parametrize("behind_proxy", [False, True])
def test_spoofed_x_forwarded_for_does_not_pass_the_allowlist(
    client, callback_path, initiated, settings, behind_proxy
):
    settings.MPESA_CALLBACK_ALLOWED_IPS = [SAFARICOM_IP]
    settings.BEHIND_PROXY = behind_proxy
    before = state_of(initiated)
    # Behind our proxy the last hop is the address the proxy saw; the client wrote the first one.
    forwarded = f"{SAFARICOM_IP}, 203.0.113.9" if behind_proxy else SAFARICOM_IP

    response = post(
        client,
        callback_path,
        stk_callback(initiated.checkout_request_id),
        REMOTE_ADDR="203.0.113.9" if not behind_proxy else "10.0.0.2",
        HTTP_X_FORWARDED_FOR=forwarded,
    )

    assert response.status_code == 403
    assert state_of(initiated) == before


def test_allowlisted_address_forwarded_by_our_proxy_is_processed(client, callback_path, initiated, settings):
    settings.MPESA_CALLBACK_ALLOWED_IPS = [SAFARICOM_IP]
    settings.BEHIND_PROXY = True

    response = post(
        client,
        callback_path,
        stk_callback(initiated.checkout_request_id),
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR=SAFARICOM_IP,
    )

    assert acked(response)
    assert state_of(initiated)[0] == PaymentStatus.COMPLETED


@pytest.mark.parametrize("forwarded", ["unknown", "196.201.214.200:443", "<script>"])
def test_unparseable_forwarded_address_from_our_proxy_does_not_lose_the_callback(
    client, callback_path, initiated, settings, forwarded
):
    # Some proxies write "unknown" or add the port; the callback must still be stored and applied.
    settings.BEHIND_PROXY = True

    response = post(
        client,
        callback_path,
        stk_callback(initiated.checkout_request_id),
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR=forwarded,
    )

    assert acked(response)
    assert state_of(initiated)[0] == PaymentStatus.COMPLETED


def test_unparseable_forwarded_address_is_quarantined_when_an_allowlist_is_set(
    client, callback_path, initiated, settings
):
    settings.BEHIND_PROXY = True
    settings.MPESA_CALLBACK_ALLOWED_IPS = [SAFARICOM_IP]
    before = state_of(initiated)

    response = post(
        client,
        callback_path,
        stk_callback(initiated.checkout_request_id),
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="unknown",
    )

    assert response.status_code == 403
    assert state_of(initiated) == before
    assert CallbackInbox.objects.get().status == InboxStatus.REJECTED


# --- the original service's unauthenticated path: only a trigger to ask Daraja ---------------------
@pytest.fixture
def legacy(client, django_capture_on_commit_callbacks):
    """POST to the original path; what it hands to a worker after commit runs (tasks are synchronous)."""

    def send(body):
        with django_capture_on_commit_callbacks(execute=True):
            return post(client, LEGACY_PATH, body)

    return send


def test_legacy_path_success_counts_only_as_daraja_confirms_it_and_its_receipt_is_not_trusted(
    legacy, client, initiated, fake_daraja
):
    fake_daraja.answer_query("0")

    response = legacy(stk_callback(initiated.checkout_request_id, receipt="FORGED1234"))

    assert acked(response)
    assert len(fake_daraja.queries) == 1
    assert fake_daraja.queries[0]["CheckoutRequestID"] == initiated.checkout_request_id
    initiated.refresh_from_db()
    assert initiated.status == PaymentStatus.COMPLETED
    # The body's receipt, amount and date are a claim: kept on the inbox row, never on the payment.
    assert initiated.mpesa_receipt_number is None
    assert initiated.receipt_pending
    assert initiated.transaction_date is None
    assert initiated.order.status == OrderStatus.CONFIRMED
    inbox = CallbackInbox.objects.get()
    assert inbox.kind == InboxKind.STK_CALLBACK_LEGACY
    assert inbox.claimed["MpesaReceiptNumber"] == "FORGED1234"
    assert initiated.events.get(kind=EventKind.RESULT_APPLIED).source == "query"


def test_the_secret_url_callback_then_supplies_the_receipt(
    legacy, client, callback_path, initiated, fake_daraja
):
    fake_daraja.answer_query("0")
    legacy(stk_callback(initiated.checkout_request_id, receipt="FORGED1234"))

    assert acked(
        post(client, callback_path, stk_callback(initiated.checkout_request_id, receipt="NLJ7RT61SV"))
    )

    initiated.refresh_from_db()
    assert (initiated.mpesa_receipt_number, initiated.receipt_pending) == ("NLJ7RT61SV", False)


def test_forged_legacy_success_contradicted_by_stk_query_does_not_pay(legacy, client, initiated, fake_daraja):
    fake_daraja.answer_query("1032")

    response = legacy(stk_callback(initiated.checkout_request_id))

    assert response.status_code == 200
    initiated.refresh_from_db()
    assert initiated.status == PaymentStatus.FAILED
    assert initiated.mpesa_receipt_number is None
    assert initiated.order.status == OrderStatus.PENDING


def test_a_forged_failure_on_the_legacy_path_cannot_fail_a_payment(legacy, client, initiated, fake_daraja):
    response = legacy(stk_callback(initiated.checkout_request_id, result_code=1032))

    assert acked(response)
    assert len(fake_daraja.queries) == 1  # a failure is asked about too; Daraja says still processing
    initiated.refresh_from_db()
    assert initiated.status == PaymentStatus.INITIATED
    assert initiated.result_code == ""


def test_forged_legacy_success_on_a_failed_payment_is_checked_and_changes_nothing(
    legacy, client, callback_path, initiated, fake_daraja
):
    post(client, callback_path, stk_callback(initiated.checkout_request_id, result_code=1032))
    initiated.refresh_from_db()
    assert initiated.status == PaymentStatus.FAILED
    fake_daraja.answer_query("1032")

    response = legacy(stk_callback(initiated.checkout_request_id))

    assert acked(response)
    assert len(fake_daraja.queries) == 1  # money after a failure is worth asking about
    initiated.refresh_from_db()
    assert initiated.status == PaymentStatus.FAILED
    assert initiated.mpesa_receipt_number is None


def test_legacy_success_stays_unconfirmed_while_the_customer_has_not_answered(
    legacy, client, initiated, fake_daraja
):
    response = legacy(stk_callback(initiated.checkout_request_id))

    assert response.status_code == 200
    initiated.refresh_from_db()
    assert initiated.status == PaymentStatus.INITIATED
    assert list(initiated.events.values_list("kind", flat=True))[-2:] == [
        EventKind.QUERY_REQUESTED,
        EventKind.QUERY_PENDING,
    ]


def test_a_legacy_storm_asks_daraja_once_per_throttle_window(legacy, client, initiated, fake_daraja):
    for n in range(5):
        legacy(stk_callback(initiated.checkout_request_id, receipt=f"FORGED{n:04d}"))

    assert len(fake_daraja.queries) == 1
    assert initiated.events.filter(kind=EventKind.QUERY_REQUESTED).count() == 5


def test_legacy_path_can_be_switched_off(legacy, client, initiated, settings):
    settings.MPESA_LEGACY_CALLBACK_ENABLED = False

    response = legacy(stk_callback(initiated.checkout_request_id))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert state_of(initiated)[0] == PaymentStatus.INITIATED


@pytest.mark.parametrize(("environment", "expected"), [("simulator", "True"), ("sandbox", "False")])
def test_legacy_path_is_off_by_default_outside_the_simulator(environment, expected):
    env = {
        **os.environ,
        "MPESA_ENVIRONMENT": environment,
        "DJANGO_SECRET_KEY": "x" * 60,
        "DJANGO_SETTINGS_MODULE": "backoffice.settings",
    }
    env.pop("MPESA_LEGACY_CALLBACK_ENABLED", None)
    code = "import django; django.setup(); from django.conf import settings; print(settings.MPESA_LEGACY_CALLBACK_ENABLED)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=settings_dir()
    )
    assert out.stdout.strip() == expected


# --- hostile text (fault 36) --------------------------------------------------------------------
def test_hostile_result_desc_is_stored_truncated_and_rendered_escaped_in_the_admin(
    client, admin_client, callback_path, initiated, settings
):
    settings.MPESA_CALLBACK_MAX_BYTES = 256 * 1024  # let a 100 KB description through to the parser
    hostile = '<script>alert("pwned")</script>\r\nX-Evil: 1\n' + "Z" * 100_000

    response = post(
        client,
        callback_path,
        stk_callback(initiated.checkout_request_id, result_code=1032, result_desc=hostile),
    )

    assert acked(response)
    initiated.refresh_from_db()
    assert initiated.status == PaymentStatus.FAILED
    assert len(initiated.result_desc) <= 512
    assert "\n" not in initiated.result_desc

    for url in (
        reverse("admin:payments_payment_change", args=[initiated.pk]),
        reverse("admin:payments_callbackinbox_change", args=[CallbackInbox.objects.get().pk]),
        reverse("admin:payments_paymentevent_changelist"),
        reverse("admin:orders_order_change", args=[initiated.order_id]),
    ):
        page = admin_client.get(url)
        assert page.status_code == 200, url
        html = page.content.decode()
        assert '<script>alert("pwned")' not in html, url
        assert "&lt;script&gt;alert(" in html, url


def test_callback_racing_the_commit_of_its_checkout_request_id_is_still_applied(
    client, callback_path, initiated, monkeypatch
):
    from payments.services import callbacks

    checkout_request_id = initiated.checkout_request_id
    Payment.objects.filter(pk=initiated.pk).update(checkout_request_id=None)
    apply_result = callbacks.payment_apply_result

    def push_commits_in_the_gap(**kwargs):
        try:
            return apply_result(**kwargs)
        finally:
            # The STK push's own transaction commits the id (and finds no unmatched row yet) right after
            # the callback's lookup missed it.
            Payment.objects.filter(pk=initiated.pk).update(checkout_request_id=checkout_request_id)

    monkeypatch.setattr(callbacks, "payment_apply_result", push_commits_in_the_gap)

    response = post(client, callback_path, stk_callback(checkout_request_id))

    assert acked(response)
    initiated.refresh_from_db()
    assert initiated.status == PaymentStatus.COMPLETED
    assert CallbackInbox.objects.get().status == InboxStatus.PROCESSED
