"""The events feed: bounces, complaints, unsubscribes, deliveries and finished campaigns, in order.

Poll with ``after=<next_cursor>`` to get every item exactly once (``api.feed`` says how).
"""

from __future__ import annotations

from datetime import datetime

from django.http import HttpRequest
from ninja import Field, Query, Schema

from api.auth import Router, needs
from api.feed import FEED_TYPES, SETTLE, cursor_parse, feed_after, feed_next_cursor, feed_types_parse
from api.problems import Problem
from organisations.models import Role

router = Router(tags=["events"])


class FeedItemOut(Schema):
    cursor: str = Field(description="Pass as `after` to resume after this item.")
    type: str = Field(description=", ".join(FEED_TYPES))
    occurred_at: datetime
    data: dict = Field(
        description="email, campaign_id, campaign_name, message_id (a single message's id, else null), bounce_type, … "
        "(strings as received)"
    )


class FeedPage(Schema):
    items: list[FeedItemOut]
    next_cursor: str = Field(description="Pass as `after` in the next call; items written later follow it.")


class FeedQuery(Schema):
    after: str | None = Field(
        None, max_length=100, description="A cursor from an earlier answer; none: from the start."
    )
    types: str | None = Field(None, max_length=200, description=f"Comma-separated, of: {', '.join(FEED_TYPES)}.")
    limit: int = Field(100, ge=1, le=1000)


@router.get(
    "/events",
    response=FeedPage,
    summary="The organisation's mail events in order, resumable with a cursor",
    description=(
        "Items are ordered by when Cobalt Mail recorded them and appear "
        f"{int(SETTLE.total_seconds())} s after that (so that none is ever skipped). "
        "Poll with `after` set to the last answer's `next_cursor`: every item comes exactly once."
    ),
    url_name="events",
    openapi_extra=needs(Role.VIEWER),
)
def events(request: HttpRequest, query: Query[FeedQuery]):
    types = query.types.split(",") if query.types is not None else None
    _check(lambda: cursor_parse(query.after) if query.after else None, "after")
    _check(lambda: feed_types_parse(types), "types")
    items = feed_after(request.organisation, after=query.after, types=types, limit=query.limit)
    next_cursor = feed_next_cursor(items, after=query.after, limit=query.limit)
    return FeedPage(items=[FeedItemOut(**item.__dict__) for item in items], next_cursor=next_cursor)


def _check(parse, field: str) -> None:
    try:
        parse()
    except ValueError as error:
        raise Problem(
            422,
            f"Fix these fields and send again: {field}: {error}",
            errors=[{"field": f"query.{field}", "message": str(error)}],
        ) from None
