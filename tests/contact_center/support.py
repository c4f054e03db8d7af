"""A contact center built through the admin API, and a client of the CCAI call API (HTTP Basic)."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from callplane.testing.factories import Admin

END_USER = "+1 859-657-9625"
END_USER_E164 = "+18596579625"
OUTBOUND = "+1 339-219-5276"
OUTBOUND_E164 = "+13392195276"


@dataclass
class Center:
    account_id: str
    token: str
    api: httpx.Client  # /apps/api/v1 with HTTP Basic (subdomain:token)
    admin: Admin
    agents: dict[str, int] = field(default_factory=dict)
    menus: dict[str, int] = field(default_factory=dict)

    def path(self, tail: str) -> str:
        return f"/accounts/{self.account_id}/contact-center{tail}"

    def add_agent(self, email: str, **values: Any) -> int:
        body = {"email": email, "endpoint_user": "agent", "endpoint_host": "127.0.0.1:5999", **values}
        agent_id = int(self.admin.post(self.path("/agents"), body)["id"])
        self.agents[email] = agent_id
        return agent_id

    def add_menu(self, name: str, **values: Any) -> int:
        menu_id = int(self.admin.post(self.path("/menus"), {"name": name, **values})["id"])
        self.menus[name] = menu_id
        return menu_id

    def set_agent(self, email: str, **changes: Any) -> dict[str, Any]:
        return self.admin.patch(self.path(f"/agents/{self.agents[email]}"), changes)

    def agent(self, email: str) -> dict[str, Any]:
        response = self.admin.client.get(f"/v1/admin{self.path(f'/agents/{self.agents[email]}')}")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def create(self, body: dict[str, Any]) -> httpx.Response:
        return self.api.post("/apps/api/v1/calls", json=body)

    def call(self, call_id: int) -> dict[str, Any]:
        response = self.api.get(f"/apps/api/v1/calls/{call_id}")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def wait_call(
        self, call_id: int, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        seen: list[str] = []
        while time.monotonic() < deadline:
            call = self.call(call_id)
            if not seen or seen[-1] != call["status"]:
                seen.append(call["status"])
            if predicate(call):
                return call
            time.sleep(0.1)
        raise AssertionError(f"call {call_id} did not get there within {timeout_s}s; statuses seen {seen}")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def new_center(admin: Admin, base_url: str) -> Center:
    account = admin.network()
    api = httpx.Client(base_url=base_url, headers={"Authorization": basic("acme", account.token)}, timeout=30)
    return Center(account_id=account.account_id, token=account.token, api=api, admin=admin)
