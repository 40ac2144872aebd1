"""The request an action comes from, for the records it writes: who is signed in and from which address.

Set by `audit.middleware.AuditContextMiddleware` for the length of a request; empty in scheduled tasks and
commands (their records name no address, and the system as actor unless a service passes one).
"""

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RequestContext:
    user: Any  # request.user, lazy: read only when a record is written
    ip: str | None


_current: ContextVar[RequestContext | None] = ContextVar("audit_request", default=None)


def current() -> RequestContext | None:
    return _current.get()


@contextmanager
def request_context(*, user: Any, ip: str | None):
    token = _current.set(RequestContext(user=user, ip=ip))
    try:
        yield
    finally:
        _current.reset(token)
