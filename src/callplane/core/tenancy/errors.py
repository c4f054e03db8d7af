"""Tenancy errors."""

from __future__ import annotations

from callplane.errors import Conflict, NotFound, PermissionDenied


class AccountNotFound(NotFound):
    """The account does not exist."""


class OrganizationNotFound(NotFound):
    """The organization does not exist in this account."""


class AlreadyExists(Conflict):
    """Something with this identifier already exists."""


class IngestionDisabled(PermissionDenied):
    """You do not have permissions to perform the requested operation."""


class WrongAccountKind(PermissionDenied):
    """This token cannot be used on this API."""
