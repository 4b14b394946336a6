"""CSV import of contacts: streamed, validated row by row, written in set-wise batches.

The file is read in passes, never held in memory:
1. ``file_head_read`` scans the raw bytes (binary? which encoding? mixed encodings?) and reads
   the header row and a few sample rows, nothing more. A file it refuses changes nothing.
2. ``mapping_guess`` says which column holds the email, first and last name (from common header
   names in six languages); every other column is an attribute under its own name. In the
   browser staff see the guess beside the sample rows, change it and confirm before anything is
   written; ``import_contacts --map`` does the same on the command line. ``mapping_check`` refuses
   a mapping without an email column (or with two), so a bad mapping writes nothing.
3. ``contacts_import`` reads the file again through the csv module, rejects bad rows with their
   line number and reason (into a CSV of rejected rows that can be fixed and uploaded again) and
   upserts the good ones 1,000 at a time.

Imports never change a contact's status and never re-subscribe anyone who unsubscribed or is
suppressed, so running the same file twice changes nothing the second time.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import logging
import re
import unicodedata
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from campaigns.contacts import EMAIL_MISSING, email_check
from campaigns.exports import formula_escape
from campaigns.models import Contact, ContactList, ImportJob, Subscription
from tracking.models import Suppression

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000
PREVIEW_LIMIT = 200  # rejections kept on the ImportJob row for the page; the CSV has them all
EMAIL_MAX = 254
NAME_MAX = 100
ATTRIBUTE_MAX = 1000
SCAN_PIECE = 1 << 20  # read at most 1 MiB per "line" when scanning bytes, whatever the file holds

SAMPLE_ROWS = 5  # data rows read for the mapping step, whatever the size of the file
SAMPLE_CELL_MAX = 60
COLUMNS_MAX = 200
REWRITTEN_PREVIEW_LIMIT = 5
FIELDS = ("email", "first_name", "last_name", "attribute", "ignore")
REJECTED_COLUMNS = ["line", "reason"]  # first columns of the rejected-rows file

# Header names of the email, first and last name columns in the exports people bring: English,
# German, French, Dutch, Spanish and Italian. Compared after ``_alias_key``: case, accents,
# spaces, hyphens, underscores and dots do not matter ("E-Mail", "e_mail", "Prénom").
HEADER_ALIASES = {
    **dict.fromkeys(
        [
            "email", "mail", "emailaddress", "mailaddress", "emails", "emailadresse", "mailadresse",
            "adresseemail", "adressemail", "adresseelectronique", "courriel", "adressecourriel", "mel",
            "emailadres", "mailadres", "correo", "correoelectronico", "direcciondecorreo",
            "direcciondecorreoelectronico", "indirizzoemail", "indirizzomail", "posta", "postaelettronica",
        ],
        "email",
    ),
    **dict.fromkeys(
        [
            "firstname", "first", "givenname", "forename", "vorname", "rufname", "prenom", "voornaam",
            "roepnaam", "nombre", "nombredepila", "nome", "nomedibattesimo",
        ],
        "first_name",
    ),
    **dict.fromkeys(
        [
            "lastname", "last", "surname", "familyname", "nachname", "familienname", "zuname", "nom",
            "nomdefamille", "achternaam", "familienaam", "apellido", "apellidos", "cognome",
        ],
        "last_name",
    ),
}  # fmt: skip
# Magic numbers of files people upload by mistake, for a message better than "not UTF-8".
KNOWN_BINARIES = [
    (b"PK\x03\x04", "a ZIP archive or an Excel workbook (.xlsx): save the sheet as “CSV UTF-8” and upload that"),
    (b"\xd0\xcf\x11\xe0", "an old Excel workbook (.xls): save the sheet as “CSV UTF-8” and upload that"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
]


class ImportRefused(ValueError):
    """The whole file is refused (nothing was changed); the message says why and what to do."""


@dataclass
class FileHead:
    """What the mapping step shows: the header and a few rows, read without loading the file."""

    encoding: str
    delimiter: str
    header: list[str]
    samples: list[list[str]]  # up to SAMPLE_ROWS rows, one cell per header column, cut short


@dataclass
class FileShape:
    encoding: str
    delimiter: str
    header: list[str]
    columns: list[str]  # per CSV column: "email", "first_name", "last_name", "attr:<key>" or ""
    fields: list[str]  # per CSV column, as chosen: one of FIELDS


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
class _Row:
    line: int
    email: str
    first_name: str
    last_name: str
    attributes: dict[str, str]
    rewritten_from: str = ""  # the cell as written, when the address was rewritten


# --- step 1: what is this file? -----------------------------------------------------------------


def file_head_read(path: Path) -> FileHead:
    """Encoding, delimiter, header and the first few rows of the file, or ImportRefused.

    The encoding check streams the whole file (line by line, constant memory); the csv module
    then reads only the header and SAMPLE_ROWS records, so a million-row file costs no more
    memory here than a ten-row one.
    """
    encoding = _encoding_detect(path)
    with open(path, encoding=encoding, newline="") as text:
        header_line = text.readline(SCAN_PIECE)
        delimiter = _delimiter_guess(header_line)
        header = [name.strip() for name in next(csv.reader([header_line], delimiter=delimiter), [])]
        if len(header) > COLUMNS_MAX:
            raise ImportRefused(
                f"The file has {len(header)} columns; at most {COLUMNS_MAX} can be imported. "
                "Delete the columns you do not need and upload it again."
            )
        samples = []
        reader = csv.reader(text, delimiter=delimiter)
        try:
            for values in reader:
                if any(value.strip() for value in values):
                    samples.append([_sample_cell(value) for value in (values + [""] * len(header))[: len(header)]])
                if len(samples) >= SAMPLE_ROWS:
                    break
        except csv.Error:
            pass  # an unreadable record: the import rejects it with its line; the samples stop here
    return FileHead(encoding=encoding, delimiter=delimiter, header=header, samples=samples)


def _sample_cell(value: str) -> str:
    value = value.strip()
    return value if len(value) <= SAMPLE_CELL_MAX else value[: SAMPLE_CELL_MAX - 1] + "…"


def file_inspect(path: Path, fields: list[str] | None = None) -> FileShape:
    """Encoding, delimiter and column mapping of the file, or ImportRefused.

    ``fields`` is the chosen field per column (one of FIELDS); without it the mapping is guessed
    from the header. Either way a mapping without one email column is refused.
    """
    head = file_head_read(path)
    if fields is None:
        fields = mapping_guess(head.header)
    elif len(fields) != len(head.header):
        raise ImportRefused(
            f"The mapping names {len(fields)} columns but the file has {len(head.header)}. Upload the file again."
        )
    columns = mapping_check(head.header, fields)
    return FileShape(
        encoding=head.encoding, delimiter=head.delimiter, header=head.header, columns=columns, fields=list(fields)
    )


def _encoding_detect(path: Path) -> str:
    """UTF-8 (BOM or not) when every line decodes; Windows-1252 when no line is UTF-8 at all.

    A file mixing both (lines pasted from two exports) cannot be decoded correctly either way,
    so it is refused with the line numbers, rather than importing garbled names.
    """
    with open(path, "rb") as raw:
        head = raw.read(8192)
        if not head.strip(b" \t\r\n\xef\xbb\xbf"):
            raise ImportRefused("The file is empty.")
        for magic, what in KNOWN_BINARIES:
            if head.startswith(magic):
                raise ImportRefused(f"This is not a CSV file: it looks like {what}.")
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise ImportRefused("The file is UTF-16 text. Save it as “CSV UTF-8” and upload it again.")
        raw.seek(0)
        utf8_line = bad_line = None
        for number, line in enumerate(iter(lambda: raw.readline(SCAN_PIECE), b""), start=1):
            if b"\x00" in line:
                raise ImportRefused(f"This is not a CSV file: line {number} holds binary data.")
            if line.isascii():
                continue
            try:
                line.decode("utf-8")
                utf8_line = utf8_line or number
            except UnicodeDecodeError:
                bad_line = bad_line or number
                if utf8_line:
                    break
    if bad_line is None:
        return "utf-8-sig"  # also reads files without a BOM
    if utf8_line is not None or head.startswith(codecs.BOM_UTF8):
        raise ImportRefused(
            f"The file mixes text encodings: line {utf8_line or 1} is UTF-8 but line {bad_line} is not. "
            "Save the whole file as “CSV UTF-8” and upload it again."
        )
    return _legacy_encoding_check(path)


def _legacy_encoding_check(path: Path) -> str:
    with open(path, "rb") as raw:
        for number, line in enumerate(iter(lambda: raw.readline(SCAN_PIECE), b""), start=1):
            try:
                line.decode("cp1252")
            except UnicodeDecodeError:
                raise ImportRefused(
                    f"The file is not UTF-8 text (line {number}) and no other encoding fits it. "
                    "Save it as “CSV UTF-8” and upload it again."
                ) from None
    return "cp1252"


def _delimiter_guess(header_line: str) -> str:
    # The header row is plain words, so counting separators there is reliable; csv.Sniffer is
    # not (it guesses from whatever characters recur, e.g. "." in email addresses).
    counts = {delimiter: header_line.count(delimiter) for delimiter in (",", ";", "\t")}
    best = max(counts, key=lambda delimiter: counts[delimiter])
    return best if counts[best] else ","


def header_key(name: str) -> str:
    """The attribute name a column is stored under: "Member No." → "member_no"."""
    return re.sub(r"\W+", "_", name.strip().lower()).strip("_")[:100]


def _alias_key(name: str) -> str:
    """The header name compared with HEADER_ALIASES: no accents, case, or separators."""
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    return "".join(character for character in decomposed if character.isalnum() and character.isascii())


def mapping_guess(header: list[str]) -> list[str]:
    """The field of each column (one of FIELDS), guessed from its name.

    A rejected-rows file (see ``_Rejections``) starts with "line" and "reason": those two are
    ignored, so the fixed file can be uploaded again as it is.
    """
    rejected_file = [name.strip().lower() for name in header[: len(REJECTED_COLUMNS)]] == REJECTED_COLUMNS
    fields = []
    for position, name in enumerate(header):
        if (rejected_file and position < len(REJECTED_COLUMNS)) or not header_key(name):
            fields.append("ignore")
        else:
            fields.append(HEADER_ALIASES.get(_alias_key(name), "attribute"))
    return fields


def mapping_check(header: list[str], fields: list[str]) -> list[str]:
    """The internal column list for ``fields`` (see FileShape.columns), or ImportRefused saying
    what to change: exactly one email column, at most one first and one last name column, and
    attribute names that differ."""
    columns: list[str] = []
    for name, chosen in zip(header, fields, strict=True):
        if chosen not in FIELDS:
            raise ImportRefused(f"“{chosen[:40]}” is not something a column can be imported as.")
        if chosen == "attribute":
            if not header_key(name):
                raise ImportRefused(
                    f"The column “{name[:40]}” cannot be an attribute: its name has no letters or digits. Ignore it."
                )
            columns.append(f"attr:{header_key(name)}")
        else:
            columns.append("" if chosen == "ignore" else chosen)
    if "email" not in columns:
        shown = ", ".join(f"“{name[:40]}”" for name in header[:10]) or "nothing"
        raise ImportRefused(
            f"No email column: choose the column that holds the email addresses (the columns are {shown}). "
            "The first row of the file must name the columns."
        )
    for single in ("email", "first_name", "last_name"):
        named = [name for name, column in zip(header, columns, strict=True) if column == single]
        if len(named) > 1:
            raise ImportRefused(
                f"The columns “{named[0][:40]}” and “{named[1][:40]}” are both imported as "
                f"{single.replace('_', ' ')}: keep one and set the other to attribute or ignore."
            )
    attributes = [column for column in columns if column.startswith("attr:")]
    duplicates = sorted({column[5:] for column in attributes if attributes.count(column) > 1})
    if duplicates:
        raise ImportRefused(
            f"The header names the column “{duplicates[0]}” more than once: ignore all but one of them."
        )
    return columns


def mapping_describe(header: list[str], fields: list[str]) -> str:
    """The mapping in one line: “E-Mail” → email, “Club” → attribute “club”, “line” → ignored."""
    parts = []
    for name, chosen in zip(header, fields, strict=True):
        target = {
            "email": "email",
            "first_name": "first name",
            "last_name": "last name",
            "ignore": "ignored",
        }.get(chosen, f"attribute “{header_key(name)}”")
        parts.append(f"“{name}” → {target}")
    return ", ".join(parts)


# --- step 2: read rows, reject bad ones, write good ones ----------------------------------------


class _SeenEmails:
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


def _row_check(values: list[str], columns: list[str], line: int, seen: _SeenEmails) -> _Row | str:
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
    return _Row(line, checked.email, first_name, last_name, attributes, email if checked.rewritten else "")


def _records(text: io.TextIOBase, delimiter: str) -> Iterator[tuple[int, list[str] | None, str]]:
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


class _Rejections:
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


def contacts_import(
    *,
    path: Path,
    contact_list: ContactList | None,
    update: bool = False,
    source: str = "import",
    rejected_path: Path | None = None,
    progress: Callable[[ImportReport, int], None] | None = None,
    fields: list[str] | None = None,
) -> ImportReport:
    """Import the CSV at ``path``; ImportRefused (nothing changed) if it is not a usable CSV.

    ``fields`` is the field of each column (one of FIELDS), as confirmed by staff; without it
    the mapping is guessed from the header (``mapping_guess``).
    """
    shape = file_inspect(path, fields)
    report = ImportReport(
        encoding=shape.encoding,
        mapping=[{"name": name, "field": chosen} for name, chosen in zip(shape.header, shape.fields, strict=True)],
    )
    rejections = _Rejections(rejected_path, report, shape.header)
    seen = _SeenEmails()
    batch: list[_Row] = []
    try:
        with open(path, "rb") as raw:
            text = io.TextIOWrapper(raw, encoding=shape.encoding, newline="")
            records = _records(text, shape.delimiter)
            next(records)  # the header
            for line, values, error in records:
                if values is not None and not any(value.strip() for value in values):
                    continue  # blank line
                report.rows_read += 1
                outcome = error or _row_check(values, shape.columns, line, seen)
                if isinstance(outcome, str):
                    rejections.add(line, outcome, values)
                    continue
                if outcome.rewritten_from:
                    _rewritten_note(report, outcome)
                batch.append(outcome)
                if len(batch) >= BATCH_SIZE:
                    _batch_write(batch, contact_list=contact_list, update=update, source=source, report=report)
                    batch = []
                    if progress:
                        progress(report, raw.tell())
            if batch:
                _batch_write(batch, contact_list=contact_list, update=update, source=source, report=report)
            if progress:
                progress(report, raw.tell())
    finally:
        rejections.close()
    return report


def _rewritten_note(report: ImportReport, row: _Row) -> None:
    report.rewritten += 1
    if len(report.rewritten_preview) < REWRITTEN_PREVIEW_LIMIT:
        report.rewritten_preview.append({"line": row.line, "written": row.rewritten_from[:120], "email": row.email})


def _batch_write(
    batch: list[_Row], *, contact_list: ContactList | None, update: bool, source: str, report: ImportReport
) -> None:
    """Upsert one batch of valid rows with six set-wise queries, whatever the batch size."""
    now = timezone.now()
    emails = [row.email for row in batch]
    with transaction.atomic():
        existing = {
            email: (pk, first, last, _json(attributes))
            for email, pk, first, last, attributes in _select(
                Contact, ["email", "id", "first_name", "last_name", "attributes"], "email", emails
            )
        }
        new = [row for row in batch if row.email not in existing]
        _contacts_insert(new, source=source[:100], now=now)
        report.created += len(new)
        changed = _changes(batch, existing, now) if update else []
        if changed:
            Contact.objects.bulk_update(changed, ["first_name", "last_name", "attributes", "updated_at"])
        report.updated += len(changed)
        report.unchanged += len(existing) - len(changed)
        if contact_list is not None:
            _subscriptions_add(emails, contact_list=contact_list, now=now, report=report)


def _json(value) -> dict:
    # Raw cursors return jsonb as text (Django's psycopg setup) and SQLite's JSON as text.
    return json.loads(value) if isinstance(value, str) else (value or {})


def _select(model, columns: list[str], key: str, values: list, **equal) -> list[tuple]:
    """SELECT columns WHERE key is one of values (and column = value for each of ``equal``).

    On PostgreSQL the values travel as one array parameter (= ANY(%s)): psycopg parses the
    query text for placeholders in Python, and a 1,000-placeholder IN list made that parsing
    the most expensive part of an import.
    """
    if not values:
        return []
    quote = connection.ops.quote_name
    if connection.vendor == "postgresql":
        # An explicit array type: left to itself psycopg may send ints as numeric[], and
        # "bigint = numeric" cannot use the index.
        array_type = "bigint[]" if isinstance(values[0], int) else "text[]"
        condition, params = f"{quote(key)} = ANY(%s::{array_type})", [list(values)]
    else:
        condition, params = f"{quote(key)} IN ({', '.join(['%s'] * len(values))})", list(values)
    for column, value in equal.items():
        condition += f" AND {quote(column)} = %s"
        params.append(value)
    sql = f"SELECT {', '.join(quote(c) for c in columns)} FROM {quote(model._meta.db_table)} WHERE {condition}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _insert_new(model, columns: dict[str, str], rows: list[tuple]) -> None:
    """INSERT … ON CONFLICT DO NOTHING of ``rows`` as one statement.

    bulk_create builds a model instance and prepares every value through the field classes:
    about half of the import's time. PostgreSQL gets one array per column (``unnest``, typed by
    ``columns``: column name → PostgreSQL type), SQLite a multi-row VALUES list (its C parser
    does not mind the placeholders).
    """
    if not rows:
        return
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(columns)
    if connection.vendor == "postgresql":
        arrays = ", ".join(f"%s::{kind}[]" for kind in columns.values())
        sql = f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) ON CONFLICT DO NOTHING"
        params = [list(column) for column in zip(*rows, strict=True)]
    else:
        row_sql = "(" + ", ".join(["%s"] * len(columns)) + ")"
        sql = f"INSERT INTO {table} ({names}) VALUES {', '.join([row_sql] * len(rows))} ON CONFLICT DO NOTHING"
        params = [value for row in rows for value in row]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _contacts_insert(rows: list[_Row], *, source: str, now) -> None:
    """New contacts (status active); the file's existing addresses are left to ``_changes``."""
    stamp = connection.ops.adapt_datetimefield_value(now)
    columns = {
        "email": "text",
        "first_name": "text",
        "last_name": "text",
        "attributes": "jsonb",
        "status": "text",
        "source": "text",
        "created_at": "timestamptz",
        "updated_at": "timestamptz",
    }
    values = [
        (row.email, row.first_name, row.last_name, json.dumps(row.attributes), "active", source, stamp, stamp)
        for row in rows
    ]
    _insert_new(Contact, columns, values)


def _subscriptions_insert(contact_ids: list[int], *, list_id: int, now) -> None:
    stamp = connection.ops.adapt_datetimefield_value(now)
    columns = {"contact_id": "bigint", "contact_list_id": "bigint", "status": "text", "changed_at": "timestamptz"}
    _insert_new(Subscription, columns, [(contact_id, list_id, "subscribed", stamp) for contact_id in contact_ids])


def _changes(batch: list[_Row], existing: dict, now) -> list[Contact]:
    """Contacts whose names or attributes the file changes; empty cells never erase data."""
    changed = []
    for row in batch:
        if row.email not in existing:
            continue
        pk, first, last, attributes = existing[row.email]
        merged = {**attributes, **row.attributes}
        new_first, new_last = row.first_name or first, row.last_name or last
        if (new_first, new_last, merged) != (first, last, attributes):
            changed.append(Contact(pk=pk, first_name=new_first, last_name=new_last, attributes=merged, updated_at=now))
    return changed


def _subscriptions_add(emails: list[str], *, contact_list: ContactList, now, report: ImportReport) -> None:
    """Subscribe the batch's contacts to the list, except those who left it, any list, or us."""
    contacts = _select(Contact, ["id", "email", "status"], "email", emails)
    statuses = dict(
        _select(
            Subscription,
            ["contact_id", "status"],
            "contact_id",
            [pk for pk, _, _ in contacts],
            contact_list_id=contact_list.pk,
        )
    )
    suppressed = {email for (email,) in _select(Suppression, ["email"], "email", emails)}
    new = []
    for pk, email, status in contacts:
        if statuses.get(pk) == Subscription.Status.SUBSCRIBED:
            continue
        if pk in statuses or status != Contact.Status.ACTIVE or email in suppressed:
            report.not_resubscribed += 1
            continue
        new.append(pk)
    _subscriptions_insert(new, list_id=contact_list.pk, now=now)
    report.subscribed += len(new)


# --- browser uploads: an ImportJob row and a django-q2 task -------------------------------------


MAPPING_KEEP = timedelta(days=1)  # an upload whose mapping nobody confirmed is deleted after this


def import_job_create(*, uploaded_file, contact_list: ContactList, update: bool, user) -> ImportJob:
    """Store the upload with its guessed mapping and sample rows, waiting for staff to confirm.

    ImportRefused (and nothing kept) if it is not a usable CSV. Nothing is imported yet: see
    ``import_job_confirm``.
    """
    imports_discard_abandoned()
    job = ImportJob(
        status=ImportJob.Status.MAPPING,
        contact_list=contact_list,
        update_existing=update,
        original_name=Path(uploaded_file.name or "upload.csv").name[:255],
        size_bytes=uploaded_file.size or 0,
        created_by=user,
    )
    job.file.save(f"import-{timezone.now():%Y%m%d%H%M%S%f}.csv", uploaded_file, save=False)
    try:
        head = file_head_read(Path(job.file.path))
    except ImportRefused:
        job.file.delete(save=False)
        raise
    job.encoding = head.encoding
    job.column_mapping = [
        {"name": name, "field": chosen} for name, chosen in zip(head.header, mapping_guess(head.header), strict=True)
    ]
    job.sample_rows = head.samples
    job.save()
    return job


def import_job_confirm(*, job: ImportJob, fields: list[str]) -> None:
    """Keep the chosen field of each column and queue the import once the row is committed.

    ImportRefused (the job is left waiting, unchanged) when the mapping cannot be imported, so a
    bad mapping writes nothing.
    """
    header = [column["name"] for column in job.column_mapping]
    mapping_check(header, fields)
    confirmed = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.MAPPING).update(
        status=ImportJob.Status.QUEUED,
        column_mapping=[{"name": name, "field": chosen} for name, chosen in zip(header, fields, strict=True)],
        sample_rows=[],  # personal data, needed only for this step
    )
    if confirmed:
        transaction.on_commit(lambda: import_job_enqueue(job.pk))


def import_job_discard(*, job: ImportJob) -> None:
    """Delete an upload whose mapping was not confirmed, with its file."""
    if job.status != ImportJob.Status.MAPPING:
        return
    if job.file:
        job.file.delete(save=False)
    job.delete()


def imports_discard_abandoned() -> int:
    """Uploads left at the mapping step for a day are deleted (their files hold personal data).

    Called by the engine tick, and at each upload."""
    abandoned = ImportJob.objects.filter(status=ImportJob.Status.MAPPING, created_at__lt=timezone.now() - MAPPING_KEEP)
    for job in abandoned:
        import_job_discard(job=job)
    return len(abandoned)


def import_job_enqueue(job_id: int) -> None:
    """Queue the job's task with the import time limit (an import may outlast ``Q_TIMEOUT``).

    On the ORM broker a task running longer than ``Q_RETRY`` is delivered again; that copy finds
    the job already running and does nothing.
    """
    from django_q.tasks import async_task

    async_task("campaigns.imports.import_job_run", job_id, group="imports", timeout=settings.IMPORT_TIMEOUT)


def imports_restart_stale() -> list[int]:
    """Jobs left "running" by a dead worker (no heartbeat for ``IMPORT_STALE_SECONDS``) are queued
    again and start over from the top of their file; rows imported before then count as unchanged."""
    cutoff = timezone.now() - timedelta(seconds=settings.IMPORT_STALE_SECONDS)
    restarted = []
    for job_id in ImportJob.objects.filter(status=ImportJob.Status.RUNNING, heartbeat_at__lt=cutoff).values_list(
        "pk", flat=True
    ):
        if ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.RUNNING, heartbeat_at__lt=cutoff).update(
            status=ImportJob.Status.QUEUED, heartbeat_at=None
        ):
            logger.warning("import job %s stopped beating (its worker died?): started again", job_id)
            import_job_enqueue(job_id)
            restarted.append(job_id)
    return restarted


def import_job_run(job_id: int) -> str:
    """The django-q2 task: claim the queued job, import, record the outcome. Safe to run twice."""
    now = timezone.now()
    claimed = ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.QUEUED).update(
        status=ImportJob.Status.RUNNING, started_at=now, heartbeat_at=now
    )
    if not claimed:
        return "not queued"
    job = ImportJob.objects.select_related("contact_list").get(pk=job_id)
    rejected_name = f"imports/rejected/import-{job.pk}-rejected.csv"
    rejected_path = Path(settings.MEDIA_ROOT) / rejected_name
    rejected_path.parent.mkdir(parents=True, exist_ok=True)

    def progress(report: ImportReport, position: int) -> None:
        ImportJob.objects.filter(pk=job_id).update(
            bytes_read=position, heartbeat_at=timezone.now(), **report.counters()
        )

    try:
        report = contacts_import(
            path=Path(job.file.path),
            contact_list=job.contact_list,
            update=job.update_existing,
            source=f"import: {job.original_name}",
            rejected_path=rejected_path,
            progress=progress,
            fields=[column["field"] for column in job.column_mapping] or None,
        )
    except ImportRefused as refusal:
        _job_finish(job_id, status=ImportJob.Status.REFUSED, error=str(refusal))
        return "refused"
    except Exception:
        logger.exception("import job %s failed", job_id)
        _job_finish(job_id, status=ImportJob.Status.FAILED, error="The import stopped on an unexpected error.")
        return "failed"
    _job_finish(
        job_id,
        status=ImportJob.Status.DONE,
        encoding=report.encoding,
        bytes_read=job.size_bytes,
        rejected_preview=report.rejected_preview,
        rewritten_preview=report.rewritten_preview,
        column_mapping=report.mapping,
        rejected_file=rejected_name if report.rejected else "",
        **report.counters(),
    )
    return "done"


def _job_finish(job_id: int, **fields) -> None:
    ImportJob.objects.filter(pk=job_id).update(finished_at=timezone.now(), **fields)
    # The upload is personal data that now lives in the contacts table (or was refused): keep
    # only the rejected rows, which staff download to fix and re-import.
    job = ImportJob.objects.get(pk=job_id)
    if job.file:
        job.file.delete(save=False)
