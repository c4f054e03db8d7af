"""Parse every start_time form the ingestion documents and their own examples use.

Epoch seconds (10 digits) or milliseconds (13), compressed ``YYYYMMDDHHMMSSsss`` (17, UTC), ISO 8601 with
``/`` or ``-`` dates, ``T`` or a space, optional milliseconds, an offset (``Z``, ``±hh:mm``, ``±hhmm``) and
the "Excel compatible" ``AM``/``PM`` form. A time with no offset is read in the account's time zone.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

_DIGITS = re.compile(r"^\d+$")
_CALENDAR = re.compile(
    r"""^(?P<year>\d{4})(?P<sep>[-/])(?P<month>\d{1,2})(?P=sep)(?P<day>\d{1,2})
        [T\ ]\s*(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d{1,9}))?)?
        \s*(?P<meridiem>[AaPp][Mm])?
        \s*(?P<offset>[Zz]|UTC|[+-]\d{2}(?::?\d{2})?)?$""",
    re.VERBOSE,
)


class TimestampError(ValueError):
    """The value is not a timestamp in any supported format."""


def parse_timestamp(value: object, *, time_zone: str = "UTC") -> datetime:
    """Return an aware UTC datetime, or raise TimestampError saying why."""
    if isinstance(value, bool) or value is None:
        raise TimestampError("is not a supported timestamp")
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        raise TimestampError("is not a supported timestamp")
    text = value.strip()
    if _DIGITS.match(text):
        return _parse_digits(text)
    match = _CALENDAR.match(text)
    if match is None:
        raise TimestampError("is not a supported timestamp")
    return _parse_calendar(match, time_zone)


def _parse_digits(text: str) -> datetime:
    if len(text) == 10:
        return datetime.fromtimestamp(int(text), UTC)
    if len(text) == 13:
        return datetime.fromtimestamp(int(text) / 1000, UTC).replace(microsecond=(int(text) % 1000) * 1000)
    if len(text) == 17:
        try:
            parsed = datetime.strptime(text[:14], "%Y%m%d%H%M%S")
        except ValueError as exc:
            raise TimestampError("is not a valid compressed timestamp") from exc
        return parsed.replace(microsecond=int(text[14:]) * 1000, tzinfo=UTC)
    raise TimestampError("must have 10, 13 or 17 digits when given as a number")


def _parse_calendar(match: re.Match[str], time_zone: str) -> datetime:
    hour = int(match["hour"])
    meridiem = (match["meridiem"] or "").upper()
    if meridiem and hour <= 12:
        if hour == 0 and meridiem == "PM":
            raise TimestampError("has hour 0 with PM")
        hour = (hour % 12) + (12 if meridiem == "PM" else 0)
    elif meridiem == "AM" and hour > 12:
        raise TimestampError("has an hour after 12 with AM")
    fraction = (match["fraction"] or "0")[:6].ljust(6, "0")
    try:
        local = datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            hour,
            int(match["minute"]),
            int(match["second"] or 0),
            int(fraction),
        )
    except ValueError as exc:
        raise TimestampError("is not a valid date and time") from exc
    return local.replace(tzinfo=_zone(match["offset"], time_zone)).astimezone(UTC)


def _zone(offset: str | None, time_zone: str) -> timezone | ZoneInfo:
    if offset is None:
        return ZoneInfo(time_zone)
    if offset.upper() in ("Z", "UTC"):
        return UTC
    sign = -1 if offset[0] == "-" else 1
    digits = offset[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 23 or minutes > 59:
        raise TimestampError("has an invalid UTC offset")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


_ISO_UTC = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})T(?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d{1,9}))?(?P<zone>Z|[+-]00:?00)$"
)


def parse_iso8601_utc(value: str) -> datetime:
    """Strict ``YYYY-MM-DDThh:mm:ss[.fff]Z`` (or +00:00), as the batch API requires."""
    match = _ISO_UTC.match(value)
    if match is None:
        raise TimestampError("must be an ISO 8601 UTC timestamp (YYYY-MM-DDThh:mm:ssZ)")
    fraction = (match["fraction"] or "0")[:6].ljust(6, "0")
    try:
        parsed = datetime.strptime(f"{match['date']}T{match['time']}", "%Y-%m-%dT%H:%M:%S")
    except ValueError as exc:
        raise TimestampError("is not a valid date and time") from exc
    return parsed.replace(microsecond=int(fraction), tzinfo=UTC)
