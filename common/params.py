"""Row ids from query strings and forms, checked before they reach ``int()`` or the database.

``str.isdigit()`` alone lets through "²" (which ``int()`` refuses) and numbers beyond a BIGINT
(which the database refuses): either would be a 500 instead of "nothing matches".
"""

from __future__ import annotations

from collections.abc import Iterable


def id_param(value: str | None) -> int | None:
    """The id in ``value``, or None if it is not a plain positive number a primary key can hold."""
    if value and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return None


def id_params(values: Iterable[str]) -> list[int]:
    """The ids among ``values``, in order, leaving out everything that is not one."""
    return [number for number in map(id_param, values) if number is not None]
