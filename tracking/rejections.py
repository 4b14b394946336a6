"""How many webhook requests were refused, by reason: read by /metrics (cobalt_mail/health.py).

The counts live in Django's cache, so they are per process with the default local-memory cache
(each web process counts its own refusals, from its start) and shared when the cache is shared.
A refusal must cost no database write: a flood of forged requests would otherwise become one.
"""

from __future__ import annotations

from django.core.cache import cache

# The answer's status names the reason; a fixed set, so no request can create a new label.
REASONS = {
    400: "malformed",  # not SNS JSON, a field missing, an SES record we do not understand
    403: "not_authentic",  # signature, certificate, topic or timestamp refused
    413: "too_large",
    502: "subscription_failed",  # SNS could not be reached to confirm a subscription
    503: "unavailable",  # the group commit could not store the event in time
}
_KEY = "tracking:webhook-rejections:{}"


def rejection_record(*, status: int) -> None:
    """Count one refused webhook request (a 2xx answer is not a refusal and counts nothing)."""
    reason = REASONS.get(status)
    if reason is None:
        return
    key = _KEY.format(reason)
    cache.add(key, 0, timeout=None)
    try:
        cache.incr(key)
    except ValueError:  # evicted between add and incr: start again from one
        cache.set(key, 1, timeout=None)


def rejection_counts() -> dict[str, int]:
    """{reason: refusals} for every reason, zero included."""
    found = cache.get_many([_KEY.format(reason) for reason in REASONS.values()])
    return {reason: int(found.get(_KEY.format(reason), 0)) for reason in REASONS.values()}
