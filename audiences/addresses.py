"""Email addresses as SES can send to them: the one check behind imports, forms and commands."""

from __future__ import annotations

import re
from typing import NamedTuple

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

EMAIL_MAX_LENGTH = 254


class CheckedEmail(NamedTuple):  # a tuple: built once per imported row, cheaper than a dataclass
    email: str  # normalised: lower case, domain in punycode
    rewritten: bool  # the text was "Name <address>" or "<address>", reduced to the address


# Why an address is refused, in the words shown per rejected import row and under the form field.
EMAIL_MISSING = "missing email"
EMAIL_TOO_LONG = f"email longer than {EMAIL_MAX_LENGTH} characters"
EMAIL_SEVERAL = "more than one address in the cell"
EMAIL_INVALID = "invalid email address"
EMAIL_NON_ASCII_LOCAL = "SES cannot send to addresses with non-ASCII characters before the @ (such as é or ü)"
EMAIL_NO_DOT = "no dot in the domain “{domain}”: SES only sends to internet domains, such as example.org"
EMAIL_BAD_DOMAIN = "the domain “{domain}” is not a valid internet domain"
# "Ann Smith <ann@example.org>", "<ann@example.org>", '"Smith, Ann" <ann@example.org>'.
NAMED_ADDRESS = re.compile(r"^[^<>]*<([^<>]*)>$")


def email_check(raw: str) -> CheckedEmail:
    """The address SES can send to, or ValidationError whose message says why not.

    The one check behind imports, the contact and suppression forms and import_contacts. SES
    has no SMTPUTF8, so the part before the @ must be ASCII; internationalised domains are
    converted to punycode (IDNA), which SES accepts. A domain without a dot ("localhost") is no
    internet address. Django's validate_email alone accepts both. ASCII addresses, nearly all of
    a large import, take the short path without the IDNA codec.
    """
    text = (raw or "").strip()
    if not text:
        raise ValidationError(EMAIL_MISSING, code="missing")
    if len(text) > 4 * EMAIL_MAX_LENGTH:
        raise ValidationError(EMAIL_TOO_LONG, code="too_long")
    rewritten = False
    if "<" in text or ">" in text:
        named = NAMED_ADDRESS.match(text)
        if named is None:
            raise ValidationError(EMAIL_INVALID, code="invalid")
        text, rewritten = named.group(1).strip(), True
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise ValidationError(EMAIL_INVALID, code="invalid")
    if "@" in local and any(separator in text for separator in ",; "):
        raise ValidationError(EMAIL_SEVERAL, code="several")
    if not local.isascii():
        raise ValidationError(EMAIL_NON_ASCII_LOCAL, code="non_ascii_local")
    if not domain.isascii():
        domain = _domain_ascii(domain)
    email = f"{local}@{domain}".lower()
    if len(email) > EMAIL_MAX_LENGTH:
        raise ValidationError(EMAIL_TOO_LONG, code="too_long")
    if "." not in domain.strip("."):
        raise ValidationError(EMAIL_NO_DOT.format(domain=domain[:100]), code="no_dot")
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError(EMAIL_INVALID, code="invalid") from None
    return CheckedEmail(email=email, rewritten=rewritten)


def _domain_ascii(domain: str) -> str:
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValidationError(EMAIL_BAD_DOMAIN.format(domain=domain[:100]), code="bad_domain") from None


def email_clean(raw: str) -> str:
    """The normalised address for a form field, or ValidationError worded as a sentence."""
    text = (raw or "").strip()
    if not text:
        raise ValidationError("Enter an email address.", code="missing")
    try:
        return email_check(text).email
    except ValidationError as error:
        shown = text[:100]
        if error.code == "invalid":
            raise ValidationError(f"“{shown}” is not a valid email address.", code=error.code) from None
        if error.code == "too_long":
            raise ValidationError(
                f"The address is longer than {EMAIL_MAX_LENGTH} characters.", code=error.code
            ) from None
        raise ValidationError(f"“{shown}” cannot be used: {error.messages[0]}.", code=error.code) from None
