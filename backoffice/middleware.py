"""Every error under /api/ is the API's JSON error body, including the ones Django answers itself.

django-ninja shapes the errors of its endpoints (backoffice.api.error_response). Django answers some
before or around them, in HTML: a body over DATA_UPLOAD_MAX_MEMORY_SIZE, a bad Host header (400), a path
no route matches (404), a method an endpoint does not take (405, from ninja's router), an uncaught
exception (500). This middleware gives those the same body, `{"error": {"code", "message", "fields"}}`.

- A declared body over DATA_UPLOAD_MAX_MEMORY_SIZE is answered 413 before anything reads it.
- A non-JSON error response becomes the JSON body with the same status and headers (Allow, ...).
  JSON responses pass untouched: they are the API's own, or a Daraja endpoint's.
- With DEBUG on, a 500 keeps Django's traceback page: that is what DEBUG is for.
- The original Daraja callback path (`/api/v1/payments/mpesa/callback`) keeps its own body cap
  (MPESA_CALLBACK_MAX_BYTES) and its Daraja-shaped answers: its view reads the body itself.
"""

from http import HTTPStatus

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import NoReverseMatch, reverse

API_PREFIX = "/api/"
# Error codes the API already uses for these statuses (backoffice.api, payments.views).
ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    500: "server_error",
    503: "unavailable",
}
MESSAGES = {
    400: "The request could not be understood.",
    404: "Not found.",
    500: "Something went wrong on our side; the error has been logged.",
}
# The original response's headers are kept (Allow, WWW-Authenticate, Retry-After...), except these.
_DROPPED_HEADERS = {"content-type", "content-length"}


def api_error(status: int, message: str, *, code: str = "") -> JsonResponse:
    """The body of backoffice.api.error_response, for answers given outside django-ninja."""
    code = code or ERROR_CODES.get(status) or ("server_error" if status >= 500 else "http_error")
    return JsonResponse({"error": {"code": code, "message": message, "fields": {}}}, status=status)


class ApiJsonErrorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith(API_PREFIX) or request.path in _own_body_handling_paths():
            return self.get_response(request)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and _declared_length(request) > limit:
            return api_error(413, f"The request body is larger than the {limit} bytes allowed.")
        response = self.get_response(request)
        if response.status_code < 400 or _is_json(response):
            return response
        if response.status_code >= 500 and settings.DEBUG:
            return response
        return _as_json(response)


def _own_body_handling_paths() -> set[str]:
    try:
        return {reverse("stk-callback-legacy")}
    except NoReverseMatch:
        return set()


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0  # Django reads such a body as empty


def _is_json(response: HttpResponse) -> bool:
    return "json" in response.get("Content-Type", "")


def _as_json(original: HttpResponse) -> JsonResponse:
    status = original.status_code
    if status == 405 and original.get("Allow"):
        message = f"Method not allowed; this path takes {original['Allow']}."
    else:
        message = MESSAGES.get(status) or _phrase(status)
    response = api_error(status, message)
    for name, value in original.items():
        if name.lower() not in _DROPPED_HEADERS:
            response[name] = value
    response.cookies = original.cookies
    # Django logs each error response once; the original was logged already, or will be through this one.
    if getattr(original, "_has_been_logged", False):
        response._has_been_logged = True
    return response


def _phrase(status: int) -> str:
    try:
        return f"{HTTPStatus(status).phrase}."
    except ValueError:
        return "The request failed."
