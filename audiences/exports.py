"""CSV export of contacts, streamed row by row, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator

from django.db.models import QuerySet

from audiences.models import Contact
from common.csvfiles import Echo, formula_escape

FIXED_COLUMNS = ["email", "first_name", "last_name", "status", "source", "created_at"]
CHUNK = 2000


def _attribute_keys(contacts: QuerySet[Contact]) -> list[str]:
    # One light pass over the JSON column only: exports need stable columns, and the set of
    # attribute keys is small even when the number of contacts is not.
    keys: set[str] = set()
    for attributes in contacts.order_by().values_list("attributes", flat=True).iterator(chunk_size=CHUNK):
        if attributes:
            keys.update(attributes)
    return sorted(keys)


def contacts_csv_rows(contacts: QuerySet[Contact]) -> Iterator[str]:
    """CSV lines (header first) for the contacts, streamed with a server-side cursor."""
    writer = csv.writer(Echo())
    keys = _attribute_keys(contacts)
    # Attribute names are data too ("-cmd" passes the form's ^[\w-]+$): header cells are escaped
    # like value cells. The BOM makes Excel read UTF-8.
    yield "\ufeff" + writer.writerow([formula_escape(name) for name in FIXED_COLUMNS + keys])
    rows = contacts.order_by("pk").values_list(
        "email", "first_name", "last_name", "status", "source", "created_at", "attributes"
    )
    for *fixed, attributes in rows.iterator(chunk_size=CHUNK):
        fixed[5] = fixed[5].isoformat() if fixed[5] else ""
        attributes = attributes or {}
        yield writer.writerow([formula_escape(value) for value in _cells(fixed, keys, attributes)])


def _cells(fixed: list, keys: Iterable[str], attributes: dict) -> list:
    return [*fixed, *(attributes.get(key, "") for key in keys)]
