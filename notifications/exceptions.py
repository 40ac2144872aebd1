class NotificationError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotificationInFlight(NotificationError):
    """A resend was asked for while the message is still queued or being sent."""


class NotificationPermissionDenied(NotificationError):
    """The person asking may not do this (services check, whatever the admin offers)."""
