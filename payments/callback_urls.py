"""The URLs we hand to Daraja: a secret path token, and none of the words Safaricom rejects in URLs."""

from django.conf import settings
from django.urls import reverse
from django.utils.crypto import constant_time_compare, salted_hmac

FORBIDDEN_URL_WORDS = ("m-pesa", "mpesa", "safaricom", "exe", "exec", "cmd", "sql", "query")


def callback_token() -> str:
    return (
        settings.MPESA_CALLBACK_TOKEN
        or salted_hmac("payments.callback-url", "daraja", algorithm="sha256").hexdigest()[:40]
    )


def token_matches(candidate: str) -> bool:
    return constant_time_compare(candidate or "", callback_token())


def _absolute(route_name: str) -> str:
    return settings.MPESA_CALLBACK_BASE_URL + reverse(route_name, kwargs={"token": callback_token()})


def stk_callback_url() -> str:
    return _absolute("payments:stk-callback")


def _result_absolute(route_name: str) -> str:
    base = settings.MPESA_RESULT_BASE_URL or settings.MPESA_CALLBACK_BASE_URL
    return base.rstrip("/") + reverse(route_name, kwargs={"token": callback_token()})


def result_url() -> str:
    """ResultURL of Reversal, B2C and Transaction Status requests."""
    return _result_absolute("payments:daraja-result")


def queue_timeout_url() -> str:
    """QueueTimeOutURL of Reversal, B2C and Transaction Status requests."""
    return _result_absolute("payments:daraja-queue-timeout")


def forbidden_words_in(url: str) -> list[str]:
    lowered = url.lower()
    return [word for word in FORBIDDEN_URL_WORDS if word in lowered]
