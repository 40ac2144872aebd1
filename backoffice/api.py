"""The storefront JSON API: `/api/v1`, per-user bearer tokens, errors as {"error": {code, message, fields}}.

Every router is mounted below with the one token scope its endpoints need (ApiScope); an endpoint that is
public says `auth=None` itself. An endpoint mounted without a scope refuses every token (fail closed), and
tests/api/test_tokens.py walks the routes to find it.
"""

from django.http import Http404
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.openapi.schema import OpenAPISchema
from ninja.security import HttpBearer

from backoffice.exceptions import ApiTokenExpired, ApiTokenRefused, ApiTokenScopeMissing
from backoffice.models import ApiScope
from backoffice.services import api_token_authenticate
from common.phone import InvalidPhoneNumber
from orders.api import router as orders_router
from orders.exceptions import OrderError
from payments.api import refunds_router
from payments.api import router as payments_router
from payments.exceptions import PaymentError
from reports.api import router as reports_router
from reports.exceptions import ReportError


class ApiTokenAuth(HttpBearer):
    """A bearer token that is known, unrevoked, unexpired, of an active user, and holds `scope`."""

    def __init__(self, scope: ApiScope | None):
        self.scope = scope
        super().__init__()

    def __call__(self, request):
        # HttpBearer's own __call__ logs the whole header (a token) when DEBUG is on and the scheme is not
        # Bearer: a credential must never reach a log.
        scheme, _, token = (request.headers.get(self.header) or "").partition(" ")
        if scheme.lower() != self.openapi_scheme:
            return None
        return self.authenticate(request, token.strip())

    def authenticate(self, request, token: str):
        try:
            return api_token_authenticate(raw_token=token, scope=self.scope)
        except ApiTokenRefused:
            return None  # ninja answers AuthenticationError: the same 401 as no token at all


class ScopedOpenAPISchema(OpenAPISchema):
    """The scope each endpoint needs, in /api/v1/docs and the OpenAPI document.

    OpenAPI 3.1 lets a non-OAuth security requirement list the roles it needs: `{"ApiTokenAuth": ["orders"]}`.
    """

    def operation_security(self, operation):
        requirements = super().operation_security(operation)
        for auth, requirement in zip(operation.auth_callbacks, requirements or [], strict=False):
            if isinstance(auth, ApiTokenAuth) and auth.scope:
                requirement[type(auth).__name__].append(str(auth.scope))
        return requirements

    def operation_details(self, operation):
        details = super().operation_details(operation)
        scopes = [str(auth.scope) for auth in operation.auth_callbacks if getattr(auth, "scope", None)]
        if scopes:
            needs = f"Needs an API token with the `{'`, `'.join(scopes)}` scope."
            details["description"] = (
                f"{details['description']}\n\n{needs}" if "description" in details else needs
            )
        return details


class BackOfficeAPI(NinjaAPI):
    def get_openapi_schema(self, *, path_prefix=None, path_params=None):
        if path_prefix is None:
            path_prefix = self.get_root_path(path_params or {})
        return ScopedOpenAPISchema(self, path_prefix)


api = BackOfficeAPI(
    title="M-Pesa Back Office API",
    version="1",
    description="Storefront API: catalogue, orders, M-Pesa payments. Compatible with the original Node service.",
    auth=ApiTokenAuth(scope=None),  # only for a router mounted without its scope: it refuses every token
    urls_namespace="api",
    docs_url="/docs",
)
# One mount per router, with the scope its endpoints need. A path belongs to one router (Django resolves
# it to the first): split routers by path, never one path's methods across two scopes.
api.add_router("/", orders_router, auth=ApiTokenAuth(ApiScope.ORDERS))
api.add_router("/payments", payments_router, auth=ApiTokenAuth(ApiScope.ORDERS))
api.add_router("/payments", refunds_router, auth=ApiTokenAuth(ApiScope.REFUNDS))
api.add_router("/reports", reports_router, auth=ApiTokenAuth(ApiScope.REPORTS))


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


def unauthorized(request, message: str):
    response = error_response(request, 401, "unauthorized", message)
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(AuthenticationError)
def on_auth_error(request, exc):
    return unauthorized(request, "A valid API token is required (Authorization: Bearer).")


@api.exception_handler(ApiTokenExpired)
def on_token_expired(request, exc: ApiTokenExpired):
    return unauthorized(request, exc.message)


@api.exception_handler(ApiTokenScopeMissing)
def on_scope_missing(request, exc: ApiTokenScopeMissing):
    response = error_response(request, 403, "forbidden", exc.message, required_scope=exc.scope)
    if exc.scope:
        # RFC 6750 section 3.1: the token is fine, it lacks a scope.
        response["WWW-Authenticate"] = f'Bearer error="insufficient_scope", scope="{exc.scope}"'
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


@api.exception_handler(ReportError)
def on_report_error(request, exc: ReportError):
    return error_response(request, exc.http_status, exc.code, exc.message, exc.fields)


@api.exception_handler(InvalidPhoneNumber)
def on_invalid_phone(request, exc):
    return error_response(request, 400, "invalid_phone", str(exc), {"phone": str(exc)})
