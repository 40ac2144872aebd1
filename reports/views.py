"""Staff-only report downloads: the report of a chosen period (HTML, CSV, XLSX) from the dashboard, and the
attachments a report email kept because they were too large to send.

GET (and HEAD) only, and they only read: a file is built or served, nothing changes. Signed-out visitors
are sent to the admin login; signed-in users without the figures permission get 403.
"""

import base64
import functools
import tempfile

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_safe

from reports import exports
from reports.chart import daily_chart_png
from reports.models import ReportFile
from reports.periods import PeriodError, period_between
from reports.permissions import can_see_figures
from reports.report_email import file_stem, render_report, report_figures, xlsx_summary_sheet

DOWNLOAD_FORMATS = ("html", "csv", "xlsx")


def figures_required(view):
    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        if not can_see_figures(request.user):
            raise PermissionDenied("Reports are for staff who may view payments.")
        response = view(request, *args, **kwargs)
        add_never_cache_headers(response)  # figures and customer rows: never in a shared cache
        return response

    return wrapped


@require_safe
@figures_required
def report_download(request):
    """`?from=YYYY-MM-DD&to=YYYY-MM-DD&format=html|csv|xlsx` (Nairobi dates, inclusive)."""
    file_format = request.GET.get("format", "html")
    if file_format not in DOWNLOAD_FORMATS:
        return HttpResponseBadRequest(f"format: use one of {', '.join(DOWNLOAD_FORMATS)}.")
    try:
        period = period_between(request.GET.get("from", ""), request.GET.get("to", ""))
    except PeriodError as exc:
        return HttpResponseBadRequest(str(exc))
    filename = f"{file_stem(period)}.{file_format}"
    if file_format == "csv":
        response = StreamingHttpResponse(exports.csv_lines(period), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
    figures = report_figures(period)
    if file_format == "xlsx":
        # FileResponse closes it when the response is sent; a TemporaryFile is deleted on close.
        file = tempfile.TemporaryFile(prefix="report-")  # noqa: SIM115
        exports.write_xlsx(file, xlsx_summary_sheet(figures), period)
        file.seek(0)
        return FileResponse(
            file,
            as_attachment=True,
            filename=filename,
            content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        )
    chart = base64.b64encode(daily_chart_png(figures.summary)).decode("ascii")
    html, _text = render_report(figures, chart_src=f"data:image/png;base64,{chart}", for_email=False)
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_safe
@figures_required
def report_file_download(request, pk: int):
    """A stored report attachment (too large for email)."""
    stored = get_object_or_404(ReportFile, pk=pk)
    return FileResponse(
        stored.file.open("rb"), as_attachment=True, filename=stored.name, content_type=stored.content_type
    )
