"""Where a request came from, as far as we can trust it."""

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    """REMOTE_ADDR, or the last X-Forwarded-For hop when we run behind our own proxy (never the client's)."""
    if settings.BEHIND_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return ip_or_none(hops[-1])
    return ip_or_none(request.META.get("REMOTE_ADDR"))


def ip_or_none(value: str | None) -> str | None:
    # Proxies may write "unknown" or "ip:port"; IP columns are inet on PostgreSQL, which refuses them.
    try:
        return str(ipaddress.ip_address(value or ""))
    except ValueError:
        return None
