"""The page a locked-out sign-in gets (django-axes' AXES_LOCKOUT_CALLABLE).

Axes renders AXES_LOCKOUT_TEMPLATE with its own few variables; the page extends the admin's sign-in page,
which needs the admin site's context (title, theme colours, styles), so it is rendered here with both.
"""

import math

from axes.helpers import get_cool_off, get_failure_limit
from django.conf import settings
from django.contrib import admin
from django.shortcuts import render


def lockout_response(request, original_response=None, credentials=None):
    cool_off = get_cool_off(request)
    context = {
        **admin.site.each_context(request),
        "title": "Too many failed sign-ins",
        "failure_limit": get_failure_limit(request, credentials),
        "cooloff_minutes": math.ceil(cool_off.total_seconds() / 60) if cool_off else None,
    }
    return render(request, settings.AXES_LOCKOUT_TEMPLATE, context, status=settings.AXES_HTTP_RESPONSE_CODE)
