from django.urls import path

from reports import views

app_name = "reports"

urlpatterns = [
    path("download/", views.report_download, name="download"),
    path("files/<int:pk>/", views.report_file_download, name="file-download"),
]
