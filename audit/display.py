"""How a record reads to people: its changes as "field: before → after" lines."""

from audit.models import AuditEntry


def _value(value) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def change_lines(entry: AuditEntry) -> list[str]:
    lines = []
    for field, change in (entry.changes or {}).items():
        label = field.replace("_", " ")
        if not isinstance(change, dict):
            lines.append(f"{label}: {_value(change)}")
        elif "added" in change or "removed" in change:
            parts = [f"+ {name}" for name in change.get("added", [])]
            parts += [f"− {name}" for name in change.get("removed", [])]
            lines.append(f"{label}: {', '.join(parts)}")
        else:
            lines.append(f"{label}: {_value(change.get('before'))} → {_value(change.get('after'))}")
    return lines
