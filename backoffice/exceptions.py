"""What the API token services refuse; the API and the commands turn these into answers."""


class ApiTokenError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ApiTokenInvalid(ApiTokenError):
    """A token cannot be issued as asked (unknown scope, no scope, an expiry in the past)."""


class ApiTokenRefused(ApiTokenError):
    """Unknown, revoked, or of an inactive user. Deliberately says no more than that."""


class ApiTokenExpired(ApiTokenError):
    """Known and otherwise valid, but past its expiry: worth telling the integrator."""


class ApiTokenScopeMissing(ApiTokenError):
    def __init__(self, message: str, *, scope: str | None):
        super().__init__(message)
        self.scope = scope


class ApiTokenPermissionDenied(ApiTokenError):
    pass
