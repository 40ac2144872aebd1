"""What every channel answers: a SendResult, or one of three errors that tell the sender what to do next.

- TransientSendError: nothing was delivered and trying again later can work (network, 5xx, busy).
- PermanentSendError: trying again cannot work (invalid number, blacklisted, bad sender id); `status`
  says whether the provider rejected it or it failed for another lasting reason.
- OutcomeUnknownError: the request may have reached the provider (read timeout, garbled 2xx answer):
  resending risks a duplicate, so the sender allows at most one resend (faults.md row 34).
"""

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class SendResult:
    provider: str
    message_id: str = ""
    provider_status: str = ""
    cost: Decimal | None = None
    cost_currency: str = ""


class SendError(Exception):
    def __init__(self, message: str, *, provider: str = "", provider_status: str = ""):
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.provider_status = provider_status


class TransientSendError(SendError):
    pass


class PermanentSendError(SendError):
    def __init__(self, message: str, *, status: str = "rejected", **kwargs):
        super().__init__(message, **kwargs)
        self.status = status


class OutcomeUnknownError(SendError):
    pass
