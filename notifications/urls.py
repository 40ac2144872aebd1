from django.urls import path

from notifications import views

app_name = "notifications"

urlpatterns = [
    path("hooks/sms/delivery/<str:token>/", views.sms_delivery_report, name="sms-delivery-report"),
]
