"""Why a contact-center request is refused; each message is the one the call API answers with."""

from __future__ import annotations

from callplane.errors import InvalidInput, NotFound


class ContactCenterInvalid(InvalidInput):
    """The request is not valid."""


class InvalidCallType(ContactCenterInvalid):
    """Invalid call type"""


class AgentEmailRequired(ContactCenterInvalid):
    """Agent email required"""


class NotAValidAgentEmail(ContactCenterInvalid):
    """Not a valid agent email"""


class AgentMayNotCall(ContactCenterInvalid):
    """Agent does not have access to make calls"""


class AgentNotAvailable(ContactCenterInvalid):
    """Agent is not available to take this call"""


class TicketOrNumberRequired(ContactCenterInvalid):
    """ticket_id or end_user_number required"""


class ContactNotFound(ContactCenterInvalid):
    """Contact not found"""


class MenuIdRequired(ContactCenterInvalid):
    """menu_id is required"""


class MenuIdMalformed(ContactCenterInvalid):
    """menu_id is not well formed"""


class EndUserNumberRequired(ContactCenterInvalid):
    """end_user_number is required"""


class ScheduledAtRequired(ContactCenterInvalid):
    """scheduled_at is required"""


class MenuAfterHours(ContactCenterInvalid):
    """Menu is in 'after hours' state, can't accept incoming calls"""


class MenuManualRedirection(ContactCenterInvalid):
    """Menu is in 'manual redirection' state, can't accept calls"""


class ContactCenterNotFound(NotFound):
    """Resource not found"""
