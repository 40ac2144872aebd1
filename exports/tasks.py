"""django-q2 entry points for list exports: plain module functions with JSON-able arguments."""

from exports import services


def export_write(export_id: int) -> str:
    export = services.export_write(export_id=export_id)
    return "not queued" if export is None else f"export {export.pk}: {export.status}"


def expire_exports() -> str:
    counts = services.exports_expire()
    return ", ".join(f"{name} {count}" for name, count in counts.items())
