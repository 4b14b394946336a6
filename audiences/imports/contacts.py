"""``contacts_import``: a CSV file read row by row, checked, and written in batches."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from audiences.imports.files import ImportRefused, file_inspect
from audiences.imports.rows import ImportReport, Rejections, Row, SeenEmails, csv_records, row_check
from audiences.imports.writer import batch_write
from audiences.models import ContactList

BATCH_SIZE = 1000
REWRITTEN_PREVIEW_LIMIT = 5


def contacts_import(
    *,
    organisation_id: int,
    path: Path,
    contact_list: ContactList | None,
    update: bool = False,
    source: str = "import",
    rejected_path: Path | None = None,
    progress: Callable[[ImportReport, int], None] | None = None,
    fields: list[str] | None = None,
) -> ImportReport:
    """Import the CSV at ``path`` into the organisation's contacts (and ``contact_list``, which
    must be one of its lists); ImportRefused (nothing changed) if it is not a usable CSV.

    ``fields`` is the field of each column (one of FIELDS), as confirmed by staff; without it
    the mapping is guessed from the header (``mapping_guess``).
    """
    if contact_list is not None and contact_list.organisation_id != organisation_id:
        raise ImportRefused("The list chosen for this import belongs to another organisation.")
    shape = file_inspect(path, fields)
    report = ImportReport(
        encoding=shape.encoding,
        mapping=[{"name": name, "field": chosen} for name, chosen in zip(shape.header, shape.fields, strict=True)],
    )
    rejections = Rejections(rejected_path, report, shape.header)
    seen = SeenEmails()
    target = {"organisation_id": organisation_id, "contact_list": contact_list, "update": update, "source": source}
    batch: list[Row] = []
    try:
        with open(path, "rb") as raw:
            text = io.TextIOWrapper(raw, encoding=shape.encoding, newline="")
            records = csv_records(text, shape.delimiter)
            next(records)  # the header
            for line, values, error in records:
                if values is not None and not any(value.strip() for value in values):
                    continue  # blank line
                report.rows_read += 1
                outcome = error or row_check(values, shape.columns, line, seen)
                if isinstance(outcome, str):
                    rejections.add(line, outcome, values)
                    continue
                if outcome.rewritten_from:
                    _rewritten_note(report, outcome)
                batch.append(outcome)
                if len(batch) >= BATCH_SIZE:
                    batch_write(batch, report=report, **target)
                    batch = []
                    if progress:
                        progress(report, raw.tell())
            if batch:
                batch_write(batch, report=report, **target)
            if progress:
                progress(report, raw.tell())
    finally:
        rejections.close()
    return report


def _rewritten_note(report: ImportReport, row: Row) -> None:
    report.rewritten += 1
    if len(report.rewritten_preview) < REWRITTEN_PREVIEW_LIMIT:
        report.rewritten_preview.append({"line": row.line, "written": row.rewritten_from[:120], "email": row.email})
