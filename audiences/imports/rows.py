"""Step 2 of an import, reading: records with their line numbers, row checks, duplicates within
the file, and the rejected rows (counted, previewed, written to a CSV staff can fix)."""

from __future__ import annotations

import csv
import hashlib
import io
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.core.exceptions import ValidationError

from audiences.addresses import EMAIL_MISSING, email_check
from audiences.imports.files import REJECTED_COLUMNS
from common.csvfiles import formula_escape

PREVIEW_LIMIT = 200  # rejections kept on the ImportJob row for the page; the CSV has them all
NAME_MAX = 100
ATTRIBUTE_MAX = 1000


@dataclass
class ImportReport:
    encoding: str = ""
    rows_read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    subscribed: int = 0
    not_resubscribed: int = 0
    rejected: int = 0
    rewritten: int = 0
    rejected_preview: list[dict] = field(default_factory=list)
    rewritten_preview: list[dict] = field(default_factory=list)
    mapping: list[dict] = field(default_factory=list)  # {"name", "field"} per column, as used

    def counters(self) -> dict[str, int]:
        return {
            name: getattr(self, name)
            for name in (
                "rows_read",
                "created",
                "updated",
                "unchanged",
                "subscribed",
                "not_resubscribed",
                "rejected",
                "rewritten",
            )
        }


@dataclass
class Row:
    line: int
    email: str
    first_name: str
    last_name: str
    attributes: dict[str, str]
    rewritten_from: str = ""  # the cell as written, when the address was rewritten


class SeenEmails:
    """Emails already met in this file → the line that had them, at ~17 bytes per address.

    An open-addressing table of 64-bit digests in two flat arrays: a million-row file needs
    about 24 MiB here at worst, against several times that for a set of strings. Two different
    addresses sharing a 64-bit digest is about a 1-in-10^7 event for a million rows.
    """

    def __init__(self, capacity: int = 1 << 16) -> None:
        self._size = 0
        self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        self._keys = array("Q", bytes(8 * capacity))
        self._lines = array("I", [0]) * capacity  # 4 bytes: line numbers stay below 2**32
        self._mask = capacity - 1

    def first_line(self, email: str, line: int) -> int | None:
        """The earlier line with this email, or None (and remember this one)."""
        digest = int.from_bytes(hashlib.blake2b(email.encode(), digest_size=8).digest()) or 1
        keys, mask = self._keys, self._mask
        slot = digest & mask
        while keys[slot]:
            if keys[slot] == digest:
                return self._lines[slot]
            slot = (slot + 1) & mask
        keys[slot], self._lines[slot] = digest, line
        self._size += 1
        if self._size * 10 > (mask + 1) * 7:
            self._grow()
        return None

    def _grow(self) -> None:
        old_keys, old_lines = self._keys, self._lines
        self._allocate((self._mask + 1) * 2)
        for digest, line in zip(old_keys, old_lines, strict=True):
            if digest:
                slot = digest & self._mask
                while self._keys[slot]:
                    slot = (slot + 1) & self._mask
                self._keys[slot], self._lines[slot] = digest, line


def row_check(values: list[str], columns: list[str], line: int, seen: SeenEmails) -> Row | str:
    """A valid row, or the reason it is rejected."""
    if len(values) > len(columns) and any(value.strip() for value in values[len(columns) :]):
        return f"{len(values)} values, but the header has {len(columns)} columns"
    email, first_name, last_name, attributes = "", "", "", {}
    for column, value in zip(columns, values, strict=False):
        value = value.strip()
        if not column or not value:
            continue
        if column == "email":
            email = value
        elif column in ("first_name", "last_name"):
            if len(value) > NAME_MAX:
                return f"{column.replace('_', ' ')} longer than {NAME_MAX} characters"
            first_name, last_name = (value, last_name) if column == "first_name" else (first_name, value)
        else:
            if len(value) > ATTRIBUTE_MAX:
                return f"column “{column[5:]}” longer than {ATTRIBUTE_MAX} characters"
            attributes[column[5:]] = value
    if not email:
        return EMAIL_MISSING
    try:
        checked = email_check(email)
    except ValidationError as error:
        return error.messages[0]
    earlier = seen.first_line(checked.email, line)
    if earlier is not None:
        return f"duplicate of line {earlier} (same address)"
    return Row(line, checked.email, first_name, last_name, attributes, email if checked.rewritten else "")


def csv_records(text: io.TextIOBase, delimiter: str) -> Iterator[tuple[int, list[str] | None, str]]:
    """(first line number, values or None, error) per record; a broken record does not stop the rest."""
    reader = csv.reader(text, delimiter=delimiter)
    while True:
        line = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield line, None, f"unreadable CSV ({error})"
            continue
        yield line, values, ""


class Rejections:
    """Rejected rows: counted, the first few kept for the page, all written to a CSV file.

    The file has the columns "line" and "reason", then the original header, and each row its
    original cells: fix the cells, upload the file again, and the mapping step ignores "line"
    and "reason" (see ``mapping_guess``).
    """

    def __init__(self, path: Path | None, report: ImportReport, header: list[str]) -> None:
        self.report = report
        self.file = open(path, "w", newline="", encoding="utf-8") if path else None
        self.writer = csv.writer(self.file) if self.file else None
        if self.writer:
            self.writer.writerow([*REJECTED_COLUMNS, *(formula_escape(name) for name in header)])

    def add(self, line: int, reason: str, values: list[str] | None) -> None:
        self.report.rejected += 1
        values = values or []
        if len(self.report.rejected_preview) < PREVIEW_LIMIT:
            self.report.rejected_preview.append(
                {"line": line, "reason": reason, "values": [value[:80] for value in values[:6]]}
            )
        if self.writer:
            # Every cell, whole (the csv module caps a field at 128 KiB): a cut cell would be
            # imported cut once the row is fixed and uploaded again.
            self.writer.writerow([line, reason, *(formula_escape(value) for value in values)])

    def close(self) -> None:
        if self.file:
            self.file.close()
