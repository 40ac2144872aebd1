class ReportError(Exception):
    """A report that cannot be given: bad period or filters (400), or figures the user may not see (403)."""

    def __init__(self, code: str, message: str, *, fields: dict | None = None, http_status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields or {}
        self.http_status = http_status
