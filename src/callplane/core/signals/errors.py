"""Signal errors, rooted in the platform's one exception tree."""

from __future__ import annotations

from callplane.errors import InvalidInput, NotFound, PermissionDenied


class InvalidSignalValue(InvalidInput):
    """A signal value must be true, false, 1, 0, yes or no."""


class InvalidSignalDefinition(InvalidInput):
    """The signal definition is not valid."""


class CallNotMatched(NotFound):
    """No call found. Please refer to the documentation."""


class AdvertiserNotAccessible(PermissionDenied):
    """You do not have access to this advertiser"""


class SignalsRejected(InvalidInput):
    """The signals or custom data cannot be applied to the call."""


class SignalLimitReached(SignalsRejected):
    """Signals are limited to 100"""
