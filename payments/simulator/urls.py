"""Daraja's own paths, mounted by backoffice at simulator/daraja/ when MPESA_ENVIRONMENT=simulator."""

from django.urls import path, re_path

from . import views

app_name = "simulator"

urlpatterns = [
    path("", views.index, name="index"),
    path("oauth/v1/generate", views.oauth, name="oauth"),
    path("mpesa/stkpush/v1/processrequest", views.stk_push, name="stk_push"),
    path("mpesa/stkpushquery/v1/query", views.stk_query, name="stk_query"),
    path("mpesa/reversal/v1/request", views.reversal, name="reversal"),
    path("mpesa/transactionstatus/v1/query", views.transaction_status, name="transaction_status"),
    path("mpesa/b2c/v3/paymentrequest", views.b2c_v3, name="b2c"),
    path("mpesa/b2c/v1/paymentrequest", views.b2c_v1, name="b2c_v1"),
    path("pulltransactions/v1/register", views.pull_register, name="pull_register"),
    path("pulltransactions/v1/query", views.pull_query, name="pull_query"),
    path("stats", views.stats, name="stats"),
    # Anything else under the mount answers like Daraja does for an unknown path.
    re_path(r"^.+$", views.not_found, name="not_found"),
]
