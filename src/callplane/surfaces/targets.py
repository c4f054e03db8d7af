"""The outbound target policy (SSRF defence) as the surfaces check customer-named targets with it."""

from __future__ import annotations

from callplane.core.recordings.targets import TargetPolicy
from callplane.surfaces.context import AppContext


def outbound_policy(context: AppContext) -> TargetPolicy:
    """The one policy recordings, webhooks and SIP use, from `fetch_allowed_networks` / `fetch_allowed_hosts`."""
    if context.voice is not None:
        return context.voice.fetch_policy
    settings = context.settings
    return TargetPolicy.from_config(settings.fetch_allowed_networks, settings.fetch_allowed_hosts)
