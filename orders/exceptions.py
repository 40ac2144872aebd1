class OrderError(Exception):
    """A request the ordering rules refuse. `fields` maps request paths to what is wrong with them."""

    http_status = 400

    def __init__(
        self, code: str, message: str, *, fields: dict | None = None, http_status: int | None = None
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields or {}
        if http_status:
            self.http_status = http_status
