"""Step 1 of an import: what is this file? Its encoding, delimiter, header and a few sample rows,
read without loading the file, and the column mapping (guessed, checked, described)."""

from __future__ import annotations

import codecs
import csv
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

SCAN_PIECE = 1 << 20  # read at most 1 MiB per "line" when scanning bytes, whatever the file holds
SAMPLE_ROWS = 5  # data rows read for the mapping step, whatever the size of the file
SAMPLE_CELL_MAX = 60
COLUMNS_MAX = 200
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

    A rejected-rows file (see ``rows.Rejections``) starts with "line" and "reason": those two are
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
