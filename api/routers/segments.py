"""Segments: list them, and count the contacts each matches now."""

from __future__ import annotations

from datetime import datetime

from django.http import HttpRequest
from ninja import Schema

from api.auth import Router, needs
from audiences import selectors
from audiences.models import Segment
from audiences.segments import rules_filter
from organisations.models import Role
from organisations.scope import get_or_404

router = Router(tags=["segments"])


class SegmentOut(Schema):
    id: int
    name: str
    match: str
    rules: list
    created_at: datetime
    updated_at: datetime


class SegmentCount(Schema):
    id: int
    name: str
    count: int


@router.get(
    "/segments",
    response=list[SegmentOut],
    summary="The organisation's segments",
    url_name="segments",
    openapi_extra=needs(Role.VIEWER),
)
def segments(request: HttpRequest):
    rows = selectors.segments_of(request.organisation).order_by("name", "pk")
    return [
        SegmentOut(
            id=segment.pk,
            name=segment.name,
            match=segment.match,
            rules=segment.rules or [],
            created_at=segment.created_at,
            updated_at=segment.updated_at,
        )
        for segment in rows
    ]


@router.get(
    "/segments/{segment_id}/count",
    response=SegmentCount,
    summary="How many contacts the segment matches now",
    url_name="segment_count",
    openapi_extra=needs(Role.VIEWER),
)
def segment_count(request: HttpRequest, segment_id: int):
    """The count the segment's page shows: the organisation's contacts matching its rules
    (0 for a segment without rules, which matches nobody)."""
    segment = get_or_404(request, Segment, pk=segment_id)
    count = 0
    if segment.rules:
        organisation = request.organisation
        rules = rules_filter(segment.rules, match=segment.match, organisation=organisation)
        count = selectors.contacts_of(organisation).filter(rules).count()
    return SegmentCount(id=segment.pk, name=segment.name, count=count)
