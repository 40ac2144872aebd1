"""503 Service Unavailable, at once, while the database or Redis cannot be reached.

A PostgreSQL restart or failover, or a Redis restart (cache and task broker), makes requests raise
connection errors for a few seconds. They are not bugs and retrying soon will work, so the answer is 503
with Retry-After instead of a 500: JSON `{"error": {...}}` under /api/ and /hooks/ (Daraja retries a
callback that did not get a 2xx, and API clients read the error body), a short page elsewhere.

Each process logs an outage once per LOG_INTERVAL seconds (with the number of 503s since the last line),
not once per request. Only connection-level errors count: an IntegrityError or a ProgrammingError is a
bug and stays a 500.

Where the error surfaces decides how it is recognised:
- raised by a view (most of them): process_exception sees it;
- wrapped by something that keeps no link to it (django-ninja's response validation evaluates a lazy
  queryset and reports "Error extracting attribute: OperationalError"): the request's database connection
  is broken, which `database_unreachable` asks;
- raised inside a later middleware, where no process_exception runs: Django answers 500 and sends
  got_request_exception, whose receiver here marks the request; or the session middleware turns a failed
  save into a 400 ("session interrupted"). Either answer is replaced on its way out, when it was the outage.
"""

import logging
import sys
import threading
import time

from django.core.signals import got_request_exception
from django.db import InterfaceError, OperationalError, connections
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
LOG_INTERVAL = 60.0
JSON_PREFIXES = ("/api/", "/hooks/")
_MARK = "_service_unavailable_error"
_PAGE = (
    "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Temporarily unavailable</title>"
    "</head><body><h1>Temporarily unavailable</h1><p>The back office cannot reach its database or cache "
    "right now. Please try again in a few seconds.</p></body></html>"
)


def _redis_connection_errors() -> tuple[type[BaseException], ...]:
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:  # pragma: no cover - redis is a dependency, but only REDIS_URL makes it used
        return ()
    return (RedisConnectionError, RedisTimeoutError)


def outage_kind(exc: BaseException | None) -> str:
    """The kind of outage `exc` (or what it was raised from) shows: "database", "redis", or "" for none."""
    redis_errors = _redis_connection_errors()
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, OperationalError | InterfaceError):
            return "database"
        if redis_errors and isinstance(exc, redis_errors):
            return "redis"
        exc, seen = exc.__cause__, seen + 1
    return ""


def database_unreachable() -> bool:
    """A database connection this thread used has failed and cannot run a query now. Asked only of
    connections that saw an error: no query is made on the happy path."""
    return any(
        connection.errors_occurred and not connection.is_usable()
        for connection in connections.all(initialized_only=True)
    )


class _OutageLog:
    """One log line per kind of outage per LOG_INTERVAL in this process; the rest are counted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def record(self, kind: str, exc: BaseException | None, path: str) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < LOG_INTERVAL:
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return
            self._last[kind] = now
            suppressed = self._suppressed.pop(kind, 0)
        logger.error(
            "%s unavailable (%s: %s) on %s; answering 503 until it is back (%s more 503s in the last %.0f s)",
            "Database" if kind == "database" else "Redis",
            type(exc).__name__ if exc is not None else "connection broken",
            _first_line(exc),
            path,
            suppressed,
            LOG_INTERVAL,
        )


def _first_line(exc: BaseException | None) -> str:
    text = str(exc or "").strip()
    return text.splitlines()[0][:200] if text else ""


outage_log = _OutageLog()


def unavailable_response(request: HttpRequest, exc: BaseException | None, kind: str) -> HttpResponse:
    outage_log.record(kind, exc, request.path_info)
    message = "The service is temporarily unavailable; try again in a few seconds."
    if request.path_info.startswith(JSON_PREFIXES):
        response = JsonResponse(
            {"error": {"code": "unavailable", "message": message, "fields": {}}}, status=503
        )
    else:
        response = HttpResponse(_PAGE, status=503, content_type="text/html; charset=utf-8")
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    # Logged above, once per outage; Django would log every 503 as an error line of its own.
    response._has_been_logged = True
    return response


def _mark_request(sender, request=None, **kwargs) -> None:
    """got_request_exception receiver: runs inside Django's handler of an uncaught exception."""
    exc = sys.exc_info()[1]
    if request is not None and outage_kind(exc):
        setattr(request, _MARK, exc)


class ServiceUnavailableMiddleware:
    """Place it outside every middleware that may touch the database or the cache (right after
    SecurityMiddleware and WhiteNoise), so it also sees what they raise."""

    def __init__(self, get_response):
        self.get_response = get_response
        got_request_exception.connect(_mark_request, dispatch_uid="common.outage")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code not in (400, 500):
            return response
        exc = getattr(request, _MARK, None)
        if exc is not None and response.status_code == 500:
            return unavailable_response(request, exc, outage_kind(exc))
        if database_unreachable():
            return unavailable_response(request, exc, "database")
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        kind = outage_kind(exception) or ("database" if database_unreachable() else "")
        if not kind:
            return None
        # Django saves no session on a 5xx, but SessionMiddleware still loads it on the way out (to read its
        # expiry), which fails again and turns this answer into a logged 500. Without a session on the
        # request it leaves the answer alone.
        if hasattr(request, "session"):
            del request.session
        return unavailable_response(request, exception, kind)
