"""The state machine and how an ended SIP dialog maps to state, hangup source and our error code."""

from __future__ import annotations

import pytest

from callplane.core.voice.models import HangupSource, VoiceCallState
from callplane.core.voice.states import ERROR_DESCRIPTIONS, REJECT_STATUS, Ending, ErrorCode, can_move
from callplane.live.calls import ending_for
from callplane.media.engine import CallDirection, CallEnded, HangupInitiator, SipReasonHeader

S = VoiceCallState


def test_calls_move_forward_only_and_terminal_states_are_final() -> None:
    assert can_move("CALLING", S.RINGING) and can_move("RINGING", S.PRE_ESTABLISHED)
    assert can_move("PRE_ESTABLISHED", S.ESTABLISHED) and can_move("CALLING", S.ESTABLISHED)
    assert not can_move("ESTABLISHED", S.RINGING) and not can_move("PRE_ESTABLISHED", S.RINGING)
    for live in ("CALLING", "RINGING", "PRE_ESTABLISHED", "ESTABLISHED"):
        assert can_move(live, S.FAILED) and can_move(live, S.FINISHED)
    for terminal in ("FINISHED", "FAILED", "BUSY", "NO_ANSWER", "CANCELLED"):
        assert not any(can_move(terminal, target) for target in S)


def _ended(
    initiator: HangupInitiator, *, answered: bool, status: int | None = None, cause: int | None = None
) -> CallEnded:
    reason = SipReasonHeader("Q.850", cause) if cause is not None else None
    return CallEnded("engine-id", initiator, answered, sip_status=status, reason=reason)


OUTBOUND_FAILURES = [
    (486, S.BUSY, ErrorCode.BUSY),
    (600, S.BUSY, ErrorCode.BUSY),
    (480, S.NO_ANSWER, ErrorCode.NO_ANSWER),
    (408, S.FAILED, ErrorCode.REQUEST_TIMEOUT),
    (603, S.FAILED, ErrorCode.REJECTED),
    (403, S.FAILED, ErrorCode.FORBIDDEN),
    (404, S.FAILED, ErrorCode.DESTINATION_NOT_FOUND),
    (604, S.FAILED, ErrorCode.DESTINATION_NOT_FOUND),
    (484, S.FAILED, ErrorCode.INVALID_DESTINATION),
    (503, S.FAILED, ErrorCode.SERVICE_UNAVAILABLE),
    (487, S.CANCELLED, ErrorCode.CANCELLED),
    (415, S.FAILED, ErrorCode.DESTINATION_UNAVAILABLE),
]


@pytest.mark.parametrize(("status", "state", "code"), OUTBOUND_FAILURES)
def test_far_end_final_statuses_map_to_state_and_error(status: int, state: S, code: ErrorCode) -> None:
    ending = ending_for(_ended(HangupInitiator.REMOTE, answered=False, status=status), CallDirection.OUTBOUND)
    assert ending == Ending(state, HangupSource.ENDPOINT, code)


def test_who_ended_it_decides_the_hangup_source() -> None:
    outbound, inbound = CallDirection.OUTBOUND, CallDirection.INBOUND
    assert ending_for(_ended(HangupInitiator.REMOTE, answered=True), inbound) == Ending(
        S.FINISHED, HangupSource.ENDPOINT, ErrorCode.NORMAL_HANGUP
    )
    assert ending_for(_ended(HangupInitiator.ENGINE, answered=False, cause=19), outbound) == Ending(
        S.NO_ANSWER, HangupSource.PLATFORM, ErrorCode.NO_ANSWER
    )
    assert ending_for(_ended(HangupInitiator.ENGINE, answered=True, cause=41), inbound) == Ending(
        S.FAILED, HangupSource.PLATFORM, ErrorCode.MEDIA_FAILURE
    )
    assert ending_for(_ended(HangupInitiator.REMOTE, answered=False, status=487), inbound) == Ending(
        S.CANCELLED, HangupSource.ENDPOINT, ErrorCode.CANCELLED
    )
    asked = Ending(S.BUSY, HangupSource.API, ErrorCode.BUSY)
    assert ending_for(_ended(HangupInitiator.LOCAL, answered=False), inbound, requested=asked) == asked
    assert ending_for(_ended(HangupInitiator.LOCAL, answered=False), outbound) == Ending(
        S.CANCELLED, HangupSource.API, ErrorCode.CANCELLED
    )


def test_every_error_code_is_described_and_client_codes_have_a_reject_status() -> None:
    assert set(ERROR_DESCRIPTIONS) == set(ErrorCode)
    client_codes = [code for code in ErrorCode if code < 10100]
    assert [code.value for code in client_codes] == list(range(10000, 10013))
    assert set(REJECT_STATUS) == set(client_codes)
