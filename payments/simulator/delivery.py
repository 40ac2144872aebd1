"""Posting callbacks and results from a background thread, after the configured delay.

Bodies are built completely before the thread starts, so the thread needs nothing but the network: no
database connection, no cache. A worker that dies with a pending delivery loses it, much as Daraja's
sandbox sometimes drops callbacks.
"""

import logging
import threading
import time
from urllib.parse import urlsplit

import requests
from django.conf import settings

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
ATTEMPTS = 3
RETRY_PAUSE = 1.0


def callback_delay() -> float:
    return max(0.0, float(getattr(settings, "SIMULATOR_CALLBACK_DELAY", 3.0)))


def _where(url: str) -> str:
    # The path carries the application's secret callback token: log the host only.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/..."


def _post(url: str, body: dict) -> None:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            response = requests.post(url, json=body, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
        except requests.ConnectionError as exc:
            logger.warning(
                "simulator delivery to %s failed (attempt %s/%s): %s", _where(url), attempt, ATTEMPTS, exc
            )
            if attempt < ATTEMPTS:
                time.sleep(RETRY_PAUSE * attempt)
            continue
        except requests.RequestException as exc:
            # A read timeout may mean the body arrived: like Daraja, do not resend.
            logger.warning("simulator delivery to %s gave up: %s", _where(url), exc)
            return
        logger.info("simulator delivered to %s: HTTP %s", _where(url), response.status_code)
        return


def _run(delay: float, url: str, body: dict, copies: int) -> None:
    time.sleep(delay)
    for _ in range(copies):
        _post(url, body)


def schedule(url: str, body: dict, *, delay: float, copies: int = 1) -> threading.Thread | None:
    """POST `body` as JSON to `url` `copies` times, `delay` seconds from now, off the request thread."""
    if copies < 1:
        return None
    thread = threading.Thread(
        target=_run, args=(delay, url, body, copies), name="daraja-simulator-delivery", daemon=True
    )
    thread.start()
    return thread
