"""django-q2 entry points for statements: plain module functions with JSON-able arguments."""

from statements.pull import statement_pull


def pull_statement_task() -> str:
    counts = statement_pull()
    return ", ".join(f"{name} {value}" for name, value in counts.items())
