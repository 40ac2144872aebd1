"""The only module that talks HTTP to Daraja.

It owns the base URL, one requests.Session, timeouts, the OAuth token (shared by every process through the
Django cache, minted by one process at a time because a new token invalidates the previous one), the pace of
requests (payments.daraja.rate_limit: MPESA_RATE_LIMIT_PER_SECOND), the STK password, and the translation of
Daraja's answers into our typed errors.
"""

import base64
import contextlib
import datetime as dt
import hashlib
import logging
import os
import threading
import time
from decimal import ROUND_CEILING, Decimal

import requests
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from common.outage import outage_kind
from common.phone import mask_msisdn
from payments.daraja.async_results import AsyncAccepted
from payments.daraja.errors import (
    DarajaAuthError,
    DarajaBusy,
    DarajaOutcomeUnknown,
    DarajaRejected,
    DarajaUnavailable,
)
from payments.daraja.rate_limit import DarajaPacer
from payments.daraja.results import NAIROBI, StkPushAccepted, StkQueryAnswer, result_code_str
from payments.daraja.security import security_credential

logger = logging.getLogger(__name__)

INVALID_TOKEN_CODES = {"404.001.03", "401.002.01", "400.003.01"}
BUSY_CODES = {"500.003.02", "500.003.03"}
STK_PUSH_PATH = "/mpesa/stkpush/v1/processrequest"
STK_QUERY_PATH = "/mpesa/stkpushquery/v1/query"
REVERSAL_PATH = "/mpesa/reversal/v1/request"
B2C_PATH = "/mpesa/b2c/v3/paymentrequest"
TRANSACTION_STATUS_PATH = "/mpesa/transactionstatus/v1/query"
PULL_REGISTER_PATH = "/pulltransactions/v1/register"
PULL_QUERY_PATH = "/pulltransactions/v1/query"
PULL_REGISTERED_CODES = {"1000", "1001"}  # registered now / already registered
PULL_ANSWER_CODES = {"1000", "1001"}  # transactions / none in the period
PULL_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
OAUTH_PATH = "/oauth/v1/generate"
TOKEN_REFRESH_MARGIN = 300  # seconds before expiry a cached token stops being used (at most)
MAX_MPESA_AMOUNT = 250_000


def mpesa_amount(amount: Decimal) -> int:
    """M-Pesa takes whole shillings only: a total with cents is charged rounded up (10.20 -> 11)."""
    whole = int(Decimal(amount).to_integral_value(rounding=ROUND_CEILING))
    if whole < 1 or whole > MAX_MPESA_AMOUNT:
        raise ValueError(f"M-Pesa amounts are 1 to {MAX_MPESA_AMOUNT:,} KES per transaction.")
    return whole


def daraja_timestamp(now: dt.datetime | None = None) -> str:
    """YYYYMMDDHHmmss in Nairobi time; the same value goes into the password and the body."""
    return (now or timezone.now()).astimezone(NAIROBI).strftime("%Y%m%d%H%M%S")


def stk_password(shortcode: str, passkey: str, timestamp: str) -> str:
    return base64.b64encode(f"{shortcode}{passkey}{timestamp}".encode()).decode()


def _alphanumeric(text: str, limit: int) -> str:
    # Special characters in AccountReference/TransactionDesc make pushes fail (daraja.md §2).
    return "".join(ch for ch in text if ch.isalnum() or ch == " ").strip()[:limit] or "Payment"


def token_cache_seconds(lifetime: int) -> int:
    """How long a token is used: until a tenth of its life, at most TOKEN_REFRESH_MARGIN, is left (an hour's
    token is renewed 5 minutes early), so a request never carries a token about to expire."""
    margin = min(TOKEN_REFRESH_MARGIN, max(1, lifetime // 10))
    return max(lifetime - margin, 1)


class DarajaClient:
    def __init__(self, *, session: requests.Session | None = None, pacer: DarajaPacer | None = None):
        self.session = session or requests.Session()
        self.pacer = pacer or DarajaPacer()

    # Settings are read at call time so tests and a changed environment take effect without re-import.
    @property
    def base_url(self) -> str:
        return settings.MPESA_BASE_URL

    @property
    def timeout(self) -> tuple[float, float]:
        return (settings.MPESA_CONNECT_TIMEOUT, settings.MPESA_READ_TIMEOUT)

    def _token_cache_key(self) -> str:
        identity = f"{self.base_url}|{settings.MPESA_CONSUMER_KEY}"
        return "daraja:token:" + hashlib.sha256(identity.encode()).hexdigest()[:24]

    # --- OAuth ----------------------------------------------------------------------------------
    def access_token(self, *, stale_token: str | None = None) -> str:
        """The shared token; `stale_token` is one Daraja just refused, so a different one is needed."""
        with _shared_cache_needed("the Daraja access token"):
            return self._access_token(stale_token=stale_token)

    def _access_token(self, *, stale_token: str | None) -> str:
        key = self._token_cache_key()
        token = cache.get(key)
        if token and token != stale_token:
            return token
        lock_key = key + ":lock"
        deadline = time.monotonic() + 10
        while not cache.add(lock_key, "1", timeout=15):
            # Another process is minting; wait for its token rather than invalidating it with ours.
            time.sleep(0.1)
            token = cache.get(key)
            if token and token != stale_token:
                return token
            if time.monotonic() > deadline:
                break
        try:
            token = cache.get(key)
            if token and token != stale_token:
                return token
            token, lifetime = self._mint_token()
            cache.set(key, token, timeout=token_cache_seconds(lifetime))
            return token
        finally:
            cache.delete(lock_key)

    def _mint_token(self) -> tuple[str, int]:
        credentials = f"{settings.MPESA_CONSUMER_KEY}:{settings.MPESA_CONSUMER_SECRET}"
        headers = {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}
        try:
            response = self.session.get(
                self.base_url + OAUTH_PATH,
                params={"grant_type": "client_credentials"},
                headers=headers,
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise DarajaUnavailable(f"Daraja OAuth unreachable: {type(exc).__name__}") from exc
        body = _json_or_none(response)
        if response.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
            code, message = _error_of(body, response)
            status = response.status_code
            text = f"Daraja OAuth failed: {message}"
            # Only a refusal of our credentials is a configuration error; a busy or broken OAuth service
            # is "try again later", like any other Daraja outage (a token request moves no money).
            if status == 429 or code in BUSY_CODES:
                raise DarajaBusy(text, error_code=code, http_status=status)
            if status >= 500:
                raise DarajaUnavailable(text, error_code=code, http_status=status)
            raise DarajaAuthError(text, error_code=code, http_status=status)
        try:
            lifetime = int(body.get("expires_in", 3599))  # arrives as a string ("3599") in real traffic
        except (TypeError, ValueError):
            lifetime = 3599
        logger.info("Daraja OAuth token minted (valid %s s)", lifetime)
        return body["access_token"], lifetime

    # --- transport ------------------------------------------------------------------------------
    def _post(
        self, path: str, payload: dict, *, connect_retries: int = 0
    ) -> tuple[requests.Response, object]:
        token = self.access_token()
        for refreshed in (False, True):
            response = self._send(path, payload, token, connect_retries=connect_retries)
            body = _json_or_none(response)
            code, _message = _error_of(body, response)
            if code in INVALID_TOKEN_CODES or response.status_code == 401:
                if refreshed:
                    raise DarajaAuthError("Daraja refused a fresh access token", error_code=code)
                # A refused token means nothing was processed: refresh once and send again.
                token = self.access_token(stale_token=token)
                continue
            return response, body
        raise AssertionError("unreachable")

    def _send(self, path: str, payload: dict, token: str, *, connect_retries: int) -> requests.Response:
        attempt = 0
        while True:
            with _shared_cache_needed("the Daraja rate limit"):
                self.pacer.wait_for_slot(path)
            try:
                return self.session.post(
                    self.base_url + path,
                    json=payload,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=self.timeout,
                )
            except (requests.ConnectTimeout, requests.ConnectionError) as exc:
                if not _nothing_was_sent(exc):
                    raise DarajaOutcomeUnknown(
                        f"Connection lost during {path}: {type(exc).__name__}"
                    ) from exc
                if attempt >= connect_retries:
                    raise DarajaUnavailable(f"Daraja unreachable: {type(exc).__name__}") from exc
                time.sleep(min(0.5 * 2**attempt, 4))
                attempt += 1
            except requests.Timeout as exc:
                raise DarajaOutcomeUnknown(f"Daraja did not answer {path} in time") from exc
            except requests.RequestException as exc:
                raise DarajaOutcomeUnknown(f"Daraja call {path} failed: {type(exc).__name__}") from exc

    # --- M-Pesa Express -------------------------------------------------------------------------
    def stk_push(
        self, *, phone: str, amount: Decimal, account_reference: str, description: str, callback_url: str
    ) -> StkPushAccepted:
        timestamp = daraja_timestamp()
        whole_amount = mpesa_amount(amount)
        payload = {
            "BusinessShortCode": settings.MPESA_SHORTCODE,
            "Password": stk_password(settings.MPESA_SHORTCODE, settings.MPESA_PASSKEY, timestamp),
            "Timestamp": timestamp,
            "TransactionType": settings.MPESA_TRANSACTION_TYPE,
            "Amount": whole_amount,
            "PartyA": phone,
            "PartyB": settings.MPESA_PARTY_B,
            "PhoneNumber": phone,
            "CallBackURL": callback_url,
            "AccountReference": _alphanumeric(account_reference, 12),
            "TransactionDesc": _alphanumeric(description, 13),
        }
        logger.info("STK push to %s for KES %s", mask_msisdn(phone), whole_amount)
        response, body = self._post(STK_PUSH_PATH, payload, connect_retries=2)
        if response.status_code == 200 and isinstance(body, dict) and str(body.get("ResponseCode")) == "0":
            if not body.get("CheckoutRequestID"):
                raise DarajaOutcomeUnknown("STK push accepted without a CheckoutRequestID", body=body)
            return StkPushAccepted(
                merchant_request_id=str(body.get("MerchantRequestID", "")),
                checkout_request_id=str(body["CheckoutRequestID"]),
                response_description=str(body.get("ResponseDescription", "")),
                customer_message=str(body.get("CustomerMessage", "")),
            )
        raise _classify_failure(response, body, what="STK push")

    def stk_query(self, *, checkout_request_id: str) -> StkQueryAnswer:
        timestamp = daraja_timestamp()
        payload = {
            "BusinessShortCode": settings.MPESA_SHORTCODE,
            "Password": stk_password(settings.MPESA_SHORTCODE, settings.MPESA_PASSKEY, timestamp),
            "Timestamp": timestamp,
            "CheckoutRequestID": checkout_request_id,
        }
        response, body = self._post(STK_QUERY_PATH, payload, connect_retries=1)
        if response.status_code == 200 and isinstance(body, dict):
            if "ResultCode" in body and not _still_processing(body):
                return StkQueryAnswer(
                    pending=False,
                    result_code=result_code_str(body["ResultCode"]),
                    result_desc=str(body.get("ResultDesc", ""))[:512],
                    raw=body,
                )
            if str(body.get("ResponseCode", "0")) == "0":
                # Accepted, but no final ResultCode yet.
                return StkQueryAnswer(pending=True, raw=body)
        code, message = _error_of(body, response)
        if code == "500.001.1001" and "process" in message.lower():
            # "The transaction is being processed": the customer has not answered yet.
            return StkQueryAnswer(pending=True, raw=body if isinstance(body, dict) else {})
        raise _classify_failure(response, body, what="STK Query")

    # --- Reversal, B2C, Transaction Status (asynchronous: the outcome comes to ResultURL) -------------
    def reversal(
        self, *, receipt: str, amount: Decimal, remarks: str, result_url: str, timeout_url: str
    ) -> AsyncAccepted:
        """Reverse a whole C2B/STK payment, identified by its M-Pesa receipt (daraja.md §6.3)."""
        payload = {
            "Initiator": settings.MPESA_INITIATOR_NAME,
            "SecurityCredential": security_credential(),
            "CommandID": "TransactionReversal",
            "TransactionID": receipt,
            "Amount": str(mpesa_amount(amount)),
            "ReceiverParty": settings.MPESA_SHORTCODE,
            # Safaricom's spelling; the correct one is refused as Invalid RecieverIdentifierType.
            "RecieverIdentifierType": "11",
            "ResultURL": result_url,
            "QueueTimeOutURL": timeout_url,
            "Remarks": _remarks(remarks),
            "Occasion": "Refund",
        }
        logger.info("Reversal of receipt %s for KES %s", receipt, payload["Amount"])
        return self._async_request(REVERSAL_PATH, payload, what="Reversal")

    def b2c_payment(
        self,
        *,
        originator_conversation_id: str,
        phone: str,
        amount: Decimal,
        remarks: str,
        result_url: str,
        timeout_url: str,
    ) -> AsyncAccepted:
        """Pay a customer from the B2C shortcode; our OriginatorConversationID makes a repeat a duplicate."""
        payload = {
            "OriginatorConversationID": originator_conversation_id,
            "InitiatorName": settings.MPESA_INITIATOR_NAME,
            "SecurityCredential": security_credential(),
            "CommandID": "BusinessPayment",
            "Amount": mpesa_amount(amount),
            "PartyA": settings.MPESA_B2C_SHORTCODE,
            "PartyB": phone,
            "Remarks": _remarks(remarks),
            "QueueTimeOutURL": timeout_url,
            "ResultURL": result_url,
            "Occassion": "Refund",  # sic: B2C spells it with a double s
        }
        logger.info("B2C payment to %s for KES %s", mask_msisdn(phone), payload["Amount"])
        return self._async_request(B2C_PATH, payload, what="B2C payment")

    def transaction_status(
        self,
        *,
        transaction_id: str = "",
        original_conversation_id: str = "",
        result_url: str,
        timeout_url: str,
        remarks: str = "Reconciliation",
    ) -> AsyncAccepted:
        """Ask what became of a transaction, by receipt or by the OriginatorConversationID of its request."""
        if not transaction_id and not original_conversation_id:
            raise ValueError("Transaction Status needs a receipt or an OriginatorConversationID.")
        payload = {
            "Initiator": settings.MPESA_INITIATOR_NAME,
            "SecurityCredential": security_credential(),
            "CommandID": "TransactionStatusQuery",
            "PartyA": settings.MPESA_SHORTCODE,
            "IdentifierType": "4",
            "ResultURL": result_url,
            "QueueTimeOutURL": timeout_url,
            "Remarks": _remarks(remarks),
            "Occasion": "Reconciliation",
        }
        if transaction_id:
            payload["TransactionID"] = transaction_id
        if original_conversation_id:
            payload["OriginalConversationID"] = original_conversation_id
        return self._async_request(TRANSACTION_STATUS_PATH, payload, what="Transaction Status")

    def _async_request(self, path: str, payload: dict, *, what: str) -> AsyncAccepted:
        # Connect failures are retried (nothing was sent); anything after the bytes left is not.
        response, body = self._post(path, payload, connect_retries=2)
        if response.status_code == 200 and isinstance(body, dict) and str(body.get("ResponseCode")) == "0":
            return AsyncAccepted(
                originator_conversation_id=str(body.get("OriginatorConversationID") or "")[:128],
                conversation_id=str(body.get("ConversationID") or "")[:64],
                response_description=str(body.get("ResponseDescription") or "")[:300],
            )
        raise _classify_failure(response, body, what=what)

    # --- Pull Transactions (read-only: safe to ask again) ------------------------------------------------
    def pull_transactions_register(self, *, callback_url: str, nominated_number: str = "") -> dict:
        """Register the shortcode for Pull Transactions (once per shortcode; a repeat answers 1001).

        The shapes come from Safaricom's Postman collection as reproduced by public client libraries; the
        answer's keys contain spaces ("Response Status", "Response Description").
        """
        payload = {
            "ShortCode": settings.MPESA_SHORTCODE,
            "RequestType": "Pull",
            "NominatedNumber": nominated_number or settings.MPESA_PULL_NOMINATED_NUMBER,
            "CallBackURL": callback_url,
        }
        response, body = self._post(PULL_REGISTER_PATH, payload, connect_retries=2)
        if (
            response.status_code == 200
            and isinstance(body, dict)
            and str(body.get("Response Status", "")) in PULL_REGISTERED_CODES
        ):
            logger.info("Pull Transactions registration: %s", body.get("Response Description", ""))
            return body
        if response.status_code == 200 and isinstance(body, dict) and "Response Status" in body:
            raise DarajaRejected(
                f"Pull Transactions registration: {str(body.get('Response Description', ''))[:300]}",
                error_code=str(body["Response Status"]),
                http_status=200,
                body=body,
            )
        raise _classify_failure(response, body, what="Pull Transactions registration")

    def pull_transactions_query(self, *, start: dt.datetime, end: dt.datetime, offset: int = 0) -> dict:
        """One page of the C2B transactions completed in [start, end] (Daraja allows 48 h at most).

        Answers the body as Daraja sent it: ResponseCode "1000" with rows, or "1001" when the period has none
        (payments.daraja.pull.parse_pull_response reads both). `offset` counts rows already received.
        """
        payload = {
            "ShortCode": settings.MPESA_SHORTCODE,
            "StartDate": start.astimezone(NAIROBI).strftime(PULL_DATE_FORMAT),
            "EndDate": end.astimezone(NAIROBI).strftime(PULL_DATE_FORMAT),
            "OffSetValue": str(offset),
        }
        response, body = self._post(PULL_QUERY_PATH, payload, connect_retries=2)
        if (
            response.status_code == 200
            and isinstance(body, dict)
            and str(body.get("ResponseCode", "")) in PULL_ANSWER_CODES
        ):
            return body
        raise _classify_failure(response, body, what="Pull Transactions query")


def _remarks(text: str) -> str:
    # Remarks: 2-100 characters; special characters make requests fail (daraja.md §2, §6.3).
    cleaned = "".join(ch for ch in text if ch.isalnum() or ch in " -.,").strip()[:100]
    return cleaned if len(cleaned) >= 2 else "Refund"


def _still_processing(body: dict) -> bool:
    """A 200 answer that only says the customer has not answered yet.

    daraja.md documents the 500.001.1001 envelope for this; some Daraja deployments have been reported to
    answer 200 with ResultCode 4999 "The transaction is still under processing" instead (not confirmed
    against Safaricom's text), so both mean "ask again later", never "failed".
    """
    desc = str(body.get("ResultDesc", "")).lower()
    return str(body.get("ResultCode")) == "4999" or "under processing" in desc or "being processed" in desc


@contextlib.contextmanager
def _shared_cache_needed(what: str):
    """The token and the rate limit live in the shared cache (Redis in production). With the cache out of
    reach nothing was sent: Daraja is unavailable to us, so a push fails at once and stays retryable
    instead of waiting as `pending` for its deadline."""
    try:
        yield
    except Exception as exc:
        if not outage_kind(exc):
            raise
        raise DarajaUnavailable(f"Shared cache unreachable for {what}: {type(exc).__name__}") from exc


def _nothing_was_sent(exc: Exception) -> bool:
    if isinstance(exc, requests.ConnectTimeout):
        return True
    text = repr(exc)
    return any(
        marker in text
        for marker in ("NewConnectionError", "NameResolutionError", "Connection refused", "Failed to resolve")
    )


def _json_or_none(response: requests.Response):
    try:
        return response.json()
    except ValueError:
        return None


def _error_of(body, response: requests.Response) -> tuple[str, str]:
    if isinstance(body, dict):
        code = str(body.get("errorCode") or body.get("ResponseCode") or "")
        message = str(body.get("errorMessage") or body.get("ResponseDescription") or "")
        return code, message[:300]
    return "", f"HTTP {response.status_code}"


def _classify_failure(response: requests.Response, body, *, what: str) -> Exception:
    code, message = _error_of(body, response)
    text = f"{what}: {message or 'HTTP ' + str(response.status_code)}"
    status = response.status_code
    if code in BUSY_CODES or status == 429:
        return DarajaBusy(text, error_code=code, http_status=status, body=body)
    if status == 200 or 400 <= status < 500:
        # A 200 with ResponseCode != 0, or a 4xx envelope: Daraja refused, nothing was processed.
        return DarajaRejected(text, error_code=code, http_status=status, body=body)
    if code == "500.001.1001":
        # Same code, several meanings (daraja.md §2): merchant, credentials, subscriber locked. All refusals.
        return DarajaRejected(text, error_code=code, http_status=status, body=body)
    return DarajaOutcomeUnknown(text, error_code=code, http_status=status, body=body)


_process_client: tuple[int, DarajaClient] | None = None
_process_client_lock = threading.Lock()


def get_client() -> DarajaClient:
    """The process's one client, so its requests.Session keeps connections to Daraja open between calls.

    Created lazily and again after a fork (gunicorn and qcluster fork workers: a connection pool must never
    be shared across processes). requests.Session is used from several threads here (gunicorn --threads):
    its urllib3 pool is thread-safe and Daraja sets no cookies we would keep.
    """
    global _process_client
    current = _process_client
    if current is None or current[0] != os.getpid():
        with _process_client_lock:
            current = _process_client
            if current is None or current[0] != os.getpid():
                current = (os.getpid(), DarajaClient())
                _process_client = current
    return current[1]
