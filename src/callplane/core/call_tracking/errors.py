"""What call tracking and the calls-in-progress view refuse."""

from __future__ import annotations

from callplane.errors import InvalidInput, NotFound, PermissionDenied


class PromoNumberNotFound(NotFound):
    """Promo number not found."""


class CallInProgressNotFound(NotFound):
    """No call in progress matches."""


class OrganizationNotVisible(PermissionDenied):
    """The organization does not exist or this token may not see it."""


class InvalidSearch(InvalidInput):
    """The search parameters are not valid."""
