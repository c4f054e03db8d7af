"""Phone numbers to E.164 with libphonenumber's rules (strings or bare integers, US by default)."""

from __future__ import annotations

import functools
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
    parsed = _parse(value.strip(), default_region)
    if isinstance(parsed, str):
        raise PhoneNumberError(parsed)
    country_code, e164 = parsed
    if allowed_country_codes and country_code not in allowed_country_codes:
        allowed = ", ".join(f"+{code}" for code in allowed_country_codes)
        raise PhoneNumberError(f"must be in a supported country ({allowed})")
    return e164


# Cached: parsing is ~0.1 ms, the largest single cost of accepting a call, and the same numbers come back (a
# network's tracking numbers on every call, repeat callers). Bounded, so a flood of distinct numbers only evicts.
@functools.lru_cache(maxsize=8192)
def _parse(text: str, default_region: str) -> tuple[int, str] | str:
    """(country code, E.164) of a valid number, or why it is not one."""
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException:
        return "is not a phone number"
    if not phonenumbers.is_valid_number(parsed):
        return "is not a valid phone number"
    return int(parsed.country_code or 0), phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def is_e164(value: str) -> bool:
    """The E.164 shape alone (``+`` and up to 15 digits), as the batch API documents it."""
    return bool(_E164.match(value))
