"""Signed per-recipient tokens for the public pages: one token per page, each with its own salt.

The view-online link is the one people forward and post publicly, so a token opens one page only:

- **unsubscribe** (``/u/<token>/``, also the ``List-Unsubscribe`` header): dated, valid for
  ``UNSUBSCRIBE_TOKEN_DAYS`` (365) after sending; RFC 8058 expects at least 60 days.
- **preferences** (``/u/<token>/preferences/``): dated, same validity; shows the address and
  changes the lists, so it is never derived from the others.
- **view online** (``/m/<token>/``): no expiry (it is the email's web copy); it shows the email
  with its unsubscribe and preference links made inert, and grants nothing else.

A token of one purpose never unsigns with another's salt. Links sent before this scheme carry one
token for all three pages (``recipient_token``, salt ``cobalt_mail.recipient``, undated): such a
*legacy* token still unsubscribes (within ``UNSUBSCRIBE_TOKEN_DAYS`` of the recipient's sending,
checked by ``campaigns.unsubscribe``) and still opens the view-online page, but no longer opens
preferences, because the same token sits in every view-online link that was ever forwarded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from functools import lru_cache

from django.conf import settings
from django.core import signing


class LinkPurpose(StrEnum):
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"
    VIEW_ONLINE = "view_online"


# Links sent before one token per purpose: read for backwards compatibility only.
_LEGACY_SIGNER = signing.Signer(salt="cobalt_mail.recipient")
_DATED = frozenset({LinkPurpose.UNSUBSCRIBE, LinkPurpose.PREFERENCES})
# Purposes a legacy token is still good for (see the module docstring).
_LEGACY_PURPOSES = frozenset({LinkPurpose.UNSUBSCRIBE, LinkPurpose.VIEW_ONLINE})


class LinkExpired(Exception):
    """A genuine token past its validity: the page says so instead of "not valid"."""


@dataclass(frozen=True)
class LinkToken:
    recipient_id: int
    legacy: bool = False  # minted by the single-token scheme: the caller checks the sending date


def _signer(purpose: LinkPurpose) -> signing.Signer:
    # Keyed by the key so that a changed SECRET_KEY (tests, rotation) never signs with the old one.
    return _signer_for(purpose, settings.SECRET_KEY, tuple(settings.SECRET_KEY_FALLBACKS))


@lru_cache(maxsize=16)
def _signer_for(purpose: LinkPurpose, key: str, fallback_keys: tuple[str, ...]) -> signing.Signer:
    # Made once: the engine mints three tokens per message, and building a Signer reads settings.
    options = {"key": key, "fallback_keys": list(fallback_keys), "salt": f"cobalt_mail.link.{purpose.value}"}
    return signing.TimestampSigner(**options) if purpose in _DATED else signing.Signer(**options)


def link_max_age() -> timedelta:
    return timedelta(days=settings.UNSUBSCRIBE_TOKEN_DAYS)


def link_token(*, recipient_id: int, purpose: LinkPurpose) -> str:
    """The token of one recipient's ``purpose`` link (dated now, for the dated purposes)."""
    return _signer(purpose).sign(signing.b62_encode(recipient_id))


def link_token_read(token: str, *, purpose: LinkPurpose) -> LinkToken | None:
    """The recipient behind a ``purpose`` token; None for anything tampered, truncated, malformed or
    minted for another purpose. Raises ``LinkExpired`` for a genuine token past its validity."""
    signer = _signer(purpose)
    try:
        value = signer.unsign(token, max_age=link_max_age()) if purpose in _DATED else signer.unsign(token)
        return LinkToken(recipient_id=signing.b62_decode(value))
    except signing.SignatureExpired:
        raise LinkExpired(token) from None
    except (signing.BadSignature, ValueError, TypeError):
        pass
    if purpose in _LEGACY_PURPOSES:
        recipient_id = recipient_id_from_token(token)
        if recipient_id is not None:
            return LinkToken(recipient_id=recipient_id, legacy=True)
    return None


def recipient_token(recipient_id: int) -> str:
    """The single token of the old scheme. Nothing puts it in a link any more; links already sent
    with it still unsubscribe and open the view-online page (``link_token_read``)."""
    return _LEGACY_SIGNER.sign(signing.b62_encode(recipient_id))


def recipient_id_from_token(token: str) -> int | None:
    """The recipient id of a legacy token, or None for anything tampered, truncated or malformed."""
    try:
        return signing.b62_decode(_LEGACY_SIGNER.unsign(token))
    except (signing.BadSignature, ValueError, TypeError):
        return None
