"""Signed per-recipient tokens for the public unsubscribe, preference and view-online pages."""

from __future__ import annotations

from django.core import signing

_SIGNER = signing.Signer(salt="cobalt_mail.recipient")


def recipient_token(recipient_id: int) -> str:
    return _SIGNER.sign(signing.b62_encode(recipient_id))


def recipient_id_from_token(token: str) -> int | None:
    """The recipient id, or None for anything tampered, truncated or malformed."""
    try:
        return signing.b62_decode(_SIGNER.unsign(token))
    except (signing.BadSignature, ValueError, TypeError):
        return None
