from django.urls import path

from payments import views

app_name = "payments"

# No word Safaricom rejects in callback URLs (mpesa, safaricom, query, ...): see daraja.md §8.
urlpatterns = [
    path("hooks/daraja/stk/<str:token>/", views.stk_callback, name="stk-callback"),
    path("hooks/daraja/result/<str:token>/", views.daraja_result, name="daraja-result"),
    path("hooks/daraja/timeout/<str:token>/", views.daraja_queue_timeout, name="daraja-queue-timeout"),
]
