"""Call errors."""

from __future__ import annotations

from callplane.errors import NotFound


class CallNotFound(NotFound):
    """The call does not exist."""
