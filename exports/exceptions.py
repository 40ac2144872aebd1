class ExportError(Exception):
    """An export the rules refuse, with a message for the person who asked."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ExportNotAllowed(ExportError):
    """The person may not export this list (no permission to export, or to see the list)."""


class ExportUnavailable(ExportError):
    """No such export for this person, or its file is not (or no longer) there to download."""
