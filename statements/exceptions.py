"""What statement import and reconciliation refuse, with a message for the person who asked."""


class StatementError(Exception):
    """Base: the message is shown to staff as it is (admin message, command error, API error)."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class StatementFormatError(StatementError):
    """The file is not an M-PESA statement we can read: unknown format, a required column missing, or a
    row that cannot be read. Nothing of the file is stored."""

    def __init__(self, message: str, *, row: int | None = None, column: str | None = None):
        super().__init__(message)
        self.row = row
        self.column = column


class StatementPermissionDenied(StatementError):
    pass


class ReconciliationError(StatementError):
    """An exception cannot be resolved that way (already resolved, wrong kind, payment does not fit)."""
