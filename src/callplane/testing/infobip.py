"""The vendor's own Python client (`infobip-api-python-client`, a dev dependency) pointed at a callplane server.

Conformance tests drive /calls/1 through it, so every request shape, response model and error body is checked
by the code real customers run, not by our reading of the spec.
"""

from __future__ import annotations

from infobip_api_client import ApiClient, Configuration
from infobip_api_client.api.calls_api import CallsApi


def calls_api(base_url: str, api_key: str) -> CallsApi:
    """A configured `CallsApi`: `Authorization: App <api_key>` to `base_url` (a loopback http URL is allowed)."""
    configuration = Configuration(host=base_url, api_key=api_key)
    return CallsApi(ApiClient(configuration))
