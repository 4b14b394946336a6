"""The API's contact writes: the bulk sync (``contacts_sync``), which also serves the single PUT,
and erasure (``contact_erase``).

A sync is a batch of contacts from a membership database, each named by its own id
(``external_id``). Rows are checked one by one (a bad row is rejected with its reason, the others
are applied); the good ones are written with a handful of set-wise statements whatever their
number, reusing the CSV import's SQL pieces (``audiences.imports.writer``): one SELECT per key,
one INSERT of the new contacts, one UPDATE of the changed ones, one SELECT, INSERT and DELETE of
list memberships.

The rules, shared with the CSV import: a sync never changes a contact's status and never
subscribes anyone who unsubscribed (from the list or from everything), bounced, complained or
is suppressed; the same call twice changes nothing the second time. ``mode="replace"`` makes the
named lists hold exactly the payload's members of them: the others *leave* the list (their
subscription row is deleted), which is not an unsubscribe: they did not refuse mail, and a later
sync may add them back. Opt-outs (unsubscribed rows) are never deleted.

A replace larger than one call is a *run* (``run``, ``final``): every call of it adds and updates
like a merge and remembers the contacts it named for the replaced lists (``SyncRunMember``); the
final call removes the lists' members that no call named, and ends the run (``SyncRun``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import CharField, Exists, OuterRef, Q, QuerySet, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from audiences.addresses import email_check
from audiences.imports.rows import ATTRIBUTE_MAX, NAME_MAX
from audiences.imports.writer import _insert_new, _json, _select, email_hash, erased_of, erased_restore
from audiences.models import (
    Contact,
    ContactList,
    ErasedAddress,
    Subscription,
    Suppression,
    SyncRun,
    SyncRunMember,
)

SYNC_MAX_CONTACTS = 10_000
EXTERNAL_ID_MAX = Contact._meta.get_field("external_id").max_length
LIST_NAME_MAX = ContactList._meta.get_field("name").max_length
ATTRIBUTE_NAME_MAX = 100
FIELDS = {"external_id", "email", "first_name", "last_name", "attributes", "lists"}
MODES = ("merge", "replace")
CHUNK = 5_000  # ids per IN (…) list: SQLite allows 32,766 parameters
CONTACT_COLUMNS = ["id", "external_id", "email", "first_name", "last_name", "attributes", "status"]
RUN_NAME_MAX = SyncRun._meta.get_field("name").max_length
SYNC_RUN_HOURS = 24  # a run not finished within this time of its first call is abandoned
SYNC_RUN_MARKER_DAYS = 7  # an abandoned run's row refuses its late calls this long


class SyncError(ValueError):
    """A whole request the sync refuses (nothing written); the message is shown as is."""


class SyncRunConflict(SyncError):
    """A call that does not fit its run's state (unknown, abandoned, other lists): nothing written."""


class SyncRunAbandoned(SyncRunConflict):
    def __init__(self, message: str, run_id: int) -> None:
        super().__init__(message)
        self.run_id = run_id


@dataclass
class Rejection:
    index: int
    external_id: str | None
    reason: str
    conflict: bool = False  # the row is fine, but clashes with another contact of the organisation

    def as_dict(self) -> dict:
        return {"index": self.index, "external_id": self.external_id, "reason": self.reason}


@dataclass
class SyncReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    lists_created: list[str] = field(default_factory=list)
    removed_from_lists: int = 0  # replace mode: memberships ended for contacts not in the payload


@dataclass
class SyncRow:
    index: int
    external_id: str
    email: str
    first_name: str | None  # None: not sent, left as it is
    last_name: str | None
    attributes: dict | None  # merged into the stored ones; a null value removes that attribute
    lists: list[str] | None


# --- checking rows ------------------------------------------------------------------------------


def _text(item: dict, name: str, limit: int) -> str | None:
    value = item.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    value = value.strip()
    if len(value) > limit:
        raise ValueError(f"{name.replace('_', ' ')} longer than {limit} characters")
    if "\x00" in value:
        raise ValueError(f"{name.replace('_', ' ')} contains a NUL character")
    return value


def _external_id(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("missing external_id (a string, or an integer)")
    text = str(value).strip()
    if not text:
        raise ValueError("missing external_id (a string, or an integer)")
    if len(text) > EXTERNAL_ID_MAX:
        raise ValueError(f"external_id longer than {EXTERNAL_ID_MAX} characters")
    if "/" in text or not text.isprintable():
        raise ValueError("external_id cannot contain “/” or control characters (it is part of the contact's URL)")
    return text


def _attributes(value: Any) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError('attributes must be an object ({"name": value, …})')
    for name, item in value.items():
        if not name or len(name) > ATTRIBUTE_NAME_MAX:
            raise ValueError(f"attribute names must have 1 to {ATTRIBUTE_NAME_MAX} characters")
        if isinstance(item, dict | list):
            raise ValueError(f"attribute “{name[:40]}” must be a string, number, true/false or null")
        if isinstance(item, str) and len(item) > ATTRIBUTE_MAX:
            raise ValueError(f"attribute “{name[:40]}” longer than {ATTRIBUTE_MAX} characters")
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"attribute “{name[:40]}” is not a finite number")
        if "\x00" in name or (isinstance(item, str) and "\x00" in item):
            raise ValueError("attributes cannot contain NUL characters")
    return value


def list_names_check(value: Any, where: str = "lists") -> list[str]:
    """List names as sent (trimmed, duplicates dropped), or ValueError saying what is wrong."""
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValueError(f"{where} must be an array of list names")
    names: dict[str, str] = {}
    for name in value:
        name = name.strip()
        if not name or len(name) > LIST_NAME_MAX or "\x00" in name:
            raise ValueError(f"list names in {where} must have 1 to {LIST_NAME_MAX} characters")
        names.setdefault(name.lower(), name)
    return list(names.values())


def row_check(index: int, item: Any) -> SyncRow:
    """One contact of the payload as a SyncRow, or ValueError with the reason it is rejected."""
    if not isinstance(item, dict):
        raise ValueError("each contact must be a JSON object")
    unknown = sorted(set(item) - FIELDS)
    if unknown:
        raise ValueError(f"unknown field “{unknown[0][:40]}” (the fields are {', '.join(sorted(FIELDS))})")
    external_id = _external_id(item.get("external_id"))
    raw_email = item.get("email")
    if not isinstance(raw_email, str):
        raise ValueError("missing email")
    try:
        email = email_check(raw_email).email
    except ValidationError as error:
        raise ValueError(error.messages[0]) from None
    lists = item.get("lists")
    return SyncRow(
        index=index,
        external_id=external_id,
        email=email,
        first_name=_text(item, "first_name", NAME_MAX),
        last_name=_text(item, "last_name", NAME_MAX),
        attributes=_attributes(item.get("attributes")),
        lists=None if lists is None else list_names_check(lists, "lists of a contact"),
    )


def rows_check(items: list, report: SyncReport) -> list[SyncRow]:
    """The payload's valid rows; the others (and later duplicates of an id or address) rejected."""
    rows: list[SyncRow] = []
    by_external_id: dict[str, int] = {}
    by_email: dict[str, int] = {}
    for index, item in enumerate(items):
        try:
            row = row_check(index, item)
        except ValueError as error:
            external_id = item.get("external_id") if isinstance(item, dict) else None
            shown = str(external_id)[:EXTERNAL_ID_MAX] if isinstance(external_id, str | int) else None
            report.rejected.append(Rejection(index, shown, str(error)))
            continue
        earlier = by_external_id.get(row.external_id)
        if earlier is None and row.email in by_email:
            earlier, what = by_email[row.email], "email"
        else:
            what = "external_id"
        if earlier is not None:
            report.rejected.append(Rejection(index, row.external_id, f"duplicate of index {earlier} (same {what})"))
            continue
        by_external_id[row.external_id] = by_email[row.email] = index
        rows.append(row)
    return rows


# --- writing ------------------------------------------------------------------------------------


@dataclass
class _Stored:
    """A contact as read from the database, and what the sync makes of it."""

    pk: int
    external_id: str
    email: str
    first_name: str
    last_name: str
    attributes: dict
    status: str
    changed: bool = False
    lists_changed: bool = False
    created: bool = False
    restored: bool = False  # created with an erased address's opt-outs (ErasedAddress)

    @classmethod
    def of(cls, row: tuple) -> _Stored:
        pk, external_id, email, first, last, attributes, status = row
        return cls(pk, external_id, email, first, last, _json(attributes), status)

    def values(self) -> tuple:
        return (self.external_id, self.email, self.first_name, self.last_name, self.attributes)


def contacts_sync(
    *,
    organisation_id: int,
    contacts: list,
    mode: str = "merge",
    list_names: list[str] = (),
    source: str = "api",
    run: str | None = None,
    final: bool | None = None,
) -> SyncReport:
    """Create or update the organisation's contacts by external id, and their list memberships.

    ``list_names`` are the lists ``mode="replace"`` applies to. Lists named that do not exist are
    created in the organisation. With ``run`` (replace only) the removal waits for the run's call
    with ``final=True``. Raises SyncError (nothing written) for a request that cannot work as a
    whole, SyncRunConflict when it does not fit its run; single bad rows are rejected in the report.
    """
    if mode not in MODES:
        raise SyncError(f"mode must be one of {', '.join(MODES)}")
    if len(contacts) > SYNC_MAX_CONTACTS:
        raise SyncError(f"{len(contacts):,} contacts; send at most {SYNC_MAX_CONTACTS:,} per call")
    try:
        replaced = list_names_check(list(list_names))
    except ValueError as error:
        raise SyncError(str(error)) from None
    if mode == "replace" and not replaced:
        raise SyncError('mode “replace” needs the lists it applies to in “lists”, e.g. ["Members"]')
    run = _run_check(run, final, mode)
    report = SyncReport()
    rows = rows_check(contacts, report)
    now = timezone.now()
    try:
        with transaction.atomic():
            sync_run = None if run is None else _run_join(organisation_id, run, replaced, final=bool(final), now=now)
            lists = _lists_ensure(organisation_id, replaced + [n for row in rows for n in (row.lists or ())], report)
            matched, new = _match(organisation_id, rows, report)
            rows = [row for row in rows if row.index in matched or row.index in new]
            erased = _contacts_insert(organisation_id, [new[index] for index in sorted(new)], source=source, now=now)
            matched.update(_created(organisation_id, new, erased, report))
            _memberships_write(organisation_id, rows, matched, lists, replaced, report, now, run=sync_run, final=final)
            _contacts_update([matched[row.index] for row in rows], now)
            for row in rows:
                stored = matched[row.index]
                if stored.created:
                    continue
                if stored.changed or stored.lists_changed:
                    report.updated += 1
                else:
                    report.unchanged += 1
    except SyncRunAbandoned as abandoned:
        # After the rollback: the client may start the run again, under the same id.
        SyncRun.objects.filter(pk=abandoned.run_id).delete()
        raise
    report.rejected.sort(key=lambda rejection: rejection.index)
    return report


# --- runs: a replace spread over several calls --------------------------------------------------


def _run_check(run: Any, final: bool | None, mode: str) -> str | None:
    """The run id, trimmed, or None; SyncError when ``run`` and ``final`` do not fit together."""
    if run is None:
        if final is False:
            raise SyncError("“final” belongs to a run: send “run” with it, or leave both out")
        return None
    if not isinstance(run, str) or not 1 <= len(run.strip()) <= RUN_NAME_MAX or not run.strip().isprintable():
        raise SyncError(f"“run” must be a text of 1 to {RUN_NAME_MAX} printable characters")
    if mode != "replace":
        raise SyncError("“run” spreads a replace over several calls: send it with mode “replace”")
    if final is None:
        raise SyncError(
            "with “run”, say in “final” whether this is the run's last call (true) or not (false): "
            "the last call removes the members no call of the run named"
        )
    return run.strip()


def _run_join(organisation_id: int, name: str, replaced: list[str], *, final: bool, now: datetime) -> SyncRun:
    """The organisation's run of this call, locked until the call commits (a run's calls are
    applied one at a time); the first call of a run creates it."""

    def locked() -> SyncRun | None:
        return SyncRun.objects.select_for_update().filter(organisation_id=organisation_id, name=name).first()

    found = locked()
    if found is None and not final:
        SyncRun.objects.get_or_create(
            organisation_id=organisation_id, name=name, defaults={"lists": replaced, "created_at": now}
        )
        found = locked()
    if found is None:
        raise SyncRunConflict(
            f"there is no open run “{name}” (it was never started, or it has finished), so nothing was "
            "removed. Start the run again from its first call (“final”: false on every call but the last)"
        )
    if found.abandoned_at is not None or found.created_at <= now - timedelta(hours=SYNC_RUN_HOURS):
        raise SyncRunAbandoned(
            f"the run “{name}” was abandoned: it was not finished within {SYNC_RUN_HOURS} hours of its "
            "first call, and nothing was removed. Start the run again from its first call",
            found.pk,
        )
    if sorted(name.lower() for name in found.lists) != sorted(name.lower() for name in replaced):
        raise SyncRunConflict(
            f"the run “{name}” replaces the lists {_quoted(found.lists)}, and this call names "
            f"{_quoted(replaced)}: name the same lists in “lists” in every call of a run"
        )
    return found


def _quoted(names: list[str]) -> str:
    return ", ".join(f"“{name}”" for name in names)


def _run_remember(run: SyncRun, pairs: set[tuple[int, int]]) -> None:
    """Add (contact id, list id) pairs to the run's members, one INSERT whatever their number."""
    columns = {"run_id": "bigint", "contact_list_id": "bigint", "contact_id": "bigint"}
    _insert(
        SyncRunMember,
        columns,
        [(run.pk, list_id, contact_id) for contact_id, list_id in sorted(pairs)],
        conflict=("run_id", "contact_list_id", "contact_id"),
    )


def _run_finish(
    run: SyncRun, organisation_id: int, list_ids: list[int], contacts: dict[int, _Stored], report: SyncReport, now
) -> None:
    """The final call: the replaced lists' subscribed members that no call of the run named leave
    them, in set-wise statements whatever their number (a run may name a million), and the run ends.

    1. This call's contacts among the leavers count as updated (as in a one-call replace).
    2. The leavers' updated_at moves: the change feed (updated_since) shows them again.
    3. Their subscribed rows are deleted (opt-outs are unsubscribed rows: never touched).
    4. The run and its members are deleted.
    """
    if connection.vendor == "postgresql":
        # The run's members were written minutes ago: without fresh statistics PostgreSQL takes
        # the table for empty and reads all of the run's members again for every subscription.
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(SyncRunMember._meta.db_table)}")
    named = SyncRunMember.objects.filter(
        run_id=run.pk, contact_list_id=OuterRef("contact_list_id"), contact_id=OuterRef("contact_id")
    )
    leaving = Subscription.objects.filter(contact_list_id__in=list_ids, status=Subscription.Status.SUBSCRIBED).filter(
        ~Exists(named)
    )
    own = sorted(contacts)
    for start in range(0, len(own), CHUNK):
        for contact_id in leaving.filter(contact_id__in=own[start : start + CHUNK]).values_list(
            "contact_id", flat=True
        ):
            contacts[contact_id].lists_changed = True
    Contact.objects.filter(organisation_id=organisation_id).filter(
        Exists(leaving.filter(contact_id=OuterRef("pk")))
    ).update(updated_at=now)
    report.removed_from_lists, _ = leaving.delete()
    run.delete()


def sync_runs_discard_abandoned() -> int:
    """Runs not finished within ``SYNC_RUN_HOURS`` of their first call are abandoned: nothing is
    removed from their lists and their members are deleted. The run's row stays
    ``SYNC_RUN_MARKER_DAYS`` so that a late call of it is refused, not taken for a new run's first
    call (which would let the final call remove the members of the calls before). Called by the
    engine tick; a run whose call is being applied is skipped (its lock) until the next tick."""
    now = timezone.now()
    with transaction.atomic():
        expired = list(
            SyncRun.objects.select_for_update(skip_locked=True)
            .filter(abandoned_at=None, created_at__lte=now - timedelta(hours=SYNC_RUN_HOURS))
            .values_list("pk", flat=True)
        )
        if expired:
            SyncRunMember.objects.filter(run_id__in=expired).delete()
            SyncRun.objects.filter(pk__in=expired).update(abandoned_at=now)
    SyncRun.objects.filter(abandoned_at__lte=now - timedelta(days=SYNC_RUN_MARKER_DAYS)).delete()
    return len(expired)


def _lists_ensure(organisation_id: int, names: list[str], report: SyncReport) -> dict[str, int]:
    """{lower-cased name: id} of the named lists, creating those the organisation lacks.

    Names match case-insensitively, as staff's list form keeps them unique."""
    wanted = {name.lower(): name for name in reversed(names)}
    if not wanted:
        return {}
    found = {
        name.lower(): pk
        for pk, name in ContactList.objects.filter(organisation_id=organisation_id).values_list("pk", "name")
    }
    missing = [wanted[key] for key in wanted if key not in found]
    if missing:
        ContactList.objects.bulk_create(
            [ContactList(organisation_id=organisation_id, name=name) for name in missing], ignore_conflicts=True
        )
        report.lists_created = sorted(missing)
        found = {
            name.lower(): pk
            for pk, name in ContactList.objects.filter(organisation_id=organisation_id).values_list("pk", "name")
        }
    return {key: found[key] for key in wanted}


def _insert(model, columns: dict[str, str], rows: list[tuple], *, conflict: tuple[str, ...]) -> None:
    """INSERT … ON CONFLICT (``conflict``) DO NOTHING of ``rows``, as the import's ``_insert_new``.

    On PostgreSQL the rows travel as ONE JSON text parameter that the server unpacks
    (``json_array_elements``): Django's psycopg cursors bind on the client, where quoting ten
    10,000-element arrays value by value in Python cost more than ``json.dumps`` does in C.
    SQLite gets the import's multi-row VALUES, at most 1,000 rows per statement (SQLite takes at
    most 32,766 parameters in one)."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        for start in range(0, len(rows), 1000):
            _insert_new(model, columns, rows[start : start + 1000], conflict=conflict)
        return
    quote = connection.ops.quote_name
    values = ", ".join(f"(r->>{number})::{kind}" for number, kind in enumerate(columns.values()))
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(name) for name in columns)}) "
        f"SELECT {values} FROM json_array_elements(%s::json) AS r "
        f"ON CONFLICT ({', '.join(quote(column) for column in conflict)}) DO NOTHING"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [json.dumps(rows, default=str)])


def _contacts_select(organisation_id: int, key: str, values: list[str]) -> list[tuple]:
    found = _select(Contact, CONTACT_COLUMNS, key, values, organisation_id=organisation_id)
    return found if key != "external_id" else [row for row in found if row[1]]


def _match(organisation_id: int, rows: list[SyncRow], report: SyncReport) -> tuple[dict, dict]:
    """({row index: _Stored} of rows naming existing contacts, {row index: SyncRow} of new ones).

    A row names a contact by its external id, else by its address when that contact has no
    external id yet (a contact added by staff or a CSV import is adopted). An address that is
    another contact's is a conflict: that row is rejected and changes nothing."""
    by_external_id = {
        row[1]: _Stored.of(row)
        for row in _contacts_select(organisation_id, "external_id", [r.external_id for r in rows])
    }
    by_email = {row[2]: _Stored.of(row) for row in _contacts_select(organisation_id, "email", [r.email for r in rows])}
    matched, new = {}, {}
    for row in rows:
        stored = by_external_id.get(row.external_id) or by_email.get(row.email)
        holder = by_email.get(row.email)
        if holder is not None and holder is not stored and holder.pk != getattr(stored, "pk", None):
            reason = f"the address {row.email} belongs to the contact with external_id “{holder.external_id}”"
            if not holder.external_id:
                reason = f"the address {row.email} belongs to another contact of the organisation"
            report.rejected.append(Rejection(row.index, row.external_id, reason, conflict=True))
            continue
        if stored is not None and stored.external_id and stored.external_id != row.external_id:
            reason = f"the address {row.email} belongs to the contact with external_id “{stored.external_id}”"
            report.rejected.append(Rejection(row.index, row.external_id, reason, conflict=True))
            continue
        if stored is None:
            new[row.index] = row
            continue
        _apply(stored, row)
        matched[row.index] = stored
    return matched, new


def _apply(stored: _Stored, row: SyncRow) -> None:
    attributes = stored.attributes
    if row.attributes is not None:
        attributes = {**stored.attributes, **row.attributes}
        attributes = {name: value for name, value in attributes.items() if value is not None}
    values = (
        row.external_id,
        row.email,
        stored.first_name if row.first_name is None else row.first_name,
        stored.last_name if row.last_name is None else row.last_name,
        attributes,
    )
    if values != stored.values():
        stored.external_id, stored.email, stored.first_name, stored.last_name, stored.attributes = values
        stored.changed = True


def _contacts_insert(organisation_id: int, rows: list[SyncRow], *, source: str, now) -> dict[str, ErasedAddress]:
    """New contacts; an address erased from the organisation after it refused mail gets that
    refusal back (its status here, its list opt-outs in ``_created``). Returns those erasures."""
    if not rows:
        return {}
    erased = erased_of(organisation_id, [row.email for row in rows])
    stamp = connection.ops.adapt_datetimefield_value(now)
    columns = {
        "organisation_id": "bigint",
        "external_id": "text",
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
        (
            organisation_id,
            row.external_id,
            row.email,
            row.first_name or "",
            row.last_name or "",
            json.dumps({name: value for name, value in (row.attributes or {}).items() if value is not None}),
            erased[row.email].status if row.email in erased else Contact.Status.ACTIVE,
            source[:100],
            stamp,
            stamp,
        )
        for row in rows
    ]
    # A concurrent writer of the same address (a CSV import) wins; _created adopts its contact.
    _insert(Contact, columns, values, conflict=("organisation_id", "email"))
    return erased


def _created(
    organisation_id: int, new: dict[int, SyncRow], erased: dict[str, ErasedAddress], report: SyncReport
) -> dict[int, _Stored]:
    """The contacts just inserted, by row index; erased addresses' opt-outs restored."""
    if not new:
        return {}
    found = {
        email: _Stored(pk, external_id, email, "", "", {}, "")
        for pk, external_id, email in _select(
            Contact,
            ["id", "external_id", "email"],
            "email",
            [r.email for r in new.values()],
            organisation_id=organisation_id,
        )
    }
    created = {}
    for index, row in new.items():
        stored = found[row.email]
        if stored.external_id == row.external_id:
            report.created += 1
            stored.created = True
            stored.restored = row.email in erased
            stored.status = erased[row.email].status if stored.restored else Contact.Status.ACTIVE
        else:  # inserted meanwhile by someone else (a CSV import): adopt it as an update
            (full,) = _select(Contact, CONTACT_COLUMNS, "id", [stored.pk])
            stored = _Stored.of(full)
            _apply(stored, row)
        created[index] = stored
    if erased:
        erased_restore(erased, {email: found[email].pk for email in erased})
    return created


def _memberships_write(
    organisation_id: int,
    rows: list[SyncRow],
    contacts: dict[int, _Stored],
    lists: dict[str, int],
    replaced: list[str],
    report: SyncReport,
    now,
    *,
    run: SyncRun | None = None,
    final: bool | None = None,
) -> None:
    """Subscribe contacts to the lists their rows name (unless they refused mail), and in replace
    mode delete the subscribed rows of the replaced lists that the payload does not name; in a
    run, remember the ones it names and leave the removal to the final call."""
    wanted = {(contacts[row.index].pk, lists[name.lower()]) for row in rows for name in (row.lists or ())}
    replaced_ids = [lists[name.lower()] for name in replaced]
    # A contact created by this call has no subscriptions, unless an erasure's opt-outs came back.
    older = [stored.pk for stored in contacts.values() if not stored.created or stored.restored]
    existing = {
        (contact_id, list_id)
        for contact_id, list_id in _select(Subscription, ["contact_id", "contact_list_id"], "contact_id", older)
    }
    suppressed = {email for (email,) in _select(Suppression, ["email"], "email", [row.email for row in rows])}
    refused = {stored.pk for stored in contacts.values() if stored.status != Contact.Status.ACTIVE}
    refused |= {contacts[row.index].pk for row in rows if row.email in suppressed}
    by_pk = {stored.pk: stored for stored in contacts.values()}
    new = sorted(pair for pair in wanted - existing if pair[0] not in refused)
    stamp = connection.ops.adapt_datetimefield_value(now)
    columns = {"contact_id": "bigint", "contact_list_id": "bigint", "status": "text", "changed_at": "timestamptz"}
    _insert(
        Subscription,
        columns,
        [(c, lst, "subscribed", stamp) for c, lst in new],
        conflict=("contact_id", "contact_list_id"),
    )
    for contact_id, _ in new:
        by_pk[contact_id].lists_changed = True
    if not replaced_ids:
        return
    # Contacts of rejected rows keep their lists: a typo in one row must not take a member off.
    protected = {
        pk
        for (pk,) in _select(
            Contact,
            ["id"],
            "external_id",
            [r.external_id for r in report.rejected if r.external_id],
            organisation_id=organisation_id,
        )
    }
    if run is not None:
        named = {(contact_id, list_id) for contact_id, list_id in wanted if list_id in replaced_ids}
        _run_remember(run, named | {(pk, list_id) for pk in protected for list_id in replaced_ids})
        if final:
            _run_finish(run, organisation_id, replaced_ids, by_pk, report, now)
        return
    leaving = [
        (pk, contact_id)
        for pk, contact_id, list_id in _select(
            Subscription, ["id", "contact_id", "contact_list_id"], "contact_list_id", replaced_ids, status="subscribed"
        )
        if (contact_id, list_id) not in wanted and contact_id not in protected
    ]
    if not leaving:
        return
    outside = []
    for _, contact_id in leaving:
        if contact_id in by_pk:
            by_pk[contact_id].lists_changed = True
        else:
            outside.append(contact_id)
    for start in range(0, len(leaving), CHUNK):
        Subscription.objects.filter(pk__in=[pk for pk, _ in leaving[start : start + CHUNK]]).delete()
    report.removed_from_lists = len(leaving)
    # Their lists changed: the change feed (updated_since) shows them again.
    for start in range(0, len(outside), CHUNK):
        Contact.objects.filter(organisation_id=organisation_id, pk__in=outside[start : start + CHUNK]).update(
            updated_at=now
        )


def _contacts_update(contacts: list[_Stored], now) -> None:
    """One UPDATE of the contacts whose fields or lists changed (their updated_at moves).

    PostgreSQL joins the table to one array per column (``unnest``), as the import's insert does;
    bulk_update's CASE WHEN per row and column costs more than the rest of a sync. SQLite gets
    bulk_update."""
    changed = [stored for stored in contacts if (stored.changed or stored.lists_changed) and not stored.created]
    if not changed:
        return
    if connection.vendor != "postgresql":
        Contact.objects.bulk_update(
            [
                Contact(
                    pk=s.pk,
                    external_id=s.external_id,
                    email=s.email,
                    first_name=s.first_name,
                    last_name=s.last_name,
                    attributes=s.attributes,
                    updated_at=now,
                )
                for s in changed
            ],
            ["external_id", "email", "first_name", "last_name", "attributes", "updated_at"],
            batch_size=500,
        )
        return
    quote = connection.ops.quote_name
    sql = (
        f"UPDATE {quote(Contact._meta.db_table)} AS c SET external_id = v.external_id, email = v.email, "
        "first_name = v.first_name, last_name = v.last_name, attributes = v.attributes, updated_at = %s "
        "FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::jsonb[]) "
        "AS v(id, external_id, email, first_name, last_name, attributes) WHERE c.id = v.id"
    )
    columns = [
        [s.pk for s in changed],
        [s.external_id for s in changed],
        [s.email for s in changed],
        [s.first_name for s in changed],
        [s.last_name for s in changed],
        [json.dumps(s.attributes) for s in changed],
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, [now, *columns])


# --- erasure ------------------------------------------------------------------------------------


@dataclass
class Erasure:
    recipients: int  # campaign recipients whose address was replaced (the rows stay: figures count them)
    events: int  # events whose address, raw payload and client details were cleared
    kept_hash: bool  # the address had refused mail: its SHA-256 hash stays (ErasedAddress)


def contact_erase(*, contact: Contact) -> Erasure:
    """Erase a contact: its personal data goes, what keeps the address from being mailed again stays.

    1. When it had refused mail (unsubscribed, bounced, complained, or left a list), the address
       is kept only as a SHA-256 hash with that status and those list opt-outs (``ErasedAddress``):
       a later sync of the address into the organisation creates the contact with them again.
    2. The organisation's campaign recipients of the contact or its address keep their rows,
       statuses and counters, with the address replaced by ``erased-<id>@erased.invalid``; their
       stored messages (post_office) and single messages' merge fields are deleted, and their
       events lose the address, the raw SES payload, the diagnostic, the IP address and the user
       agent.
    3. The contact is deleted (its subscriptions with it).

    The installation-wide suppression list keeps a suppressed address as it is: it protects the
    SES account for every organisation, and is lifted only by an operator.
    Campaigns and events are reached through the contact's reverse relations: audiences does
    not import the layers above it.
    """
    organisation_id, email = contact.organisation_id, contact.email
    with transaction.atomic():
        lists_left = sorted(
            contact.subscriptions.filter(status=Subscription.Status.UNSUBSCRIBED).values_list(
                "contact_list_id", flat=True
            )
        )
        kept = contact.status != Contact.Status.ACTIVE or bool(lists_left)
        if kept:
            ErasedAddress.objects.update_or_create(
                organisation_id=organisation_id,
                email_sha256=email_hash(email),
                defaults={"status": contact.status, "lists_left": lists_left, "erased_at": timezone.now()},
            )
        recipients = _recipients_of(contact)
        events = _events_erase(recipients, organisation_id=organisation_id, email=email)
        messages = list(recipients.exclude(outbox_email=None).values_list("outbox_email_id", flat=True))
        rewritten = recipients.update(
            email=Concat(Value("erased-"), Cast("id", CharField()), Value("@erased.invalid")),
            outbox_email=None,
            merge_data=None,  # a single message's own merge fields (API)
        )
        outbox = recipients.model._meta.get_field("outbox_email").related_model
        for start in range(0, len(messages), CHUNK):
            outbox.objects.filter(pk__in=messages[start : start + CHUNK]).delete()
        contact.delete()
    return Erasure(recipients=rewritten, events=events, kept_hash=kept)


def _recipients_of(contact: Contact) -> QuerySet:
    recipient = Contact._meta.get_field("recipients").related_model
    return recipient.objects.filter(
        Q(contact=contact) | Q(campaign__organisation_id=contact.organisation_id, email=contact.email)
    )


def _events_erase(recipients: QuerySet, *, organisation_id: int, email: str) -> int:
    event = recipients.model._meta.get_field("events").related_model
    events = event.objects.filter(
        Q(recipient__in=recipients.values("pk")) | Q(campaign__organisation_id=organisation_id, email=email)
    )
    return events.update(email="", payload=None, detail="", ip_address="", user_agent="")
