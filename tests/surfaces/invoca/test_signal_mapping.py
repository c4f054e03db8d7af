"""Signal API wire parsing and rendering, without a server: the document's requests and every problem wording."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from callplane.core.calls.models import Call
from callplane.core.signals.service import Applied, AppliedSignal, CallSearch
from callplane.surfaces.invoca.signal_mapping import parse_signal_request, render_applied


def parse(body: Any) -> tuple[Any, list[str]]:
    return parse_signal_request(body, time_zone="America/Los_Angeles", country_codes=[1, 44, 34])


def test_document_example_with_every_search_field() -> None:
    request, problems = parse(
        {
            "search": {
                "call_start_time": "1440607313",
                "calling_phone_number": "1234567890",
                "duration_in_seconds": "60",
                "advertiser_id_from_network": "1",
                "advertiser_campaign_id_from_network": 2,
                "network_id": "3",
            },
            "signals": [
                {"name": "sale", "partner_unique_id": "1", "occurred_at_time": "1440607313", "revenue": "100.00"},
                {"name": "quote", "occurred_at_time": "1440607313"},
            ],
            "custom_data": [{"name": "channel", "value": "Paid Search"}, {"name": "line_of_business", "value": 7}],
        }
    )
    assert problems == []
    assert request.search == CallSearch(
        started_at=datetime(2015, 8, 26, 16, 41, 53, tzinfo=UTC),
        calling_e164="+1234567890",  # not a valid number: kept as digits, it can only match nothing
        duration_s=60.0,
        advertiser_external_id="1",
        campaign_external_id="2",
        network_id="3",
    )
    sale, quote = request.signals
    assert (sale.name, sale.partner_unique_id, sale.revenue, sale.value) == ("sale", "1", "100.00", True)
    assert (quote.partner_unique_id, quote.revenue) == ("", None)
    assert [(c.name, c.value) for c in request.custom_data] == [("channel", "Paid Search"), ("line_of_business", "7")]
    assert request.call_in_progress is False


def test_a_call_id_makes_the_other_search_fields_irrelevant() -> None:
    request, problems = parse({"search": {"call_record_id": "abc", "call_start_time": "not a time"}})
    assert problems == [] and request.search == CallSearch(call_id="abc")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"search": {"call_start_time": "yesterday"}}, "'call_start_time' "),
        ({"search": {"call_start_time": 1440607313, "duration_in_seconds": "long"}}, "'duration_in_seconds' must be"),
        ({"search": "abc"}, "'search' must be an object"),
        ({"search": {"transaction_id": "a"}, "signals": {"name": "Sale"}}, "'signals' must be a list"),
        (
            {"search": {"transaction_id": "a"}, "signals": [{"name": "Sale", "value": "maybe"}]},
            "'value' for signals[0]",
        ),
        (
            {"search": {"transaction_id": "a"}, "signals": [{"name": "Sale", "revenue": "1,000"}]},
            "'revenue' for signals[0]",
        ),
        (
            {"search": {"transaction_id": "a"}, "signals": [{"name": "Sale", "revenue": "9.999"}]},
            "'revenue' for signals[0]",
        ),
        (
            {"search": {"transaction_id": "a"}, "signals": [{"name": "Sale", "occurred_at_time": "soon"}]},
            "'occurred_at_time' for signals[0]",
        ),
        (
            {"search": {"transaction_id": "a"}, "custom_data": [{"name": "x", "value": {"a": 1}}]},
            "'value' for custom_data[0] is required",
        ),
        (
            {"search": {"transaction_id": "a"}, "call_in_progress": "sometimes"},
            "'call_in_progress' must be true or false",
        ),
        ([], "request body must be a JSON object"),
    ],
)
def test_problems(body: Any, problem: str) -> None:
    request, problems = parse(body)
    assert request is None and len(problems) == 1 and problems[0].startswith(problem), problems


def test_same_name_with_different_partner_ids_is_two_signals() -> None:
    request, problems = parse(
        {
            "search": {"transaction_id": "a"},
            "signals": [{"name": "Quote", "partner_unique_id": "1"}, {"name": "quote", "partner_unique_id": 2}],
        }
    )
    assert problems == [] and [s.partner_unique_id for s in request.signals] == ["1", "2"]


def test_rendering_follows_the_document() -> None:
    call = Call(id="call-1", started_at=datetime(2015, 7, 4, 7, 0, tzinfo=UTC))
    signal = AppliedSignal(
        id="sig-2",
        name="sale",
        partner_unique_id="1",
        value=False,
        occurred_at=datetime(2015, 8, 26, 16, 41, 53, tzinfo=UTC),
        revenue="1000.50",
        corrects_id="sig-1",
    )
    assert render_applied(Applied(call=call, signals=[signal])) == {
        "signals": [
            {
                "transaction_id": "sig-2",
                "corrects_transaction_id": "sig-1",
                "name": "sale",
                "partner_unique_id": "1",
                "occurred_at_time_t": "1440607313",
                "occurred_at_time": "2015-08-26T16:41:53Z",
                "revenue": "1000.5",
                "value": "false",
            }
        ],
        "call": {
            "transaction_id": "call-1",
            "corrects_transaction_id": None,
            "start_time_t": "1435993200",
            "call_start_time": "2015-07-04T07:00:00Z",
        },
    }
