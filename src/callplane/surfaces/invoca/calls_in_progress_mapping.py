"""Live calls → the Calls In Progress wire shapes (the network param table's fields, the examples' order)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers

from callplane.core.call_tracking.live import API_SOURCE, LiveCall

# Where a custom data value came from, in Invoca's words.
SOURCES = {
    "network": "Network",
    "advertiser": "Advertiser",
    "campaign": "AdvertiserCampaign",
    "promo_number": "VirtualLine",
    API_SOURCE: "CallsInProgressAPI",
    "submitted": "SignalAPI",
}
DATA_TYPE = "Short Text"  # custom data fields carry no type in callplane: every value is text

_PHONE_TYPES = {
    phonenumbers.PhoneNumberType.MOBILE: "Mobile",
    phonenumbers.PhoneNumberType.FIXED_LINE: "Landline",
    phonenumbers.PhoneNumberType.VOIP: "VoIP",
    phonenumbers.PhoneNumberType.TOLL_FREE: "Toll Free",
}


def utc_time(value: datetime | None) -> str | None:
    """`2022-12-10T13:45:00.000Z` (the examples' `*_utc` fields)."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def local_time(value: datetime | None, time_zone: str) -> str | None:
    """`2023-04-03T16:02:36-07:00`: the API user's (network's) time zone with its offset."""
    if value is None:
        return None
    return value.astimezone(_zone(time_zone)).isoformat(timespec="seconds")


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@functools.lru_cache(maxsize=4096)
def phone_type(number: str | None) -> str | None:
    """libphonenumber's type of the number (parsing costs more than the rest of rendering a call: cached)."""
    if not number or not number.startswith("+"):
        return None
    try:
        parsed = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:
        return None
    return _PHONE_TYPES.get(phonenumbers.number_type(parsed))


def source_name(source: str) -> str:
    return SOURCES.get(source, source.replace("_", " ").title().replace(" ", ""))


def current_call(call: LiveCall, time_zone: str) -> dict[str, Any]:
    """One entry of `current_calls`: the examples' fields first, then the rest of the table (alphabetical), then
    custom and demographics data. Fields callplane has no data for are null."""
    campaign, advertiser, promo = call.campaign, call.advertiser, call.promo_number
    bridge = local_time(call.bridged_at, time_zone)
    return {
        "transaction_id": call.transaction_id,
        "call_status": call.status,
        "external_unique_id": call.external_unique_id,
        "calling_phone_number": call.calling,
        "destination_phone_number": call.destination,
        "called_phone_number": call.called,
        "call_start_time_utc": utc_time(call.started_at),
        "transfer_start_time_utc": utc_time(call.transfer_started_at),
        "bridge_start_time": bridge,
        "call_record_id": call.call_record_id,
        "phone_type": phone_type(call.calling),
        "advertiser_campaign_country": None,
        "advertiser_campaign_id": campaign.id if campaign else None,
        "advertiser_campaign_id_from_network": campaign.external_id if campaign else None,
        "advertiser_campaign_name": campaign.name if campaign else None,
        "advertiser_id": advertiser.id if advertiser else None,
        "advertiser_id_from_network": advertiser.external_id if advertiser else None,
        "advertiser_name": advertiser.name if advertiser else None,
        "affiliate_campaign_id_from_network": None,
        "affiliate_commissions_ranking": None,
        "affiliate_conversion_rate_ranking": None,
        "affiliate_id": None,
        "affiliate_id_from_network": None,
        "affiliate_name": None,
        "affiliate_volume_ranking": None,
        "city": None,
        "keypress_1": None,
        "keypress_2": None,
        "keypress_3": None,
        "keypress_4": None,
        "keypresses": [],
        "media_type": promo.media_type if promo else None,
        "promo_number_description": promo.description if promo else None,
        "promo_number_id": (promo.external_id or promo.id) if promo else None,
        "qualified_regions": [],
        "region": None,
        "repeat_calling_phone_number": None,
        "source": None,
        "start_time": local_time(call.started_at, time_zone),
        "verified_zip_code": None,
        "zip_code": None,
        "custom_data": {
            name: {"value": value, "source": source_name(source)} for name, value, source in call.custom_data
        },
        "demographics_data": {},
    }


def attribution_call(call: LiveCall, time_zone: str) -> dict[str, Any]:
    """The streamlined record of `GET /calls_in_progress`: identifiers and phones, no pre-call data."""
    return {
        "transaction_id": call.transaction_id,
        "call_status": call.status,
        "external_unique_id": call.external_unique_id,
        "calling_phone_number": call.calling,
        "destination_phone_number": call.destination,
        "called_phone_number": call.called,
        "bridge_start_time": local_time(call.bridged_at, time_zone),
        "call_record_id": call.call_record_id,
        "phone_type": phone_type(call.calling),
    }


def updated_call(call: LiveCall) -> dict[str, Any]:
    """The update's `current_call` (its examples' shape: custom data as a list with source and data type)."""
    return {
        "transaction_id": call.transaction_id,
        "external_unique_id": call.external_unique_id,
        "calling_phone_number": call.calling,
        "destination_phone_number": call.destination,
        "call_start_time_utc": utc_time(call.started_at),
        "transfer_start_time_utc": utc_time(call.transfer_started_at),
        "call_status": call.status,
        "custom_data": [
            {"source": source_name(source), "name": name, "value": value, "data_type": DATA_TYPE}
            for name, value, source in call.custom_data
        ],
    }


def parse_update(body: object) -> tuple[str | None, list[tuple[str, str]], list[str]]:
    """`{"call_in_progress": {"external_unique_id", "custom_data": [{"name", "value"}]}}` → (id, data, problems)."""
    if not isinstance(body, dict) or not isinstance(body.get("call_in_progress"), dict):
        return None, [], ['the body must be {"call_in_progress": {...}}']
    update = body["call_in_progress"]
    problems: list[str] = []
    external = update.get("external_unique_id")
    if external is not None and (not isinstance(external, str | int) or not str(external).strip()):
        problems.append("external_unique_id must be a non-empty string")
        external = None
    data: list[tuple[str, str]] = []
    items = update.get("custom_data", [])
    if not isinstance(items, list):
        problems.append("custom_data must be a list of {name, value}")
        items = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or "value" not in item:
            problems.append("each custom_data entry needs a name and a value")
            continue
        value = item["value"]
        if value is None or isinstance(value, dict | list):
            problems.append(f"custom data {item['name']!r} needs a text value")
            continue
        data.append((item["name"], str(value).lower() if isinstance(value, bool) else str(value)))
    if external is None and not data and not problems:
        problems.append("nothing to update: give external_unique_id or custom_data")
    return (str(external).strip() if external is not None else None), data, problems
