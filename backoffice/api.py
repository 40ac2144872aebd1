"""The storefront JSON API: `/api/v1`, per-user bearer tokens, errors as {"error": {code, message, fields}}."""

import datetime as dt

from django.http import Http404
from django.utils import timezone
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import HttpBearer

from backoffice.models import ApiToken, hash_token
from common.phone import InvalidPhoneNumber
from orders.api import router as orders_router
from orders.exceptions import OrderError
from payments.api import router as payments_router
from payments.exceptions import PaymentError

LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


class ApiTokenAuth(HttpBearer):
    def authenticate(self, request, token: str):
        if not token or len(token) > 200:
            return None
        api_token = (
            ApiToken.objects.select_related("user")
            .filter(key_hash=hash_token(token), revoked_at__isnull=True, user__is_active=True)
            .first()
        )
        if api_token is None:
            return None
        now = timezone.now()
        if not api_token.last_used_at or now - api_token.last_used_at > LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=api_token.pk).update(last_used_at=now)
        return api_token.user


api = NinjaAPI(
    title="M-Pesa Back Office API",
    version="1",
    description="Storefront API: catalogue, orders, M-Pesa payments. Compatible with the original Node service.",
    auth=ApiTokenAuth(),
    urls_namespace="api",
    docs_url="/docs",
)
api.add_router("/", orders_router)
api.add_router("/payments", payments_router)


def error_response(request, status: int, code: str, message: str, fields: dict | None = None, **extra):
    body = {"error": {"code": code, "message": message, "fields": fields or {}, **extra}}
    return api.create_response(request, body, status=status)


def _field_path(loc) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    path = ""
    for part in parts:
        if part.isdigit():
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path or "body"


@api.exception_handler(ValidationError)
def on_validation_error(request, exc: ValidationError):
    fields = {}
    for error in exc.errors:
        fields.setdefault(_field_path(error.get("loc", ())), error.get("msg", "Invalid value."))
    return error_response(request, 400, "validation_error", "The request is not valid.", fields)


@api.exception_handler(AuthenticationError)
def on_auth_error(request, exc):
    response = error_response(
        request, 401, "unauthorized", "A valid API token is required (Authorization: Bearer)."
    )
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(Http404)
def on_not_found(request, exc):
    return error_response(request, 404, "not_found", "Not found.")


@api.exception_handler(HttpError)
def on_http_error(request, exc: HttpError):
    return error_response(request, exc.status_code, "http_error", str(exc))


@api.exception_handler(OrderError)
def on_order_error(request, exc: OrderError):
    return error_response(request, exc.http_status, exc.code, exc.message, exc.fields)


@api.exception_handler(PaymentError)
def on_payment_error(request, exc: PaymentError):
    response = error_response(request, exc.http_status, exc.code, exc.message, {}, **exc.details)
    if "retry_after" in exc.details:
        response["Retry-After"] = str(exc.details["retry_after"])
    return response


@api.exception_handler(InvalidPhoneNumber)
def on_invalid_phone(request, exc):
    return error_response(request, 400, "invalid_phone", str(exc), {"phone": str(exc)})
