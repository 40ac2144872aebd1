"""Mounts only the simulator, where backoffice mounts it, so these tests need nothing else of the project."""

from django.urls import include, path

urlpatterns = [path("simulator/daraja/", include("payments.simulator.urls"))]
