"""Signal errors, rooted in the platform's one exception tree."""

from __future__ import annotations

from callplane.errors import InvalidInput


class InvalidSignalValue(InvalidInput):
    """A signal value must be true, false, 1, 0, yes or no."""


class InvalidSignalDefinition(InvalidInput):
    """The signal definition is not valid."""
