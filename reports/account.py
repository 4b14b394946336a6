"""The SES account as the pages show it: the 24-hour quota and the send rate in force.

One reading of each, used by the reports' account-health panel and by the Settings page.

The local SES (moto, started by ``make run`` and the tests) counts every message twice in
``SentLast24Hours``: its ``send_raw_email`` (also behind SESv2 ``SendEmail``) adds the addresses of
the message's To/Cc/Bcc headers to the destinations the call names, and counts them all. Cobalt
Mail names each message's recipients as its destinations and puts the same address in its To
header, so every message is counted once for each. Real SES counts the destinations only (the
headers are not used when destinations are given), so the engine is not at fault: the count is
halved here when the endpoint is the local SES. moto's figure also never expires (it counts since
the server started), and its limits (200 a day, 1 msg/s) are not enforced.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import requests
from django.conf import settings

from campaigns.delivery import ratelimit

QUOTA_CACHE_SECONDS = 60
_quota_cache: dict[str, tuple[float, SendQuota | None]] = {}
_local_ses: dict[str, bool] = {}


@dataclass(frozen=True)
class SendQuota:
    max_24h: float
    sent_24h: int  # messages, corrected for the local SES's double count
    reported_24h: float  # SentLast24Hours as SES answered it
    max_rate: float  # SES's MaxSendRate
    local: bool  # the local SES: counts corrected, limits not enforced

    @property
    def used(self) -> float | None:
        return self.sent_24h / self.max_24h if self.max_24h else None

    @property
    def warning(self) -> bool:
        """Shown in red: 90% of a real quota used (SES refuses mail past 100%)."""
        return not self.local and (self.used or 0) >= 0.9

    @property
    def note(self) -> str:
        if self.local:
            return (
                "Local SES (for trying Cobalt Mail out): counted since it started; it does not enforce"
                " its limit of 200 a day."
            )
        if self.used is not None and self.used >= 1:
            return "The daily quota is used up: SES refuses mail until the 24-hour count falls. Ask AWS for more."
        return ""


@dataclass(frozen=True)
class SendRate:
    """The rate the engine sends at (campaigns.delivery.ratelimit.send_rate), and where it comes from."""

    rate: float
    source: str
    ses_max_rate: float | None
    local: bool

    @property
    def text(self) -> str:
        if self.local:
            ses = " The local SES does not limit the rate."
        elif self.ses_max_rate is not None:
            ses = f" SES allows {_rate(self.ses_max_rate)} msg/s."
        else:
            ses = ""
        return f"{_rate(self.rate)} msg/s, from {self.source}.{ses}"

    @property
    def warning(self) -> str:
        if self.local or self.ses_max_rate is None or self.rate <= self.ses_max_rate:
            return ""
        return (
            "SEND_RATE is above what SES allows: SES will refuse some messages (they are retried)."
            " Lower SEND_RATE or ask AWS for a higher sending rate."
        )


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}".rstrip("0")


def is_local_ses(endpoint: str | None) -> bool:
    """Whether ``endpoint`` is a moto server (it answers moto's own API); remembered per endpoint."""
    if not endpoint:
        return False
    if endpoint not in _local_ses:
        try:
            answer = requests.get(f"{endpoint.rstrip('/')}/moto-api/config", timeout=2)
        except requests.RequestException:
            return False  # not remembered: SES may just be down for now
        _local_ses[endpoint] = answer.ok and answer.headers.get("Content-Type", "").startswith("application/json")
    return _local_ses[endpoint]


def send_quota() -> SendQuota | None:
    """SES GetSendQuota, true figures, cached for a minute; None when SES cannot be reached."""
    endpoint = settings.AWS_SES_REGION_ENDPOINT_URL or ""
    cached = _quota_cache.get(endpoint)
    if cached and time.monotonic() - cached[0] < QUOTA_CACHE_SECONDS:
        return cached[1]
    answer = ratelimit.ses_send_quota()  # None is shown as "not reachable": the pages must still load
    result = None
    if answer is not None:
        local = is_local_ses(endpoint)
        reported = answer["SentLast24Hours"]
        result = SendQuota(
            max_24h=answer["Max24HourSend"],
            sent_24h=round(reported / 2) if local else round(reported),
            reported_24h=reported,
            max_rate=answer["MaxSendRate"],
            local=local,
        )
    _quota_cache[endpoint] = (time.monotonic(), result)
    return result


def send_rate() -> SendRate:
    """The send rate in force: the engine's own answer (``ratelimit.send_rate``) and its source."""
    quota = send_quota()
    rate = ratelimit.send_rate()
    if settings.SEND_RATE:
        source = "the SEND_RATE setting"
    elif quota is None:
        source = "a safe default while SES does not answer (SEND_RATE is not set)"
    else:
        source = "SES's MaxSendRate (SEND_RATE is not set)"
    return SendRate(
        rate=rate,
        source=source,
        ses_max_rate=quota.max_rate if quota else None,
        local=bool(quota and quota.local),
    )


def cache_clear() -> None:
    """Forget cached readings (tests, after the local SES was reset)."""
    _quota_cache.clear()
    _local_ses.clear()
