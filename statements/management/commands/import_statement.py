"""`manage.py import_statement PATH [--shortcode N] [--json]`: import an M-PESA portal statement (CSV or
XLSX) as the server operator, then reconcile it."""

import json
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError

from statements.exceptions import StatementError
from statements.imports import statement_import
from statements.models import ImportSource, LineKind, StatementImport


class Command(BaseCommand):
    help = (
        "Import an M-PESA statement exported from the organisation portal (CSV or XLSX): store the lines "
        "not already known, then reconcile its period. A file that cannot be read stores nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="The statement file (.csv or .xlsx).")
        parser.add_argument(
            "--shortcode",
            help="The shortcode the statement is for (default: the one the file names, else MPESA_SHORTCODE); "
            "a file naming another is refused.",
        )
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="Print the result as one JSON object."
        )

    def handle(self, *args, path, shortcode=None, as_json=False, **options):
        try:
            with open(path, "rb") as fileobj:
                imported = statement_import(
                    fileobj=fileobj,
                    file_name=path,
                    actor=None,
                    shortcode=shortcode,
                    source=ImportSource.COMMAND,
                    reconcile=True,
                )
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror or exc}.") from None
        except StatementError as exc:
            raise CommandError(exc.message) from None
        result = import_result(imported)
        if as_json:
            self.stdout.write(_dumps(result))
        else:
            self.stdout.write("\n".join(_human(result)))


def import_result(imported: StatementImport) -> dict:
    """What the command prints: the import, its lines per kind and the reconciliation's totals."""
    run = getattr(imported, "reconciliation_run", None)
    kinds = imported.summary.get("kinds", {})
    return {
        "import": imported.pk,
        "file": imported.file_name,
        "file_format": imported.file_format,
        "shortcode": imported.shortcode,
        "account_name": imported.account_name,
        "period_start": imported.period_start.isoformat() if imported.period_start else None,
        "period_end": imported.period_end.isoformat() if imported.period_end else None,
        "lines_read": imported.lines_read,
        "lines_new": imported.lines_new,
        "lines_known": imported.lines_known,
        "kinds": {
            str(kind): kinds.get(kind, {"lines": 0, "paid_in": "0.00", "withdrawn": "0.00"})
            for kind in LineKind
        },
        "reconciliation": None if run is None else {"run": run.pk, "totals": _money_as_text(run.totals)},
    }


def _money_as_text(value):
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, dict):
        return {key: _money_as_text(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_money_as_text(item) for item in value]
    return value


def _dumps(result: dict) -> str:
    return json.dumps(result, indent=2, ensure_ascii=False)


def _flat(totals: dict, prefix: str = "") -> list[tuple[str, object]]:
    """{"counts": {"lines": 3}} -> [("counts.lines", 3)]: one total a line."""
    pairs = []
    for key, value in totals.items():
        if isinstance(value, dict):
            pairs.extend(_flat(value, f"{prefix}{key}."))
        else:
            pairs.append((f"{prefix}{key}", value))
    return pairs


def _human(result: dict) -> list[str]:
    period = (
        f"{result['period_start']} to {result['period_end']}"
        if result["period_start"] and result["period_end"]
        else "-"
    )
    lines = [
        f"Imported {result['file']} ({result['file_format'].upper()}) as statement import #{result['import']}.",
        f"Shortcode: {result['shortcode']}"
        + (f" ({result['account_name']})" if result["account_name"] else ""),
        f"Period: {period}",
        f"Lines: {result['lines_read']} read, {result['lines_new']} new, {result['lines_known']} already known",
    ]
    labels = dict(LineKind.choices)
    for kind, figures in result["kinds"].items():
        if figures["lines"]:
            lines.append(
                f"  {labels[kind]}: {figures['lines']} (paid in {figures['paid_in']}, "
                f"withdrawn {figures['withdrawn']})"
            )
    reconciliation = result["reconciliation"]
    if reconciliation is not None:
        lines.append(f"Reconciliation run #{reconciliation['run']}:")
        lines.extend(f"  {key}: {value}" for key, value in _flat(reconciliation["totals"]))
    return lines
