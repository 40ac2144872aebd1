from django.urls import path

from payments import views

app_name = "payments"

# No word Safaricom rejects in callback URLs (mpesa, safaricom, query, ...): see daraja.md §8.
urlpatterns = [
    path("hooks/daraja/stk/<str:token>/", views.stk_callback, name="stk-callback"),
]
