"""Zipteams batch wire format → core CallSubmissions, with class-validator style errors per field path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from callplane.core.ingestion.phones import is_e164
from callplane.core.ingestion.schemas import CallSubmission, SubmittedCustomData, extras_problem
from callplane.core.ingestion.timestamps import TimestampError, parse_iso8601_utc
from callplane.core.ingestion.urls import is_http_url

MAX_CALLS = 50
MAX_METADATA_KEYS = 5
MAX_CUSTOM_FIELDS = 10
MAX_NAME_LENGTH = 255
KNOWN_ITEM_FIELDS = {"call", "agent", "customer", "callback_url", "metadata", "custom_fields"}


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class _Collector:
    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def add(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _string(errors: _Collector, container: dict[str, Any], path: str, name: str, *, required: bool) -> str | None:
    value = container.get(name)
    if _is_blank(value):
        if required:
            errors.add(f"{path}.{name}", f"{name} should not be empty")
        return None
    if not isinstance(value, str):
        errors.add(f"{path}.{name}", f"{name} must be a string")
        return None
    return value


def _url(errors: _Collector, value: str, path: str, name: str, *, https_only: bool) -> str | None:
    if not is_http_url(value.strip()):
        errors.add(path, f"{name} must be a URL address")
        return None
    if https_only and urlsplit(value.strip()).scheme != "https":
        errors.add(path, f"{name} must start with https://")
        return None
    return value.strip()


def _email(errors: _Collector, value: str | None, path: str) -> None:
    if value is None:
        return
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        errors.add(path, "email must be an email")


def _max_length(errors: _Collector, value: str | None, path: str, name: str) -> None:
    if value is not None and len(value) > MAX_NAME_LENGTH:
        errors.add(path, f"{name} must be shorter than or equal to {MAX_NAME_LENGTH} characters")


def parse_batch(body: Any) -> tuple[list[CallSubmission], list[FieldError]]:
    errors = _Collector()
    if not isinstance(body, dict) or "data" not in body or body["data"] is None:
        errors.add("data", "data should not be empty")
        return [], errors.errors
    data = body["data"]
    if not isinstance(data, list):
        errors.add("data", "data must be an array")
        return [], errors.errors
    if len(data) < 1:
        errors.add("data", "data must contain at least 1 elements")
        return [], errors.errors
    if len(data) > MAX_CALLS:
        errors.add("data", f"data must contain no more than {MAX_CALLS} elements")
        return [], errors.errors
    submissions = []
    for index, item in enumerate(data):
        submission = _parse_item(errors, item, f"data[{index}]")
        if submission is not None:
            submissions.append(submission)
    return submissions, errors.errors


def _parse_item(errors: _Collector, item: Any, path: str) -> CallSubmission | None:
    if not isinstance(item, dict):
        errors.add(path, "each value in data must be an object")
        return None
    before = len(errors.errors)
    submission = CallSubmission(external_id=None)
    _parse_call(errors, item.get("call"), f"{path}.call", submission)
    submission.agent = _parse_person(errors, item.get("agent"), f"{path}.agent", "agent")
    submission.customer = _parse_person(errors, item.get("customer"), f"{path}.customer", "customer")
    callback = item.get("callback_url")
    if not _is_blank(callback):
        if not isinstance(callback, str):
            errors.add(f"{path}.callback_url", "callback_url must be a URL address")
        else:
            submission.callback_url = _url(errors, callback, f"{path}.callback_url", "callback_url", https_only=True)
    submission.metadata = _parse_metadata(errors, item.get("metadata"), f"{path}.metadata")
    submission.custom_data = _parse_custom_fields(errors, item.get("custom_fields"), f"{path}.custom_fields")
    submission.extras = {key: value for key, value in item.items() if key not in KNOWN_ITEM_FIELDS}
    if problem := extras_problem(submission.extras):
        errors.add(path, problem)
    return submission if len(errors.errors) == before else None


def _parse_call(errors: _Collector, call: Any, path: str, submission: CallSubmission) -> None:
    if not isinstance(call, dict):
        errors.add(path, "call should not be empty" if call is None else "call must be an object")
        return
    submission.external_id = _string(errors, call, path, "id", required=True)
    if submission.external_id is not None and len(submission.external_id) > MAX_NAME_LENGTH:
        errors.add(f"{path}.id", f"id must be shorter than or equal to {MAX_NAME_LENGTH} characters")
    recording_url = _string(errors, call, path, "recording_url", required=True)
    if recording_url is not None:
        submission.recording_url = _url(
            errors, recording_url, f"{path}.recording_url", "recording_url", https_only=False
        )
    for name, attribute in (("start_time", "started_at"), ("end_time", "ended_at")):
        text = _string(errors, call, path, name, required=True)
        if text is not None:
            try:
                setattr(submission, attribute, parse_iso8601_utc(text.strip()))
            except TimestampError:
                errors.add(
                    f"{path}.{name}",
                    f"{name} must be a valid ISO 8601 date string in UTC (YYYY-MM-DDThh:mm:ssZ)",
                )
    if submission.started_at and submission.ended_at and submission.ended_at <= submission.started_at:
        errors.add(f"{path}.end_time", "end_time must be after start_time")
    contact = _string(errors, call, path, "contact_number", required=True)
    if contact is not None:
        if not is_e164(contact.strip()):
            errors.add(f"{path}.contact_number", "contact_number must be a valid phone number in E.164 format")
        else:
            submission.contact_e164 = contact.strip()


def _parse_person(errors: _Collector, person: Any, path: str, name: str) -> dict[str, Any]:
    if person is None:
        return {}
    if not isinstance(person, dict):
        errors.add(path, f"{name} must be an object")
        return {}
    _string(errors, person, path, "id", required=True)
    email = _string(errors, person, path, "email", required=False)
    _email(errors, email, f"{path}.email")
    full_name = _string(errors, person, path, "name", required=False)
    _max_length(errors, full_name, f"{path}.name", "name")
    if "disposition_status" in person:
        _string(errors, person, path, "disposition_status", required=False)
    return dict(person)


def _parse_metadata(errors: _Collector, metadata: Any, path: str) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        errors.add(path, "metadata must be an object")
        return {}
    if len(metadata) > MAX_METADATA_KEYS:
        errors.add(path, f"metadata must not have more than {MAX_METADATA_KEYS} keys")
    for key, value in metadata.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            errors.add(f"{path}.{key}", f"{key} must be a string or a number")
    return dict(metadata)


def _parse_custom_fields(errors: _Collector, fields: Any, path: str) -> list[SubmittedCustomData]:
    if fields is None:
        return []
    if not isinstance(fields, list):
        errors.add(path, "custom_fields must be an array")
        return []
    if len(fields) > MAX_CUSTOM_FIELDS:
        errors.add(path, f"custom_fields must contain no more than {MAX_CUSTOM_FIELDS} elements")
        return []
    parsed = []
    for index, field in enumerate(fields):
        item_path = f"{path}[{index}]"
        if not isinstance(field, dict):
            errors.add(item_path, "each value in custom_fields must be an object")
            continue
        name = _string(errors, field, item_path, "internal_name", required=True)
        value = field.get("value")
        if value is None:
            errors.add(f"{item_path}.value", "value should not be empty")
            continue
        if isinstance(value, dict | list):
            errors.add(f"{item_path}.value", "value must be a string")
            continue
        if name is not None:
            parsed.append(SubmittedCustomData(name=name.strip(), value=str(value)))
    return parsed
