"""The audit log's table (rendered by templates/tables/bulma.html)."""

from __future__ import annotations

import django_tables2 as tables

from organisations.models import AuditEntry

TABLE_ATTRS = {"class": "table is-fullwidth is-hoverable is-narrow is-striped"}


class AuditTable(tables.Table):
    created_at = tables.DateTimeColumn(verbose_name="When", format="j M Y H:i:s")
    username = tables.Column("Who", empty_values=())
    action = tables.Column("What")
    summary = tables.Column("Details", orderable=False)
    rows = tables.Column("Rows", orderable=False)
    remote_address = tables.Column("From address", orderable=False)

    class Meta:
        model = AuditEntry
        fields = ("created_at", "username", "action", "summary", "rows", "remote_address")
        attrs = TABLE_ATTRS
        empty_text = "Nothing recorded that matches."
        order_by = ("-created_at",)

    def render_username(self, value: str) -> str:
        return value or "(system)"

    def render_action(self, record: AuditEntry) -> str:
        return record.get_action_display()

    def order_created_at(self, queryset, is_descending: bool):
        """Through the (organisation, created_at, id) index, ties broken by id."""
        if is_descending:
            return queryset.order_by("-created_at", "-id"), True
        return queryset.order_by("created_at", "id"), True
