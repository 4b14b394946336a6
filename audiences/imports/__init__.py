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

The package, by step: ``files`` (1: encoding, header, mapping), ``rows`` (2: reading and
checking rows, rejections), ``writer`` (2: the set-wise SQL), ``contacts`` (``contacts_import``,
the loop joining them) and ``jobs`` (browser uploads as ImportJob rows and a django-q2 task).
The task is queued as ``audiences.imports.import_job_run``: that dotted path is stored with
every queued task, so the name stays importable from here.
"""

from __future__ import annotations

from audiences.imports.contacts import contacts_import
from audiences.imports.files import (
    FIELDS,
    FileHead,
    FileShape,
    ImportRefused,
    file_head_read,
    file_inspect,
    header_key,
    mapping_check,
    mapping_describe,
    mapping_guess,
)
from audiences.imports.jobs import (
    import_job_confirm,
    import_job_create,
    import_job_discard,
    import_job_enqueue,
    import_job_run,
    imports_discard_abandoned,
    imports_restart_stale,
)
from audiences.imports.rows import ImportReport

__all__ = [
    "FIELDS",
    "FileHead",
    "FileShape",
    "ImportRefused",
    "ImportReport",
    "contacts_import",
    "file_head_read",
    "file_inspect",
    "header_key",
    "import_job_confirm",
    "import_job_create",
    "import_job_discard",
    "import_job_enqueue",
    "import_job_run",
    "imports_discard_abandoned",
    "imports_restart_stale",
    "mapping_check",
    "mapping_describe",
    "mapping_guess",
]
