"""django-tables2 helpers shared by the apps."""

from __future__ import annotations

from types import SimpleNamespace

from django_tables2 import RequestConfig
from django_tables2.paginators import LazyPaginator


def table_paginate(request, table, *, per_page: int, lazy: bool = True) -> None:
    """Sort and page ``table`` from the request (``?sort=``, ``?page=``) at our page size.

    django-tables2 would take the size from ``?per_page=`` too: a million rows on one page, or a
    500 for -1. ``lazy``: no COUNT(*), LazyPaginator fetches one row more than a page instead.
    """
    options = {"per_page": per_page, **({"paginator_class": LazyPaginator} if lazy else {})}
    query = request.GET.copy()
    query.pop(table.prefixed_per_page_field, None)
    RequestConfig(SimpleNamespace(GET=query), paginate=options).configure(table)
