"""Webhook errors: a small tree under ``CallplaneError``; a delivery's ``last_error`` is one of these messages."""

from __future__ import annotations

from callplane.errors import CallplaneError


class WebhookError(CallplaneError):
    """The notification could not be sent."""


class InvalidWebhookUrl(WebhookError):
    """The webhook or callback URL is not a valid http(s) URL."""


class InvalidSignature(WebhookError):
    """The webhook signature does not verify."""


class InvalidWebhookSecret(WebhookError):
    """The webhook secret is not a whsec_ base64 secret."""


class DeliveryTargetRefused(WebhookError):
    """The notification URL points at an address we may not send to."""
