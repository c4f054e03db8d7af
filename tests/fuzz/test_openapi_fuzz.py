"""The fuzz stage: every operation of the app's own OpenAPI document, driven by schemathesis against a real server
on loopback (SQLite and PostgreSQL), authenticated per surface so requests reach the handlers.

Checks: no 5xx (but a documented 503, see `no_undocumented_server_error`), and every response is one the document
declares (status code, content type, body schema). Hypothesis runs derandomized (a fixed seed per operation) with
`CALLPLANE_FUZZ_EXAMPLES` examples per operation and mode and no shrinking, so a run is repeatable and bounded.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CheckContext
from schemathesis.config import SchemathesisConfig
from schemathesis.core.transport import Response
from schemathesis.openapi import from_dict
from schemathesis.schemas import APIOperation, BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from callplane.testing.factories import Admin
from callplane.testing.server import (
    DEFAULT_POSTGRES_ADMIN_URL,
    RunningServer,
    running_server,
    scratch_postgres_database,
)
from tests.conftest import ADMIN_TOKEN, _settings

EXAMPLES_PER_OPERATION = int(os.environ.get("CALLPLANE_FUZZ_EXAMPLES", "10"))

# The API version each Invoca path accepts: a fuzzed version would stop every request at the version check.
INVOCA_VERSIONS = {"/transactions": "2018-02-01", "/calls_in_progress": "2022-08-01", "/calls": "2022-03-01"}

# Strings may hold NUL (\x00) and any code point: the probes that found PostgreSQL 500s.
CONFIG: dict[str, Any] = {"generation": {"allow-x00": True, "codec": "utf-8"}}


def no_undocumented_server_error(ctx: CheckContext, response: Response, case: schemathesis.Case) -> bool | None:
    """No 5xx, except a 503 the operation documents: without a media node (this server runs none, as an API-only
    process does) a request that would place or control a call is answered 503, by design (docs/voice.md)."""
    status = response.status_code
    documented = str(status) in case.operation.definition.raw.get("responses", {})
    if status >= 500 and not (status == 503 and documented):
        raise AssertionError(f"server error {status}: {response.text[:1000]}")
    return None


CHECKS = [no_undocumented_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@dataclass
class Credentials:
    """One network account (Invoca, native, Infobip, CCAI), one partner (Zipteams) and the operator token."""

    account_id: str
    token: str
    partner_headers: dict[str, str]

    def headers_for(self, path: str) -> dict[str, str]:
        if path.startswith("/v1/admin/"):
            return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        if path.startswith("/partner/"):
            return self.partner_headers
        if path.startswith("/calls/1/"):
            return {"Authorization": f"App {self.token}"}
        if path.startswith("/apps/api/v1/"):
            basic = base64.b64encode(f"acme:{self.token}".encode()).decode()
            return {"Authorization": f"Basic {basic}"}
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class FuzzTarget:
    server: RunningServer
    credentials: Credentials
    http: requests.Session


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzz_target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    """A server of its own: fuzzed writes never reach the accounts other tests share."""
    data_dir: Path = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    with _database(request.param) as url, running_server(_settings(data_dir, url)) as server:
        admin = Admin(server.base_url, ADMIN_TOKEN)
        network = admin.network()
        partner = admin.partner()
        admin.client.close()
        credentials = Credentials(account_id=network.account_id, token=network.token, partner_headers=partner.headers)
        with requests.Session() as http:
            yield FuzzTarget(server=server, credentials=credentials, http=http)


@contextmanager
def _database(kind: str) -> Iterator[str | None]:
    """None for SQLite (the server's own file), else a scratch PostgreSQL database."""
    if kind == "sqlite":
        yield None
        return
    with scratch_postgres_database(os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)) as url:
        yield url


@pytest.fixture(scope="module")
def api_schema(fuzz_target: FuzzTarget) -> BaseSchema:
    document = fuzz_target.http.get(f"{fuzz_target.server.base_url}/openapi.json", timeout=30).json()
    schema = from_dict(document, config=SchemathesisConfig.from_dict(CONFIG))
    schema.config.update(base_url=fuzz_target.server.base_url)
    return schema


def test_every_operation_keeps_its_contract(fuzz_target: FuzzTarget, api_schema: BaseSchema) -> None:
    """Valid and invalid input for each operation in turn; all failures are reported together at the end."""
    failures: list[str] = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        for mode in _modes(operation):
            try:
                _fuzz(operation, mode, fuzz_target)
            except Unsatisfiable:
                continue  # nothing invalid could be generated
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as error:  # failures are exception groups: all are collected
                failures.append(f"{operation.label} [{mode.value}]\n{error}")
    assert not failures, f"{len(failures)} failing operations:\n\n" + "\n\n".join(failures)


def _modes(operation: APIOperation) -> tuple[GenerationMode, ...]:
    """Invalid input only where something can be invalid: a body, or a parameter that is not free text (a string
    path or query value can be anything, so schemathesis would reject draw after draw looking for one)."""
    definition = operation.definition.raw
    typed = any(
        parameter.get("schema", {}).get("type") not in (None, "string")
        or "enum" in parameter.get("schema", {})
        or (parameter.get("required", False) and parameter.get("in") == "query")
        for parameter in definition.get("parameters", [])
    )
    if "requestBody" in definition or typed:
        return (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    return (GenerationMode.POSITIVE,)


def _fuzz(operation: APIOperation, mode: GenerationMode, target: FuzzTarget) -> None:
    @hypothesis.settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,  # a fixed seed: the same requests on every run
        database=None,
        deadline=None,
        phases=[hypothesis.Phase.generate],  # no shrinking: bounded time; the failing request is printed as is
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        if "account_id" in case.path_parameters:
            case.path_parameters["account_id"] = target.credentials.account_id  # else every request is a 404
        if "version" in case.path_parameters:
            case.path_parameters["version"] = next(v for marker, v in INVOCA_VERSIONS.items() if marker in case.path)
        headers = target.credentials.headers_for(case.path)
        case.call_and_validate(session=target.http, headers=headers, timeout=30, checks=CHECKS)

    run()
