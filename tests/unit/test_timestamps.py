"""The timestamp parser: every documented form, and properties over generated instants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callplane.core.ingestion.timestamps import TimestampError, parse_iso8601_utc, parse_timestamp

instants = st.datetimes(min_value=datetime(2001, 9, 10), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)).map(
    lambda d: d.replace(microsecond=(d.microsecond // 1000) * 1000)
)
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
zones = st.sampled_from(["UTC", "America/Los_Angeles", "Europe/London", "Europe/Madrid", "Asia/Kolkata"])


@given(instants)
def test_epoch_seconds_and_milliseconds(instant: datetime) -> None:
    seconds = int(instant.timestamp())
    assert parse_timestamp(str(seconds)) == instant.replace(microsecond=0)
    assert parse_timestamp(seconds) == instant.replace(microsecond=0)
    assert parse_timestamp(str(seconds * 1000 + instant.microsecond // 1000)) == instant


@given(instants)
def test_compressed_is_utc(instant: datetime) -> None:
    text = instant.strftime("%Y%m%d%H%M%S") + f"{instant.microsecond // 1000:03d}"
    assert parse_timestamp(text, time_zone="Asia/Kolkata") == instant


@given(instants, offsets, st.sampled_from(["/", "-"]), st.sampled_from(["T", " "]), st.booleans(), st.booleans())
def test_iso_with_offsets(
    instant: datetime, offset: timezone, separator: str, t: str, millis: bool, colon: bool
) -> None:
    local = instant.astimezone(offset)
    text = local.strftime(f"%Y{separator}%m{separator}%d{t}%H:%M:%S")
    if millis:
        text += f".{local.microsecond // 1000:03d}"
    minutes = int(offset.utcoffset(None).total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    text += f"{sign}{abs(minutes) // 60:02d}{':' if colon else ''}{abs(minutes) % 60:02d}"
    expected = instant if millis else instant.replace(microsecond=0)
    assert parse_timestamp(text, time_zone="Asia/Kolkata") == expected


@given(instants, zones, st.booleans())
def test_excel_form_in_the_account_time_zone(instant: datetime, zone: str, twelve_hour: bool) -> None:
    local = instant.astimezone(ZoneInfo(zone))
    if twelve_hour:
        text = local.strftime("%Y/%m/%d %I:%M:%S %p")
    else:
        text = local.strftime("%Y/%m/%d %H:%M:%S ") + ("PM" if local.hour >= 12 else "AM")
    parsed = parse_timestamp(text, time_zone=zone)
    # Wall-clock times repeat across a DST fall-back; the parse must be one of the two instants.
    assert parsed.astimezone(ZoneInfo(zone)).replace(tzinfo=None) == local.replace(tzinfo=None, microsecond=0)


@given(st.text(max_size=40))
def test_garbage_raises_timestamp_error_only(text: str) -> None:
    try:
        result = parse_timestamp(text)
    except TimestampError:
        return
    assert result.tzinfo is not None


@pytest.mark.parametrize(
    "text",
    [
        "2016/13/11 10:00:00",
        "2016/04/31 10:00:00",
        "2016/04/11 25:00:00",
        "2016/04/11 13:00:00 AM",
        "12345",
        "2016/04/11",
        "2016/04/11T10:00:00+25:00",
        "",
        "   ",
        "2016-04-11T10:00:00 PST",
    ],
)
def test_rejected(text: str) -> None:
    with pytest.raises(TimestampError):
        parse_timestamp(text)


@pytest.mark.parametrize("value", [None, True, 1.5, [], {}])
def test_rejected_types(value: object) -> None:
    with pytest.raises(TimestampError):
        parse_timestamp(value)


def test_twelve_am_is_midnight() -> None:
    assert parse_timestamp("2016/04/11 12:30:00 AM").hour == 0
    assert parse_timestamp("2016/04/11 12:30:00 PM").hour == 12


@given(instants)
def test_batch_iso_utc_round_trip(instant: datetime) -> None:
    assert parse_iso8601_utc(instant.strftime("%Y-%m-%dT%H:%M:%SZ")) == instant.replace(microsecond=0)
    assert parse_iso8601_utc(instant.strftime("%Y-%m-%dT%H:%M:%S.") + f"{instant.microsecond // 1000:03d}Z") == instant


@pytest.mark.parametrize(
    "text", ["2023-01-01T10:00:00", "2023-01-01T10:00:00+01:00", "2023-01-01 10:00:00Z", "2023-02-30T10:00:00Z"]
)
def test_batch_iso_rejects_non_utc(text: str) -> None:
    with pytest.raises(TimestampError):
        parse_iso8601_utc(text)
