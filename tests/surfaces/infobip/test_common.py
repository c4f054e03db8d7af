"""The Infobip surface's shared pieces: paging envelope, error body, field names of validation errors."""

from __future__ import annotations

from callplane.errors import Conflict, InvalidInput, NotFound
from callplane.surfaces.infobip.common import PageRequest, paged
from callplane.surfaces.infobip.errors import _field_name, bad_request, error_body, from_core_error


def test_paging_envelope_counts_pages() -> None:
    body = paged([{"id": "a"}], page=PageRequest(page=2, size=10), total=21)
    assert body == {"results": [{"id": "a"}], "paging": {"page": 2, "size": 10, "totalPages": 3, "totalResults": 21}}
    assert paged([], page=PageRequest(), total=0)["paging"]["totalPages"] == 0
    assert PageRequest(page=3, size=20).offset == 60


def test_error_body_has_the_clients_shape() -> None:
    assert error_body("BAD_REQUEST", "Bad request", {"name": ["must not be blank"]}) == {
        "requestError": {
            "serviceException": {
                "messageId": "BAD_REQUEST",
                "text": "Bad request",
                "validationErrors": {"name": ["must not be blank"]},
            }
        }
    }
    assert "validationErrors" not in error_body("NOT_FOUND", "x")["requestError"]["serviceException"]
    error = bad_request("unsupported transport", field="transport")
    assert (error.status_code, error.message_id, error.validation_errors) == (
        400,
        "BAD_REQUEST",
        {"transport": ["unsupported transport"]},
    )


def test_core_errors_map_to_the_clients_statuses() -> None:
    assert from_core_error(NotFound("no such trunk")).status_code == 404
    assert from_core_error(InvalidInput("bad")).status_code == 400
    assert from_core_error(Conflict()).status_code == 400


def test_validation_error_locations_become_dotted_field_names() -> None:
    assert _field_name(("body", "endpoint", "phoneNumber")) == "endpoint.phoneNumber"
    assert _field_name(("query", "size")) == "size"
    assert _field_name(("body",)) == "body"
