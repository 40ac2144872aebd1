"""HTTP edge of the simulator: Daraja's paths, methods, auth and error envelopes."""

import json
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.html import format_html, format_html_join
from django.views.decorators.csrf import csrf_exempt

from . import pull, results, stk, traffic
from .credentials import CERTIFICATE_PATH, DEFAULT_INITIATOR_NAME, bearer_is_valid, oauth_generate
from .ids import epoch_now, request_id
from .outcomes import RESULT_OUTCOMES, STK_OUTCOMES
from .validation import DarajaError

ENDPOINTS = [
    ("GET", "oauth/v1/generate?grant_type=client_credentials", "OAuth token (Basic consumer key:secret)"),
    ("POST", "mpesa/stkpush/v1/processrequest", "M-Pesa Express (STK push); callback to CallBackURL"),
    ("POST", "mpesa/stkpushquery/v1/query", "STK Query"),
    ("POST", "mpesa/reversal/v1/request", "Reversal; Result to ResultURL"),
    ("POST", "mpesa/transactionstatus/v1/query", "Transaction Status; Result to ResultURL"),
    ("POST", "mpesa/b2c/v3/paymentrequest", "B2C (also /mpesa/b2c/v1/paymentrequest); Result to ResultURL"),
    ("POST", "pulltransactions/v1/register", "Pull Transactions: register the shortcode (1000, then 1001)"),
    ("POST", "pulltransactions/v1/query", "Pull Transactions: C2B payments of a window of at most 48 h"),
    (
        "GET",
        "stats?since=<epoch s>&until=<epoch s>&api=<name>",
        "Simulator only: requests per API and second",
    ),
]


def _error(exc: DarajaError) -> JsonResponse:
    return JsonResponse(
        {"requestId": exc.request_id or request_id(), "errorCode": exc.code, "errorMessage": exc.message},
        status=exc.status,
    )


def _only_in_simulator_environment() -> None:
    # backoffice mounts these URLs only for MPESA_ENVIRONMENT=simulator; this is the second lock.
    if settings.MPESA_ENVIRONMENT != "simulator":
        raise Http404("The Daraja simulator is disabled.")


def _json_body(request: HttpRequest) -> dict:
    # A form-encoded body reads as no fields at all, so the first field is reported invalid, as on Daraja
    # ("Bad Request - Invalid BusinessShortCode" for `requests.post(data=...)`, daraja.md §2).
    if request.content_type != "application/json":
        return {}
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        raise DarajaError("400.002.05", "Invalid Request Payload") from None
    if not isinstance(body, dict):
        raise DarajaError("400.002.05", "Invalid Request Payload")
    return body


def daraja_api(
    api: str, handler: Callable[[dict], dict], *, latency: Callable[[], float] | None = None
) -> Callable[[HttpRequest], HttpResponse]:
    """POST-only, Bearer-authenticated JSON endpoint answering Daraja's envelopes; counted (and limited) as
    `api`, answering `latency()` seconds late."""

    @csrf_exempt
    @wraps(handler)
    def view(request: HttpRequest) -> HttpResponse:
        _only_in_simulator_environment()
        try:
            traffic.admit(api)
            if request.method != "POST":
                raise DarajaError("405.001", "Method Not Allowed")
            if not bearer_is_valid(request.headers.get("Authorization", "")):
                traffic.record_invalid_token(api)
                raise DarajaError("404.001.03", "Invalid Access Token")
            if latency is not None:
                traffic.delay(latency())
            return JsonResponse(handler(_json_body(request)))
        except DarajaError as exc:
            return _error(exc)

    return view


@csrf_exempt
def oauth(request: HttpRequest) -> HttpResponse:
    _only_in_simulator_environment()
    traffic.admit("oauth", limited=False)
    try:
        if request.method != "GET":
            raise DarajaError("405.001", "Method Not Allowed")
        token = oauth_generate(
            authorization=request.headers.get("Authorization", ""),
            grant_type=request.GET.get("grant_type"),
        )
    except DarajaError as exc:
        return _error(exc)
    return JsonResponse(token)


stk_push = daraja_api("stk_push", stk.push)
stk_query = daraja_api("stk_query", stk.query, latency=traffic.query_latency)
reversal = daraja_api("reversal", results.reversal, latency=traffic.refund_latency)
transaction_status = daraja_api("transaction_status", results.transaction_status)
b2c_v3 = daraja_api("b2c", lambda body: results.b2c(body, version=3), latency=traffic.refund_latency)
b2c_v1 = daraja_api("b2c", lambda body: results.b2c(body, version=1), latency=traffic.refund_latency)
pull_register = daraja_api("pull_register", pull.register)
pull_query = daraja_api("pull_query", pull.query)


def stats(request: HttpRequest) -> HttpResponse:
    """Not a Daraja path: what arrived per API and second, for load tests (payments/simulator/README.md)."""
    _only_in_simulator_environment()
    now = int(epoch_now())
    try:
        until = int(request.GET.get("until", now))
        since = int(request.GET.get("since", until - 3600))
    except ValueError:
        return JsonResponse({"error": "since and until are whole epoch seconds"}, status=400)
    apis = request.GET.getlist("api") or list(traffic.APIS)
    if not 0 <= until - since < traffic.STATS_MAX_SECONDS or set(apis) - set(traffic.APIS):
        return JsonResponse(
            {
                "error": f"at most {traffic.STATS_MAX_SECONDS} s from since to until; "
                f"api one of {', '.join(traffic.APIS)}"
            },
            status=400,
        )
    return JsonResponse(traffic.stats(since=since, until=until, apis=apis))


@csrf_exempt
def not_found(request: HttpRequest, *args, **kwargs) -> HttpResponse:
    _only_in_simulator_environment()
    return _error(DarajaError("404.001.01", "Resource not found"))


def index(request: HttpRequest) -> HttpResponse:
    _only_in_simulator_environment()
    base = request.build_absolute_uri().split("?")[0].rstrip("/")
    endpoints = format_html_join(
        "",
        "<tr><td>{}</td><td><code>{}/{}</code></td><td>{}</td></tr>",
        ((method, base, path, what) for method, path, what in ENDPOINTS),
    )
    stk_rows = format_html_join(
        "",
        "<tr><td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
        (
            (
                phone,
                outcome.label,
                outcome.push_error[0] if outcome.push_error else outcome.result_code,
                outcome.push_error[1] if outcome.push_error else outcome.result_desc,
            )
            for phone, outcome in STK_OUTCOMES.items()
        ),
    )
    result_rows = format_html_join(
        "",
        "<tr><td><code>{}</code></td><td>{}</td></tr>",
        ((phone, outcome.label) for phone, outcome in RESULT_OUTCOMES.items()),
    )
    html = format_html(
        """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Daraja simulator</title></head>
<body><h1>Local Daraja simulator</h1>
<p>Speaks Safaricom's Daraja protocol; enabled only with MPESA_ENVIRONMENT=simulator.
Credentials: MPESA_CONSUMER_KEY / MPESA_CONSUMER_SECRET, shortcode {shortcode},
initiator <code>{initiator}</code>.
SecurityCredential certificate: <code>{cert}</code> (test key pair).</p>
<h2>Endpoints</h2><table border="1"><tr><th>Method</th><th>URL</th><th>What</th></tr>{endpoints}</table>
<h2>STK push outcomes (by PartyA; any other number succeeds)</h2>
<table border="1"><tr><th>PartyA</th><th>Outcome</th><th>Code</th><th>Description</th></tr>{stk_rows}</table>
<h2>Reversal (by the original payer) and B2C (by PartyB) outcomes; any other number succeeds</h2>
<table border="1"><tr><th>Number</th><th>Outcome</th></tr>{result_rows}</table>
<p>See payments/simulator/README.md for the full rules.</p></body></html>""",
        shortcode=settings.MPESA_SHORTCODE,
        initiator=getattr(settings, "MPESA_INITIATOR_NAME", DEFAULT_INITIATOR_NAME),
        cert=f"payments/simulator/certs/{CERTIFICATE_PATH.name}",
        endpoints=endpoints,
        stk_rows=stk_rows,
        result_rows=result_rows,
    )
    return HttpResponse(html)
