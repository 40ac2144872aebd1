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
