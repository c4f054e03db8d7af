"""Phone numbers to E.164 with libphonenumber's rules (strings or bare integers, US by default)."""

from __future__ import annotations

import re

import phonenumbers

_E164 = re.compile(r"^\+[1-9]\d{1,14}$")


class PhoneNumberError(ValueError):
    """The value is not a usable phone number."""


def normalize_phone(
    value: object, *, allowed_country_codes: list[int] | None = None, default_region: str = "US"
) -> str:
    """Return the E.164 form of a valid number, or raise PhoneNumberError saying why."""
    if isinstance(value, bool) or value is None:
        raise PhoneNumberError("must be a phone number")
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise PhoneNumberError("must be a phone number")
    try:
        parsed = phonenumbers.parse(value.strip(), default_region)
    except phonenumbers.NumberParseException as exc:
        raise PhoneNumberError("is not a phone number") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise PhoneNumberError("is not a valid phone number")
    if allowed_country_codes and parsed.country_code not in allowed_country_codes:
        allowed = ", ".join(f"+{code}" for code in allowed_country_codes)
        raise PhoneNumberError(f"must be in a supported country ({allowed})")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def is_e164(value: str) -> bool:
    """The E.164 shape alone (``+`` and up to 15 digits), as the batch API documents it."""
    return bool(_E164.match(value))
