"""The app's OpenAPI document, corrected to say what the surfaces really accept and answer.

FastAPI's generated document knows only the body models it parsed itself and its own 422. The vendor routes read
raw JSON (their wire formats are looser than a model: numbers as strings, unknown fields kept), and each surface
writes its own error body. This module adds, per operation:

- the request body of every vendor route that reads one (the wire format each parser accepts);
- the success statuses a raw route answers besides its default (Invoca's 202 for a call already received, ...);
- the surface's error statuses with the surface's error body, in place of FastAPI's 422 where the surface never
  answers 422 (Infobip, CCAI and Invoca answer malformed input with 400/403).

The fuzz stage (tests/fuzz) checks every response against this document.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from callplane.surfaces.invoca.mapping import REQUIRED_CALL_FIELDS
from callplane.surfaces.registry import Surface, surface_of

Schema = dict[str, Any]

_TEXT: Schema = {"type": "string"}
_ID: Schema = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
_NUMBER_OR_TEXT: Schema = {"anyOf": [{"type": "string"}, {"type": "number"}]}

# ---- error bodies ------------------------------------------------------------------------------------------------

ERROR_SCHEMAS: dict[str, Schema] = {
    "NativeError": {
        "title": "NativeError",
        "description": "FastAPI's body: a message, or the validation problems (without the input that was sent).",
        "type": "object",
        "required": ["detail"],
        "properties": {
            "detail": {
                "anyOf": [
                    {"type": "string"},
                    {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["type", "loc", "msg"],
                            "properties": {
                                "type": {"type": "string"},
                                "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                                "msg": {"type": "string"},
                                "ctx": {"type": "object"},
                            },
                        },
                    },
                ]
            }
        },
    },
    "InfobipError": {
        "title": "InfobipError",
        "description": "Infobip's `requestError.serviceException` (the official client's `ApiException` body).",
        "type": "object",
        "required": ["requestError"],
        "properties": {
            "requestError": {
                "type": "object",
                "required": ["serviceException"],
                "properties": {
                    "serviceException": {
                        "type": "object",
                        "required": ["messageId", "text"],
                        "properties": {
                            "messageId": {"type": "string"},
                            "text": {"type": "string"},
                            "validationErrors": {
                                "type": "object",
                                "additionalProperties": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                    }
                },
            }
        },
    },
    "CcaiError": {
        "title": "CcaiError",
        "type": "object",
        "required": ["message"],
        "properties": {"message": {"type": "string"}},
    },
    "InvocaError": {
        "title": "InvocaError",
        "description": "`{errors: {class, invalid_data}}`; the Calls In Progress API writes `{error, message?}`.",
        "anyOf": [
            {
                "type": "object",
                "required": ["errors"],
                "properties": {
                    "errors": {
                        "type": "object",
                        "required": ["class", "invalid_data"],
                        "properties": {"class": {"type": "string"}, "invalid_data": {"type": "string"}},
                    }
                },
            },
            {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
            },
        ],
    },
    "ZipteamsError": {
        "title": "ZipteamsError",
        "type": "object",
        "required": ["success", "message"],
        "properties": {
            "success": {"type": "boolean", "enum": [False]},
            "message": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field", "message"],
                    "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        },
    },
}

# Every status a surface may answer with its error body. 408/413 come from the body limits (surfaces/limits.py),
# 429 from per-account limits, 503 where a media node or the database is needed and unavailable.
SURFACE_ERRORS: dict[Surface, tuple[str, dict[int, str]]] = {
    "native": (
        "NativeError",
        {
            400: "The body could not be read",
            401: "Missing or invalid API token",
            404: "Not found",
            408: "The request body stalled",
            409: "Conflict with the current state",
            413: "The request body is too large",
            416: "Range not satisfiable",
            422: "Invalid parameters or body",
            503: "No media node can carry the call now",
        },
    ),
    "admin": (
        "NativeError",
        {
            400: "The body could not be read",
            401: "Missing or invalid operator token",
            404: "Not found",
            408: "The request body stalled",
            409: "Conflict with the current state",
            413: "The request body is too large",
            422: "Invalid parameters or body",
        },
    ),
    "infobip": (
        "InfobipError",
        {
            400: "Bad request",
            401: "Invalid login details",
            403: "Forbidden",
            404: "Not found",
            408: "The request body stalled",
            413: "Payload too large",
            429: "Too many requests",
            503: "No media node can carry the call now",
        },
    ),
    "ccai": (
        "CcaiError",
        {
            400: "Invalid or missing parameter",
            401: "Unauthorized",
            404: "Resource not found",
            408: "The request body stalled",
            413: "The request body is too large",
            429: "Too many requests",
            503: "Temporarily unavailable",
        },
    ),
    "invoca": (
        "InvocaError",
        {
            400: "Invalid API version or parameters",
            401: "Invalid or missing oauth token",
            403: "Invalid data or no permission",
            404: "Record not found",
            408: "The request body stalled",
            409: "external_call_unique_id already used",
            413: "The request body is too large",
        },
    ),
    "zipteams": (
        "ZipteamsError",
        {
            400: "Missing tenant headers",
            403: "Forbidden",
            408: "The request body stalled",
            413: "Payload too large",
            422: "Validation failed",
            429: "Rate limit exceeded",
        },
    ),
}

# ---- vendor request bodies (raw JSON read by the surfaces' own parsers) ---------------------------------------------

_INVOCA_SIGNALS: Schema = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": _TEXT,
            "value": {"anyOf": [{"type": "string"}, {"type": "boolean"}, {"type": "integer"}]},
            "partner_unique_id": _ID,
            "occurred_at_time": _NUMBER_OR_TEXT,
            "revenue": _NUMBER_OR_TEXT,
        },
    },
}
_INVOCA_CUSTOM_DATA: Schema = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["name", "value"],
        "properties": {"name": _TEXT, "value": {"anyOf": [{"type": "string"}, {"type": "number"}]}},
    },
}
INVOCA_CALL: Schema = {
    "type": "object",
    "required": ["call"],
    "properties": {
        "call": {
            "type": "object",
            "required": list(REQUIRED_CALL_FIELDS),
            "properties": {
                "external_call_unique_id": _ID,
                "start_time": _NUMBER_OR_TEXT,
                "destination_phone_number": _ID,
                "calling_phone_number": _ID,
                "advertiser_campaign_id_from_network": _ID,
                "call_direction": {"type": "string", "enum": ["inbound", "outbound"]},
                "recording_url": _TEXT,
                "recording_filename": _TEXT,
                "language_code": _TEXT,
                "recording_auth_config_id": _ID,
            },
        },
        "signals": _INVOCA_SIGNALS,
        "custom_data": _INVOCA_CUSTOM_DATA,
        "oauth_token": _TEXT,
    },
}
INVOCA_TRANSACTION: Schema = {
    "type": "object",
    "required": ["search"],
    "properties": {
        "search": {
            "type": "object",
            "properties": {
                "transaction_id": _ID,
                "call_record_id": _ID,
                "call_start_time": _NUMBER_OR_TEXT,
                "calling_phone_number": _ID,
                "duration_in_seconds": _NUMBER_OR_TEXT,
                "advertiser_id_from_network": _ID,
                "advertiser_campaign_id_from_network": _ID,
                "network_id": _ID,
            },
        },
        "signals": _INVOCA_SIGNALS,
        "custom_data": _INVOCA_CUSTOM_DATA,
        "call_in_progress": {"anyOf": [{"type": "boolean"}, {"type": "string"}]},
        "oauth_token": _TEXT,
    },
}
INVOCA_CALL_IN_PROGRESS: Schema = {
    "type": "object",
    "required": ["call_in_progress"],
    "properties": {
        "call_in_progress": {
            "type": "object",
            "properties": {"external_unique_id": _TEXT, "custom_data": _INVOCA_CUSTOM_DATA},
        }
    },
}
ZIPTEAMS_BATCH: Schema = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {
            "type": "array",
            "maxItems": 50,
            "items": {
                "type": "object",
                "required": ["call"],
                "properties": {
                    "call": {"type": "object"},
                    "agent": {"type": "object"},
                    "customer": {"type": "object"},
                    "callback_url": _TEXT,
                    "metadata": {"type": "object"},
                    "custom_fields": {"type": "array", "maxItems": 10, "items": {"type": "object"}},
                },
            },
        }
    },
}
CCAI_CALL: Schema = {
    "type": "object",
    "required": ["call_type"],
    "properties": {
        "call_type": {
            "type": "string",
            "enum": [
                "Voice Outbound (API)",
                "Voice Inbound (API)",
                "Voice Scheduled (API)",
                "OutboundCall",
                "IncomingCall",
                "ScheduledCall",
            ],
        },
        "lang": _TEXT,
        "agent_email": _TEXT,
        "ticket_id": _NUMBER_OR_TEXT,
        "end_user_number": _TEXT,
        "outbound_number": _TEXT,
        "menu_id": _ID,
        "call_id": _ID,
        "scheduled_at": _TEXT,
        "recording_permission": _TEXT,
    },
}
_FLAG: Schema = {"anyOf": [{"type": "boolean"}, {"type": "string", "enum": ["true", "false"]}]}
CCAI_CUSTOMER_FLAG: Schema = {
    "type": "object",
    "properties": {"verified_customer": _FLAG, "bad_actor": _FLAG, "repeat_customers": _FLAG, "repeat_customer": _FLAG},
}
CCAI_CANCEL: Schema = {
    "type": "object",
    "required": ["call_ids"],
    "properties": {"call_ids": {"type": "array", "minItems": 1, "items": _ID}},
}
INFOBIP_UPLOAD: Schema = {
    "type": "object",
    "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary"}},
}

# (method, path) -> (request body schema or None, media type, extra success statuses)
VENDOR_OPERATIONS: dict[tuple[str, str], tuple[Schema | None, str, tuple[int, ...]]] = {
    ("post", "/api/{version}/calls.json"): (INVOCA_CALL, "application/json", (202,)),
    ("put", "/api/{version}/calls.json"): (INVOCA_CALL, "application/json", (202,)),
    ("post", "/api/{version}/transactions.json"): (INVOCA_TRANSACTION, "application/json", (201,)),
    ("put", "/api/{version}/transactions.json"): (INVOCA_TRANSACTION, "application/json", (201,)),
    ("post", "/api/{version}/calls_in_progress.json"): (INVOCA_CALL_IN_PROGRESS, "application/json", ()),
    ("put", "/api/{version}/calls_in_progress.json"): (INVOCA_CALL_IN_PROGRESS, "application/json", ()),
    ("post", "/partner/ingest/batch-call"): (ZIPTEAMS_BATCH, "application/json", ()),
    ("post", "/apps/api/v1/calls"): (CCAI_CALL, "application/json", (201, 202)),
    ("patch", "/apps/api/v1/calls/{call_id}/customer_flag"): (CCAI_CUSTOMER_FLAG, "application/json", ()),
    ("patch", "/apps/api/v1/calls/scheduled/cancel"): (CCAI_CANCEL, "application/json", ()),
    ("post", "/calls/1/files"): (INFOBIP_UPLOAD, "multipart/form-data", ()),
}


def build_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document for `app`, with vendor bodies, success statuses and error responses added."""
    document = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        description=app.description,
        routes=app.routes,
    )
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components.update(ERROR_SCHEMAS)
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)  # replaced by NativeError (no `input` echoed; `detail` may be a message)
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            _correct(path, method, operation)
    return document


def _correct(path: str, method: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    vendor = VENDOR_OPERATIONS.get((method, path))
    if vendor is not None:
        body, media_type, extra_statuses = vendor
        if body is not None:
            operation["requestBody"] = {"required": True, "content": {media_type: {"schema": body}}}
        for status in extra_statuses:
            responses.setdefault(str(status), {"description": "Successful Response", "content": _any_json()})
    surface = surface_of(path)
    schema_name, statuses = SURFACE_ERRORS[surface]
    responses.pop("422", None)  # FastAPI's; re-added below only where the surface answers 422
    reference = {"$ref": f"#/components/schemas/{schema_name}"}
    for status, description in statuses.items():
        responses[str(status)] = {"description": description, "content": {"application/json": {"schema": reference}}}


def _any_json() -> dict[str, Any]:
    return {"application/json": {"schema": {}}}


def install_openapi(app: FastAPI) -> None:
    """`app.openapi()` (and /openapi.json) serve the corrected document, built once."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
