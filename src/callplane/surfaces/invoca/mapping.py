"""Invoca Call Ingestion wire format → core CallSubmission, gathering every problem of a request."""

from __future__ import annotations

from typing import Any

from callplane.core.ingestion.phones import PhoneNumberError, normalize_phone
from callplane.core.ingestion.schemas import CallSubmission, SubmittedCustomData, SubmittedSignal, extras_problem
from callplane.core.ingestion.timestamps import TimestampError, parse_timestamp
from callplane.core.ingestion.urls import is_http_url
from callplane.core.signals import InvalidSignalValue, parse_signal_value

REQUIRED_CALL_FIELDS = (
    "external_call_unique_id",
    "start_time",
    "destination_phone_number",
    "calling_phone_number",
    "advertiser_campaign_id_from_network",
    "call_direction",
)
KNOWN_CALL_FIELDS = {
    *REQUIRED_CALL_FIELDS,
    "recording_url",
    "recording_filename",
    "language_code",
    "recording_auth_config_id",
}


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _identifier(value: Any) -> str | None:
    """Ids may come as strings or bare integers (the document's examples send both)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip() and len(value.strip()) <= 255:
        return value.strip()
    return None


def parse_call_request(
    body: Any, *, time_zone: str, country_codes: list[int]
) -> tuple[CallSubmission | None, list[str]]:
    problems: list[str] = []
    if not isinstance(body, dict) or not isinstance(body.get("call"), dict) or not body["call"]:
        return None, ["'call' is required"]
    call: dict[str, Any] = body["call"]
    for name in REQUIRED_CALL_FIELDS:
        if not _present(call.get(name)):
            problems.append(f"'{name}' is required")
    submission = CallSubmission(external_id=None)

    if _present(call.get("external_call_unique_id")):
        submission.external_id = _identifier(call["external_call_unique_id"])
        if submission.external_id is None:
            problems.append("'external_call_unique_id' must be a string or integer of at most 255 characters")
    if _present(call.get("start_time")):
        try:
            submission.started_at = parse_timestamp(call["start_time"], time_zone=time_zone)
        except TimestampError as exc:
            problems.append(f"'start_time' {exc}")
    for field_name, attribute in (
        ("destination_phone_number", "to_e164"),
        ("calling_phone_number", "from_e164"),
    ):
        if _present(call.get(field_name)):
            try:
                setattr(
                    submission,
                    attribute,
                    normalize_phone(call[field_name], allowed_country_codes=country_codes),
                )
            except PhoneNumberError as exc:
                problems.append(f"'{field_name}' {exc}")
    if _present(call.get("advertiser_campaign_id_from_network")):
        submission.campaign_external_id = _identifier(call["advertiser_campaign_id_from_network"])
        if submission.campaign_external_id is None:
            problems.append("'advertiser_campaign_id_from_network' must be a string or integer")
    if _present(call.get("call_direction")):
        direction = str(call["call_direction"]).strip().casefold()
        if direction not in ("inbound", "outbound"):
            problems.append("'call_direction' must be inbound or outbound")
        else:
            submission.direction = direction
            submission.contact_e164 = submission.from_e164 if direction == "inbound" else submission.to_e164

    _parse_recording(call, submission, problems)
    if _present(call.get("language_code")):
        submission.language_code = str(call["language_code"]).strip()
    if _present(call.get("recording_auth_config_id")):
        submission.recording_auth_config_id = _identifier(call["recording_auth_config_id"])

    # Signals and custom data may sit beside "call" (as documented) or inside it.
    signals = body.get("signals", call.get("signals"))
    custom_data = body.get("custom_data", call.get("custom_data"))
    submission.signals = _parse_signals(signals, problems)
    submission.custom_data = _parse_custom_data(custom_data, problems)
    submission.extras = {
        key: value for key, value in call.items() if key not in KNOWN_CALL_FIELDS | {"signals", "custom_data"}
    }
    if problem := extras_problem(submission.extras):
        problems.append(f"'call' {problem}")
    return submission, problems


def _parse_recording(call: dict[str, Any], submission: CallSubmission, problems: list[str]) -> None:
    url, filename = call.get("recording_url"), call.get("recording_filename")
    if _present(url) and _present(filename):
        problems.append("provide either 'recording_url' or 'recording_filename', not both")
        return
    if _present(url):
        if not isinstance(url, str) or not is_http_url(url.strip()):
            problems.append("'recording_url' must be an http or https URL")
        else:
            submission.recording_url = url.strip()
    elif _present(filename):
        if not isinstance(filename, str):
            problems.append("'recording_filename' must be a string")
        else:
            submission.recording_filename = filename.strip()
    elif submission.external_id is not None:
        # The document: a recording named exactly like the call's external id may be omitted.
        submission.recording_filename = submission.external_id


def _parse_signals(signals: Any, problems: list[str]) -> list[SubmittedSignal]:
    if signals is None:
        return []
    if not isinstance(signals, list):
        problems.append("'signals' must be a list")
        return []
    parsed = []
    for index, item in enumerate(signals):
        if not isinstance(item, dict) or not _present(item.get("name")) or not isinstance(item["name"], str):
            problems.append(f"'signals[{index}].name' is required")
            continue
        try:
            value = parse_signal_value(item.get("value"))
        except InvalidSignalValue:
            problems.append(f"'signals[{index}].value' must be true, false, 1, 0, yes or no")
            continue
        parsed.append(SubmittedSignal(name=item["name"].strip(), value=value))
    return parsed


def _parse_custom_data(custom_data: Any, problems: list[str]) -> list[SubmittedCustomData]:
    if custom_data is None:
        return []
    if not isinstance(custom_data, list):
        problems.append("'custom_data' must be a list")
        return []
    parsed = []
    for index, item in enumerate(custom_data):
        if not isinstance(item, dict) or not _present(item.get("name")) or not isinstance(item["name"], str):
            problems.append(f"'custom_data[{index}].name' is required")
            continue
        value = item.get("value")
        if not _present(value) or isinstance(value, dict | list):
            problems.append(f"'custom_data[{index}].value' is required")
            continue
        parsed.append(SubmittedCustomData(name=item["name"].strip(), value=str(value)))
    return parsed
