from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from backoffice.api import api
from payments import views as payment_views

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    # The original service's callback path, kept for compatibility (before the API so ninja doesn't claim it).
    path("api/v1/payments/mpesa/callback", payment_views.stk_callback_legacy, name="stk-callback-legacy"),
    path("api/v1/", api.urls),
    path("", include("payments.urls")),
    path("", include("notifications.urls")),
    path("reports/", include("reports.urls")),
    path("anymail/", include("anymail.urls")),
]

if settings.MPESA_ENVIRONMENT == "simulator":
    urlpatterns += [path("simulator/daraja/", include("payments.simulator.urls"))]
