"""Step 2 of an import, writing: one batch of checked rows upserted with a few set-wise SQL
statements (new contacts, changed names and attributes, list subscriptions).

Every statement is scoped by the import's organisation: an address that is already a contact of
another organisation is a new contact here (each organisation has its own name, attributes,
lists and consent for it), and the insert's ON CONFLICT target is (organisation, email)."""

from __future__ import annotations

import hashlib
import json

from django.db import connection, transaction
from django.utils import timezone

from audiences.imports.rows import ImportReport, Row
from audiences.models import Contact, ContactList, ErasedAddress, Subscription, Suppression


def batch_write(
    batch: list[Row],
    *,
    organisation_id: int,
    contact_list: ContactList | None,
    update: bool,
    source: str,
    report: ImportReport,
) -> None:
    """Upsert one batch of valid rows into the organisation's contacts with six set-wise queries,
    whatever the batch size."""
    if contact_list is not None and contact_list.organisation_id != organisation_id:
        raise ValueError("The list of an import belongs to another organisation.")
    now = timezone.now()
    emails = [row.email for row in batch]
    with transaction.atomic():
        existing = {
            email: (pk, first, last, _json(attributes))
            for email, pk, first, last, attributes in _select(
                Contact,
                ["email", "id", "first_name", "last_name", "attributes"],
                "email",
                emails,
                organisation_id=organisation_id,
            )
        }
        new = [row for row in batch if row.email not in existing]
        _contacts_insert(new, organisation_id=organisation_id, source=source[:100], now=now)
        report.created += len(new)
        changed = _changes(batch, existing, now) if update else []
        if changed:
            Contact.objects.bulk_update(changed, ["first_name", "last_name", "attributes", "updated_at"])
        report.updated += len(changed)
        report.unchanged += len(existing) - len(changed)
        if contact_list is not None:
            _subscriptions_add(
                emails, organisation_id=organisation_id, contact_list=contact_list, now=now, report=report
            )


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


def _insert_new(model, columns: dict[str, str], rows: list[tuple], *, conflict: tuple[str, ...]) -> None:
    """INSERT … ON CONFLICT (``conflict``) DO NOTHING of ``rows`` as one statement.

    bulk_create builds a model instance and prepares every value through the field classes:
    about half of the import's time. PostgreSQL gets one array per column (``unnest``, typed by
    ``columns``: column name → PostgreSQL type), SQLite a multi-row VALUES list (its C parser
    does not mind the placeholders).
    """
    if not rows:
        return
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    names = ", ".join(columns)
    on_conflict = f"ON CONFLICT ({', '.join(quote(column) for column in conflict)}) DO NOTHING"
    if connection.vendor == "postgresql":
        arrays = ", ".join(f"%s::{kind}[]" for kind in columns.values())
        sql = f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) {on_conflict}"
        params = [list(column) for column in zip(*rows, strict=True)]
    else:
        row_sql = "(" + ", ".join(["%s"] * len(columns)) + ")"
        sql = f"INSERT INTO {table} ({names}) VALUES {', '.join([row_sql] * len(rows))} {on_conflict}"
        params = [value for row in rows for value in row]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def email_hash(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


def erased_of(organisation_id: int, emails: list[str]) -> dict[str, ErasedAddress]:
    """{address: its ErasedAddress} for the addresses erased from the organisation after they
    refused mail (only their hashes are stored). The import and the API's sync both ask."""
    hashes = {email_hash(email): email for email in emails}
    ids = [
        pk for (pk,) in _select(ErasedAddress, ["id"], "email_sha256", list(hashes), organisation_id=organisation_id)
    ]
    return {hashes[entry.email_sha256]: entry for entry in ErasedAddress.objects.filter(pk__in=ids)}


def erased_restore(erased: dict[str, ErasedAddress], contact_ids: dict[str, int]) -> None:
    """Give the new contacts of erased addresses their list opt-outs back; the contact carries the
    refusal from now on, so the hash goes."""
    Subscription.objects.bulk_create(
        [
            Subscription(
                contact_id=contact_ids[email], contact_list_id=list_id, status=Subscription.Status.UNSUBSCRIBED
            )
            for email, entry in erased.items()
            for list_id in entry.lists_left
        ],
        ignore_conflicts=True,
    )
    ErasedAddress.objects.filter(pk__in=[entry.pk for entry in erased.values()]).delete()


def _contacts_insert(rows: list[Row], *, organisation_id: int, source: str, now) -> None:
    """New contacts of the organisation (status active); its existing addresses are left to ``_changes``.

    An address erased from the organisation after it refused mail (``ErasedAddress``) comes back
    with that refusal: its status, and its opt-outs of lists, so the list below is not joined."""
    erased = erased_of(organisation_id, [row.email for row in rows])
    stamp = connection.ops.adapt_datetimefield_value(now)
    columns = {
        "organisation_id": "bigint",
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
            row.email,
            row.first_name,
            row.last_name,
            json.dumps(row.attributes),
            erased[row.email].status if row.email in erased else Contact.Status.ACTIVE,
            source,
            stamp,
            stamp,
        )
        for row in rows
    ]
    # A concurrent import of the same address into the same organisation: the first one wins.
    _insert_new(Contact, columns, values, conflict=("organisation_id", "email"))
    if erased:
        contact_ids = dict(_select(Contact, ["email", "id"], "email", list(erased), organisation_id=organisation_id))
        erased_restore(erased, contact_ids)


def _subscriptions_insert(contact_ids: list[int], *, list_id: int, now) -> None:
    stamp = connection.ops.adapt_datetimefield_value(now)
    columns = {"contact_id": "bigint", "contact_list_id": "bigint", "status": "text", "changed_at": "timestamptz"}
    rows = [(contact_id, list_id, "subscribed", stamp) for contact_id in contact_ids]
    _insert_new(Subscription, columns, rows, conflict=("contact_id", "contact_list_id"))


def _changes(batch: list[Row], existing: dict, now) -> list[Contact]:
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


def _subscriptions_add(
    emails: list[str], *, organisation_id: int, contact_list: ContactList, now, report: ImportReport
) -> None:
    """Subscribe the batch's contacts to the list, except those who left it, any list, or us."""
    contacts = _select(Contact, ["id", "email", "status"], "email", emails, organisation_id=organisation_id)
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
