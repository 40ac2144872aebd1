"""The columns of an exported admin list, declared on its ModelAdmin (`export_columns`).

Each column reads one value per row from the database (a field path such as "order__reference", or an
`expression` annotated under the column's `field` name) and turns it into a typed cell:

- number, money, flag: as stored (money stays a Decimal and becomes a number with two decimals);
- datetime: Nairobi wall-clock time;
- label: the choice's label ("Completed", not "completed"), from the model field's choices or `choices`;
- phone, email, contact (a phone number or an email address): masked unless the file may show contacts in
  full; text: as stored.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.admin.utils import get_fields_from_path
from django.db import models

from common.masking import mask_email, mask_msisdn
from exports.writers import Column, nairobi

_WIDTHS = {"number": 11, "money": 13, "datetime": 19, "flag": 10, "label": 16, "phone": 14, "email": 24}
# The cell kind the writers know (exports.writers.Column.kind).
_WRITER_KIND = {"number": "number", "money": "money", "datetime": "datetime", "flag": "flag"}
KINDS = frozenset({"text", "label", "phone", "email", "contact", *_WRITER_KIND})


@dataclass(frozen=True)
class ExportColumn:
    title: str
    field: str
    kind: str = "text"
    width: int | None = None
    choices: Iterable[tuple[Any, str]] | None = None
    # Annotated as `field` before reading (e.g. a subquery); None reads the field path itself.
    expression: Any = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Unknown export column kind {self.kind!r} for {self.title!r}.")

    @property
    def cell(self) -> Column:
        return Column(
            self.title, _WRITER_KIND.get(self.kind, "text"), self.width or _WIDTHS.get(self.kind, 16)
        )


def _mask_contact(value: str) -> str:
    return mask_email(value) if "@" in value else mask_msisdn(value)


def _labels(column: ExportColumn, model: type[models.Model]) -> dict:
    choices = column.choices
    if choices is None:
        choices = get_fields_from_path(model, column.field)[-1].flatchoices
    return {value: str(label) for value, label in choices}


def _converter(column: ExportColumn, model: type[models.Model], full_contacts: bool) -> Callable | None:
    """The function typing one value of the column, or None when the stored value is the cell."""
    kind = column.kind
    if kind == "datetime":
        return nairobi
    if kind == "label":
        labels = _labels(column, model)
        return lambda value: labels.get(value, value) if value not in (None, "") else ""
    if kind == "text":
        return lambda value: "" if value is None else value
    if kind in ("phone", "email", "contact"):
        if full_contacts:
            return lambda value: value or ""
        mask = {"phone": mask_msisdn, "email": mask_email, "contact": _mask_contact}[kind]
        return lambda value: mask(value) if value else ""
    return None


def row_converter(
    columns: tuple[ExportColumn, ...], model: type[models.Model], *, full_contacts: bool
) -> Callable[[tuple], list]:
    """A function from a database row (values of `columns` in order) to the typed cells of the file."""
    converters = [_converter(column, model, full_contacts) for column in columns]

    def convert(row: tuple) -> list:
        return [
            value if convert_one is None else convert_one(value)
            for convert_one, value in zip(converters, row, strict=True)
        ]

    return convert
