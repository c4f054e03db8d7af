"""One exception tree for the whole platform; each surface renders it with its own table."""

from __future__ import annotations


class CallplaneError(Exception):
    """Something went wrong in callplane."""

    permanent: bool = True

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (self.__doc__ or type(self).__name__).strip().splitlines()[0]
        super().__init__(self.message)


class NotFound(CallplaneError):
    """The requested resource does not exist."""


class Unauthenticated(CallplaneError):
    """Invalid or missing credentials."""


class PermissionDenied(CallplaneError):
    """You do not have permissions to perform the requested operation."""


class Conflict(CallplaneError):
    """The resource already exists with different content."""


class InvalidInput(CallplaneError):
    """The request is not valid."""

    def __init__(self, message: str | None = None, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [self.message]


class TransientError(CallplaneError):
    """A temporary failure; retrying later may succeed."""

    permanent = False
