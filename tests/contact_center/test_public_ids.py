"""Call and menu ids are per tenant: a tenant's first is 1 whatever others do, and concurrent creates never share
one (SQLite and PostgreSQL)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from callplane.testing.factories import Admin
from callplane.testing.server import RunningServer
from tests.contact_center.support import END_USER, Center, basic, new_center

INBOUND = {"call_type": "Voice Inbound (API)", "lang": "en", "end_user_number": END_USER}


def _inbound(center: Center, menu: str) -> dict[str, Any]:
    response = center.create({**INBOUND, "menu_id": center.menus[menu]})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_each_tenant_counts_its_own_calls_and_menus_from_one(server: RunningServer, admin: Admin) -> None:
    first, second = new_center(admin, server.base_url), new_center(admin, server.base_url)
    try:
        # Interleaved creates: neither tenant's numbers move with the other's.
        assert first.add_menu("Sales") == 1
        assert second.add_menu("Support") == 1
        assert first.add_menu("Parts", parent_id=first.menus["Sales"]) == 2
        assert second.add_menu("Billing") == 2
        assert [_inbound(first, "Sales")["id"], _inbound(second, "Support")["id"]] == [1, 1]
        call = _inbound(first, "Parts")
        assert call["id"] == 2 and _inbound(second, "Billing")["id"] == 2
        # Every id the API shows is the per-tenant one, and reads back.
        assert call["selected_menu"]["id"] == 2 and call["selected_menu"]["parent_id"] == 1
        assert call["menu_path"]["materialized_path"] == "1/2"
        assert {p["call_id"] for p in call["participants"]} == {2}
        assert first.call(2)["id"] == 2 and second.call(2)["end_user"] is not None
        listed = first.api.get("/apps/api/v1/calls", params={"menu_id": 2}).json()
        assert [item["id"] for item in listed] == [2]
        menus = admin.client.get(f"/v1/admin{first.path('/menus')}").json()["menus"]
        assert {(m["id"], m["parent_id"]) for m in menus} == {(1, None), (2, 1)}
        native = httpx.get(
            f"{server.base_url}/v1/calls", headers={"Authorization": f"Bearer {first.token}"}, timeout=30
        ).json()["calls"]
        assert sorted(c["extras"]["contact_center_call_id"] for c in native) == [1, 2]
        # A tenant names only its own: the other's 3 does not exist for the second tenant.
        _inbound(first, "Sales")
        missing = second.api.get("/apps/api/v1/calls/3")
        assert missing.status_code == 404
    finally:
        first.api.close()
        second.api.close()


def test_concurrent_creates_in_one_tenant_get_distinct_consecutive_ids(server: RunningServer, admin: Admin) -> None:
    center = new_center(admin, server.base_url)
    other = new_center(admin, server.base_url)
    center.add_menu("Queue")
    other.add_menu("Queue")
    count = 16

    def create(index: int) -> int:
        # Both tenants at once: the second one's creates must not take numbers from the first.
        tenant = center if index % 4 else other
        with httpx.Client(
            base_url=server.base_url, headers={"Authorization": basic("acme", tenant.token)}, timeout=60
        ) as client:
            response = client.post("/apps/api/v1/calls", json={**INBOUND, "menu_id": tenant.menus["Queue"]})
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    try:
        with ThreadPoolExecutor(max_workers=count) as pool:
            ids = list(pool.map(create, range(count)))
        mine = [call_id for index, call_id in enumerate(ids) if index % 4]
        theirs = [call_id for index, call_id in enumerate(ids) if not index % 4]
        assert sorted(mine) == list(range(1, len(mine) + 1))
        assert sorted(theirs) == list(range(1, len(theirs) + 1))
    finally:
        center.api.close()
        other.api.close()
