"""Invoca Signal API wire format (``POST /api/2018-02-01/transactions.json``) ⇄ core signal inputs.

Problems are gathered and worded as the document's example does ("signals[1] 'name' is required",
"'name' for signals[0] and signals[2] must be unique", ...), joined with "; " into one InvalidInput.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from callplane.core.ingestion.phones import PhoneNumberError, normalize_phone
from callplane.core.ingestion.timestamps import TimestampError, parse_timestamp
from callplane.core.signals import InvalidSignalValue, parse_signal_value
from callplane.core.signals.service import Applied, AppliedSignal, CallSearch, CustomDataInput, SignalInput

MAX_SIGNALS_PER_REQUEST = 10  # "You may not include more than 10 signals in a single request."
SIGNAL_FIELDS = ("name", "partner_unique_id", "occurred_at_time", "revenue", "value")
NO_SEARCH = "transaction_id, call_record_id, or call_start_time must not be empty"
_REVENUE = re.compile(r"^\d+(\.\d{1,2})?$")


@dataclass
class SignalRequest:
    search: CallSearch
    signals: list[SignalInput] = field(default_factory=list)
    custom_data: list[CustomDataInput] = field(default_factory=list)
    call_in_progress: bool = False


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _text(value: Any) -> str | None:
    """Ids and names may come as strings or bare numbers."""
    if isinstance(value, bool) or not _present(value) or isinstance(value, dict | list):
        return None
    return str(value).strip()[:255]


def parse_signal_request(
    body: Any, *, time_zone: str, country_codes: list[int]
) -> tuple[SignalRequest | None, list[str]]:
    """The request, or None with every problem found; an empty problem list means it is well formed."""
    if not isinstance(body, dict):
        return None, ["request body must be a JSON object"]
    problems: list[str] = []
    search = _parse_search(body.get("search"), time_zone, country_codes, problems)
    signals = _parse_signals(body.get("signals"), time_zone, problems)
    custom_data = _parse_custom_data(body.get("custom_data"), problems)
    call_in_progress = False
    if body.get("call_in_progress") is not None:
        try:
            call_in_progress = parse_signal_value(body["call_in_progress"])
        except InvalidSignalValue:
            problems.append("'call_in_progress' must be true or false")
    if problems or search is None:
        return None, problems
    return SignalRequest(search, signals, custom_data, call_in_progress), []


def _parse_search(raw: Any, time_zone: str, country_codes: list[int], problems: list[str]) -> CallSearch | None:
    if raw is not None and not isinstance(raw, dict):
        problems.append("'search' must be an object")
        return None
    raw = raw or {}
    call_id = _text(raw.get("transaction_id")) or _text(raw.get("call_record_id"))
    if call_id is not None:
        # The document: with a call id, the other search fields are ignored.
        return CallSearch(call_id=call_id)
    if not _present(raw.get("call_start_time")):
        problems.append(NO_SEARCH)
        return None
    started_at = calling = duration = None
    try:
        started_at = parse_timestamp(raw["call_start_time"], time_zone=time_zone)
    except TimestampError as exc:
        problems.append(f"'call_start_time' {exc}")
    if _present(raw.get("calling_phone_number")):
        try:
            calling = normalize_phone(raw["calling_phone_number"], allowed_country_codes=country_codes)
        except PhoneNumberError:
            # Only a search key (the document's own example, 1234567890, is no valid number): a number that
            # does not normalise is kept as its digits and simply matches no call.
            calling = "+" + "".join(ch for ch in str(raw["calling_phone_number"]) if ch.isdigit())
    if _present(raw.get("duration_in_seconds")):
        try:
            duration = float(raw["duration_in_seconds"])
        except (TypeError, ValueError):
            problems.append("'duration_in_seconds' must be a number")
    return CallSearch(
        started_at=started_at,
        calling_e164=calling,
        duration_s=duration,
        advertiser_external_id=_text(raw.get("advertiser_id_from_network")),
        campaign_external_id=_text(raw.get("advertiser_campaign_id_from_network")),
        network_id=_text(raw.get("network_id")),
    )


def _parse_signals(raw: Any, time_zone: str, problems: list[str]) -> list[SignalInput]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append("'signals' must be a list")
        return []
    if len(raw) > MAX_SIGNALS_PER_REQUEST:
        problems.append(f"You may not include more than {MAX_SIGNALS_PER_REQUEST} signals in a single request")
    unsupported = sorted({key for item in raw if isinstance(item, dict) for key in item} - set(SIGNAL_FIELDS))
    if unsupported:
        problems.append(
            "The following params in 'signals' are not supported in this version: " + ", ".join(unsupported)
        )
    parsed: list[SignalInput] = []
    first_index: dict[tuple[str, str], int] = {}
    for index, item in enumerate(raw):
        signal = _parse_signal(index, item, time_zone, problems)
        if signal is None:
            continue
        key = (signal.name.casefold(), signal.partner_unique_id)
        if key in first_index:
            problems.append(f"'name' for signals[{first_index[key]}] and signals[{index}] must be unique")
            continue
        first_index[key] = index
        parsed.append(signal)
    return parsed


def _parse_signal(index: int, item: Any, time_zone: str, problems: list[str]) -> SignalInput | None:
    if not isinstance(item, dict):
        problems.append(f"signals[{index}] must be an object")
        return None
    name = _text(item.get("name"))
    if name is None:
        problems.append(f"signals[{index}] 'name' is required")
        return None
    before = len(problems)
    value = True
    try:
        value = parse_signal_value(item.get("value"))
    except InvalidSignalValue:
        problems.append(f"'value' for signals[{index}] must be true, false, 1, 0, yes or no")
    occurred_at = None
    if _present(item.get("occurred_at_time")):
        try:
            occurred_at = parse_timestamp(item["occurred_at_time"], time_zone=time_zone)
        except TimestampError as exc:
            problems.append(f"'occurred_at_time' for signals[{index}] {exc}")
    revenue = None
    if _present(item.get("revenue")):
        revenue = str(item["revenue"]).strip()
        if isinstance(item["revenue"], bool) or not _REVENUE.match(revenue):
            problems.append(f"'revenue' for signals[{index}] must be an amount with up to 2 decimal places")
    if len(problems) > before:
        return None
    return SignalInput(
        name=name,
        value=value,
        partner_unique_id=_text(item.get("partner_unique_id")) or "",
        occurred_at=occurred_at,
        revenue=revenue,
    )


def _parse_custom_data(raw: Any, problems: list[str]) -> list[CustomDataInput]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append("'custom_data' must be a list")
        return []
    parsed = []
    for index, item in enumerate(raw):
        item = item if isinstance(item, dict) else {}
        name, value = _text(item.get("name")), item.get("value")
        if name is None:
            problems.append(f"'name' for custom_data[{index}] is required")
        if not _present(value) or isinstance(value, dict | list | bool):
            problems.append(f"'value' for custom_data[{index}] is required")
        elif name is not None:
            parsed.append(CustomDataInput(name=name, value=str(value).strip()))
    return parsed


def _epoch(moment: datetime | None) -> str:
    return str(int(moment.timestamp())) if moment else ""


def _iso(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else ""


def _revenue(revenue: str | None) -> str:
    # The document answers "100.00" with "100.0" and a missing revenue with "".
    return repr(float(revenue)) if revenue else ""


def render_signal(signal: AppliedSignal) -> dict[str, Any]:
    return {
        "transaction_id": signal.id,
        "corrects_transaction_id": signal.corrects_id,
        "name": signal.name,
        "partner_unique_id": signal.partner_unique_id,
        "occurred_at_time_t": _epoch(signal.occurred_at),
        "occurred_at_time": _iso(signal.occurred_at),
        "revenue": _revenue(signal.revenue),
        "value": "true" if signal.value else "false",
    }


def render_applied(applied: Applied) -> dict[str, Any]:
    """The 200 body: each signal as stored, and the call it went to (our call id is its transaction id)."""
    return {
        "signals": [render_signal(signal) for signal in applied.signals],
        "call": {
            "transaction_id": applied.call.id,
            "corrects_transaction_id": None,
            "start_time_t": _epoch(applied.call.started_at),
            "call_start_time": _iso(applied.call.started_at),
        },
    }
