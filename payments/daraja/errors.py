"""What can go wrong talking to Daraja, split by what it means for money.

DarajaRejected: Daraja answered and refused; nothing happened, the request may be fixed and retried.
DarajaOutcomeUnknown: the request may have reached Safaricom (read timeout, 5xx); never resend blindly.
DarajaUnavailable: nothing was sent (connection refused, DNS, connect timeout); safe to retry.
"""


class DarajaError(Exception):
    def __init__(self, message: str, *, error_code: str = "", http_status: int | None = None, body=None):
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.http_status = http_status
        self.body = body


class DarajaRejected(DarajaError):
    pass


class DarajaAuthError(DarajaRejected):
    """OAuth failed or the token was refused twice."""


class DarajaOutcomeUnknown(DarajaError):
    pass


class DarajaUnavailable(DarajaError):
    pass


class DarajaBusy(DarajaRejected):
    """System busy, Spike Arrest or Quota Violation: nothing processed, ask again later."""
