"""Helpers for the refund tests: paid payments, staff users, and Daraja's Result APIs faked with `responses`."""

import base64
import itertools
import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding
from django.contrib.auth.models import Permission

from payments import services
from payments.callback_urls import queue_timeout_url, result_url
from payments.daraja.results import parse_stk_callback
from payments.models import EventSource, Payment
from tests.conftest import FAKE_DARAJA_URL, stk_callback

SIMULATOR_KEY = Path(__file__).resolve().parents[2] / "payments" / "simulator" / "certs" / "simulator-key.pem"
REVERSAL = "/mpesa/reversal/v1/request"
B2C = "/mpesa/b2c/v3/paymentrequest"
STATUS = "/mpesa/transactionstatus/v1/query"


def decrypt_credential(credential: str) -> str:
    """What Safaricom does with a SecurityCredential, using the simulator's throwaway private key."""
    key = serialization.load_pem_private_key(SIMULATOR_KEY.read_bytes(), password=None)
    return key.decrypt(base64.b64decode(credential), padding.PKCS1v15()).decode()


def staff_user(django_user_model, username: str, *perms: str):
    user = django_user_model.objects.create_user(username, is_staff=True)
    for perm in perms:
        user.user_permissions.add(Permission.objects.get(codename=perm, content_type__app_label="payments"))
    return django_user_model.objects.get(pk=user.pk)  # fresh permission cache


def pay(payment: Payment, *, receipt: str = "NLJ7RT61SV") -> Payment:
    """Complete an initiated attempt with a success callback, as Daraja would."""
    body = stk_callback(payment.checkout_request_id, amount=float(payment.amount), receipt=receipt)
    return services.payment_apply_result(
        checkout_request_id=payment.checkout_request_id,
        result=parse_stk_callback(body),
        source=EventSource.CALLBACK,
    )


def path_of(url: str) -> str:
    return urlsplit(url).path


def post_result(client, body: dict):
    return client.post(path_of(result_url()), data=json.dumps(body), content_type="application/json")


def post_queue_timeout(client, body: dict):
    return client.post(path_of(queue_timeout_url()), data=json.dumps(body), content_type="application/json")


def result_envelope(
    *,
    originator: str,
    conversation: str,
    code=0,
    desc="The service request is processed successfully.",
    transaction_id="",
    parameters=None,
):
    result = {
        "ResultType": 0,
        "ResultCode": code,
        "ResultDesc": desc,
        "OriginatorConversationID": originator,
        "ConversationID": conversation,
        "TransactionID": transaction_id or "SKE0000000",
    }
    if parameters is not None:
        result["ResultParameters"] = {
            "ResultParameter": [{"Key": k, "Value": v} for k, v in parameters.items()]
        }
    result["ReferenceData"] = {"ReferenceItem": {"Key": "QueueTimeoutURL", "Value": "https://shop.example/t"}}
    return {"Result": result}


def reversal_success(
    ack: dict, *, receipt: str = "SKR1A2B3C4", original: str = "NLJ7RT61SV", amount=10
) -> dict:
    return result_envelope(
        originator=ack["OriginatorConversationID"],
        conversation=ack["ConversationID"],
        transaction_id=receipt,
        parameters={
            "DebitAccountBalance": "Utility Account|KES|7722179.62|7722179.62|0.00|0.00",
            "Amount": amount,
            "TransCompletedTime": 20261127101010,
            "OriginalTransactionID": original,
            "Charge": 0,
            "CreditPartyPublicName": "254708374149 - JOHN DOE",
            "DebitPartyPublicName": "174379 - Shop",
        },
    )


def status_completed(
    status_ack: dict,
    *,
    about_originator: str,
    about_conversation: str,
    receipt: str,
    reason_type: str = "Reversal",
    amount=10,
) -> dict:
    return result_envelope(
        originator=status_ack["OriginatorConversationID"],
        conversation=status_ack["ConversationID"],
        transaction_id=receipt,
        parameters={
            "DebitPartyName": "174379 - Shop",
            "CreditPartyName": "254708374149 - JOHN DOE",
            "OriginatorConversationID": about_originator,
            "InitiatedTime": 20261127101010,
            "DebitAccountType": "Utility Account",
            "ReasonType": reason_type,
            "TransactionStatus": "Completed",
            "FinalisedTime": 20261127101011,
            "Amount": amount,
            "ConversationID": about_conversation,
            "ReceiptNo": receipt,
        },
    )


class FakeResultApis:
    """Reversal, B2C and Transaction Status on the fake Daraja: acknowledged unless a reply is queued."""

    def __init__(self, mock):
        self.replies: dict[str, list] = {REVERSAL: [], B2C: [], STATUS: []}
        self.calls: dict[str, list[dict]] = {REVERSAL: [], B2C: [], STATUS: []}
        self.acks: dict[str, list[dict]] = {REVERSAL: [], B2C: [], STATUS: []}
        self.on_call = None  # optional hook(path, body, ack) run before answering; it may raise
        self._ids = itertools.count(1)
        for path in (REVERSAL, B2C, STATUS):
            mock.add_callback("POST", FAKE_DARAJA_URL + path, callback=self._handler(path))

    def _handler(self, path):
        def handle(request):
            body = json.loads(request.body)
            self.calls[path].append(body)
            if self.replies[path]:
                reply = self.replies[path].pop(0)
                if isinstance(reply, BaseException):
                    raise reply
                status, payload = reply
                return status, {"Content-Type": "application/json"}, json.dumps(payload)
            n = next(self._ids)
            ack = {
                "OriginatorConversationID": body.get("OriginatorConversationID") or f"fake-oc-{n:04d}",
                "ConversationID": f"AG_20261127_{n:020x}",
                "ResponseCode": "0",
                "ResponseDescription": "Accept the service request successfully.",
            }
            self.acks[path].append(ack)
            if self.on_call:
                self.on_call(path, body, ack)
            return 200, {"Content-Type": "application/json"}, json.dumps(ack)

        return handle

    @property
    def reversals(self) -> list[dict]:
        return self.calls[REVERSAL]

    @property
    def b2c_payments(self) -> list[dict]:
        return self.calls[B2C]

    @property
    def status_queries(self) -> list[dict]:
        return self.calls[STATUS]


@pytest.fixture
def result_apis(fake_daraja):
    return FakeResultApis(fake_daraja.mock)


@pytest.fixture
def paid(place_order, fake_daraja):
    """A completed M-Pesa payment of KES 10 with receipt NLJ7RT61SV (the fake Daraja took the push)."""
    _order, payment = place_order()
    return pay(payment)


@pytest.fixture
def maker(django_user_model):
    return staff_user(django_user_model, "maker", "add_refund")


@pytest.fixture
def checker(django_user_model):
    return staff_user(
        django_user_model, "checker", "add_refund", "approve_refund", "resolve_refund", "query_payment"
    )


def die_after_daraja_accepts(path, body, ack):
    """FakeResultApis.on_call: Daraja took the request and answered; our worker died reading the answer."""
    raise SystemExit("worker killed after Daraja accepted the request")


class DiesAfterDarajaAnswers(requests.adapters.HTTPAdapter):
    """A transport that sends the request for real, then dies before the answer reaches our code: a worker
    killed after Daraja accepted. Mount it on the process's Daraja session for one URL prefix."""

    def send(self, request, *args, **kwargs):
        super().send(request, *args, **kwargs)
        raise RuntimeError("worker died after Daraja accepted the request")
