"""The live call's state machine and our numbered error codes (how an engine's ended call maps onto them:
live/calls.py `ending_for`).

CALLING -> RINGING | PRE_ESTABLISHED -> ESTABLISHED -> FINISHED, or from any live state to one of
FAILED | BUSY | NO_ANSWER | CANCELLED. Terminal states are final (docs/voice.md "State machine").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from callplane.core.voice.models import DialogState, HangupSource, VoiceCallState
from callplane.errors import Conflict

TERMINAL_STATES = frozenset(
    {
        VoiceCallState.FINISHED,
        VoiceCallState.FAILED,
        VoiceCallState.BUSY,
        VoiceCallState.NO_ANSWER,
        VoiceCallState.CANCELLED,
    }
)
LIVE_STATES = frozenset(VoiceCallState) - TERMINAL_STATES
DIALOG_LIVE = (DialogState.CREATED, DialogState.PRE_ESTABLISHED, DialogState.ESTABLISHED)
DIALOG_TERMINAL = (DialogState.FINISHED, DialogState.FAILED)

_FORWARD: dict[VoiceCallState, frozenset[VoiceCallState]] = {
    VoiceCallState.CALLING: frozenset(
        {VoiceCallState.RINGING, VoiceCallState.PRE_ESTABLISHED, VoiceCallState.ESTABLISHED}
    ),
    VoiceCallState.RINGING: frozenset({VoiceCallState.PRE_ESTABLISHED, VoiceCallState.ESTABLISHED}),
    VoiceCallState.PRE_ESTABLISHED: frozenset({VoiceCallState.ESTABLISHED}),
    VoiceCallState.ESTABLISHED: frozenset(),
}


class CallNotLive(Conflict):
    """The call has already ended."""


class InvalidCallState(Conflict):
    """The call is not in a state that allows this action."""


def can_move(current: str, target: VoiceCallState) -> bool:
    """Whether `current -> target` is allowed; any live state may end, a terminal state never moves."""
    state = VoiceCallState(current)
    if state in TERMINAL_STATES:
        return False
    if target in TERMINAL_STATES:
        return True
    return target in _FORWARD[state]


class ErrorCode(IntEnum):
    """Our numbered error codes (ids from 10000 in the order of the client's `CallsErrorCode`, then ours)."""

    NORMAL_HANGUP = 10000
    MACHINE_DETECTED = 10001
    NO_ANSWER = 10002
    BUSY = 10003
    CANCELLED = 10004
    REJECTED = 10005
    FORBIDDEN = 10006
    DESTINATION_NOT_FOUND = 10007
    DESTINATION_UNAVAILABLE = 10008
    INVALID_DESTINATION = 10009
    INVALID_REQUEST = 10010
    REQUEST_TIMEOUT = 10011
    SERVICE_UNAVAILABLE = 10012
    MAX_DURATION_REACHED = 10100
    MEDIA_FAILURE = 10101
    ENGINE_RESTARTED = 10102


ERROR_DESCRIPTIONS: dict[ErrorCode, str] = {
    ErrorCode.NORMAL_HANGUP: "The call has ended with hangup initiated by caller, callee or API",
    ErrorCode.MACHINE_DETECTED: "The call was ended because an answering machine was detected",
    ErrorCode.NO_ANSWER: "The destination did not answer before the connect timeout",
    ErrorCode.BUSY: "The destination was busy",
    ErrorCode.CANCELLED: "The call was cancelled before it was answered",
    ErrorCode.REJECTED: "The destination declined the call",
    ErrorCode.FORBIDDEN: "The destination refused the call (403 Forbidden)",
    ErrorCode.DESTINATION_NOT_FOUND: "The destination does not exist (404 / 604)",
    ErrorCode.DESTINATION_UNAVAILABLE: "The destination could not be reached",
    ErrorCode.INVALID_DESTINATION: "The destination address is incomplete or ambiguous (484 / 485)",
    ErrorCode.INVALID_REQUEST: "The destination could not process the call request",
    ErrorCode.REQUEST_TIMEOUT: "The destination did not respond in time (408)",
    ErrorCode.SERVICE_UNAVAILABLE: "The destination or its carrier is out of service (5xx)",
    ErrorCode.MAX_DURATION_REACHED: "The call reached its maxDuration and was ended by the platform",
    ErrorCode.MEDIA_FAILURE: "The platform ended the call after a media failure (Q.850 cause 41)",
    ErrorCode.ENGINE_RESTARTED: "The media engine carrying the call stopped (shutdown or crash)",
}

# The SIP final response and Q.850 cause we send when the application ends an unanswered inbound call.
REJECT_STATUS: dict[ErrorCode, tuple[int, int]] = {
    ErrorCode.NORMAL_HANGUP: (480, 16),
    ErrorCode.BUSY: (486, 17),
    ErrorCode.NO_ANSWER: (480, 19),
    ErrorCode.REJECTED: (603, 21),
    ErrorCode.CANCELLED: (487, 16),
    ErrorCode.FORBIDDEN: (403, 21),
    ErrorCode.DESTINATION_NOT_FOUND: (404, 1),
    ErrorCode.DESTINATION_UNAVAILABLE: (480, 20),
    ErrorCode.INVALID_DESTINATION: (484, 28),
    ErrorCode.INVALID_REQUEST: (400, 95),
    ErrorCode.REQUEST_TIMEOUT: (408, 102),
    ErrorCode.SERVICE_UNAVAILABLE: (503, 41),
    ErrorCode.MACHINE_DETECTED: (480, 16),
}

STATUS_ERRORS: dict[int, ErrorCode] = {
    400: ErrorCode.INVALID_REQUEST,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.DESTINATION_NOT_FOUND,
    604: ErrorCode.DESTINATION_NOT_FOUND,
    408: ErrorCode.REQUEST_TIMEOUT,
    480: ErrorCode.NO_ANSWER,
    484: ErrorCode.INVALID_DESTINATION,
    485: ErrorCode.INVALID_DESTINATION,
    486: ErrorCode.BUSY,
    600: ErrorCode.BUSY,
    487: ErrorCode.CANCELLED,
    603: ErrorCode.REJECTED,
    500: ErrorCode.SERVICE_UNAVAILABLE,
    502: ErrorCode.SERVICE_UNAVAILABLE,
    503: ErrorCode.SERVICE_UNAVAILABLE,
}

Q850_NO_ANSWER = 19
Q850_MEDIA_FAILURE = 41


def state_for_error(code: ErrorCode) -> VoiceCallState:
    """The terminal state an unanswered call ends in for this error."""
    if code is ErrorCode.BUSY:
        return VoiceCallState.BUSY
    if code is ErrorCode.NO_ANSWER:
        return VoiceCallState.NO_ANSWER
    if code is ErrorCode.CANCELLED:
        return VoiceCallState.CANCELLED
    if code is ErrorCode.NORMAL_HANGUP:
        return VoiceCallState.FINISHED
    return VoiceCallState.FAILED


@dataclass(frozen=True, slots=True)
class Ending:
    state: VoiceCallState
    hangup_source: HangupSource
    error_code: ErrorCode
