class PaymentError(Exception):
    """A request the payment rules refuse; `code` is stable for API clients."""

    code = "payment_error"
    http_status = 400

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details


class PaymentNotFound(PaymentError):
    code = "not_found"
    http_status = 404


class PaymentNotRetryable(PaymentError):
    code = "not_retryable"
    http_status = 409


class AttemptInProgress(PaymentError):
    code = "attempt_in_progress"
    http_status = 409


class RetryTooSoon(PaymentError):
    code = "retry_too_soon"
    http_status = 409


class IllegalTransition(PaymentError):
    code = "illegal_transition"
    http_status = 409


class PaymentInvalid(PaymentError):
    """Input a staff action needs is missing or wrong (a note, a receipt number)."""

    code = "invalid"
    http_status = 400


class ReceiptInUse(PaymentError):
    """An M-Pesa receipt belongs to one payment only."""

    code = "receipt_in_use"
    http_status = 409


class PaymentPermissionDenied(PaymentError):
    code = "forbidden"
    http_status = 403


# --- refunds ---------------------------------------------------------------------------------------
class RefundNotFound(PaymentError):
    code = "not_found"
    http_status = 404


class RefundNotAllowed(PaymentError):
    """The payment cannot be refunded (not paid, not M-Pesa, already refunded, receipt not known yet)."""

    code = "refund_not_allowed"
    http_status = 409


class RefundInProgress(PaymentError):
    code = "refund_in_progress"
    http_status = 409


class RefundInvalid(PaymentError):
    """The amount or reason of a refund request is not acceptable."""

    code = "invalid_refund"
    http_status = 400


class RefundMethodUnavailable(PaymentError):
    """A partial refund needs B2C (MPESA_B2C_SHORTCODE); a Reversal only gives back the whole payment."""

    code = "refund_method_unavailable"
    http_status = 400


class RefundPermissionDenied(PaymentPermissionDenied):
    pass


class RefundsNotConfigured(PaymentError):
    code = "refunds_not_configured"
    http_status = 503
