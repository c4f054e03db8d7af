"""RFC 4733 digits in: one press is one digit even when its packets stall, a replayed press counts again."""

from __future__ import annotations

import pytest

from callplane.media import channel as channel_module
from callplane.media import rtp
from callplane.media.channel import MediaChannel
from callplane.media.clock import MediaClock


def _press(digit_code: int, timestamp: int, *, end: bool, duration: int) -> rtp.RtpPacket:
    payload = bytes(rtp.TelephoneEvent(event=digit_code, end=end, volume=10, duration=duration))
    return rtp.RtpPacket(payload_type=101, sequence_number=1, timestamp=timestamp, ssrc=0x5EED, payload=payload)


def _feed(monkeypatch: pytest.MonkeyPatch, packets: list[tuple[float, rtp.RtpPacket]]) -> list[str]:
    """Hand packets to a channel at the given receive times (the clock is set, not waited for)."""
    digits: list[str] = []
    channel = MediaChannel(clock=MediaClock(), on_digit=digits.append)
    for at, packet in packets:
        monkeypatch.setattr(channel_module.time, "monotonic", lambda at=at: at)
        channel._receive_event(packet)
    return digits


def test_a_press_that_stalls_mid_way_is_one_digit(monkeypatch: pytest.MonkeyPatch) -> None:
    stalled = [
        (10.00, _press(1, 8000, end=False, duration=160)),
        (10.02, _press(1, 8000, end=False, duration=320)),
        (10.90, _press(1, 8000, end=False, duration=480)),  # the sender stalled for 0.9 s
        (10.92, _press(1, 8000, end=True, duration=640)),
        (10.92, _press(1, 8000, end=True, duration=640)),
        (10.92, _press(1, 8000, end=True, duration=640)),
    ]
    assert _feed(monkeypatch, stalled) == ["1"]


def test_the_same_recorded_press_replayed_later_counts_again(monkeypatch: pytest.MonkeyPatch) -> None:
    press = [_press(5, 4000, end=False, duration=160), _press(5, 4000, end=True, duration=800)]
    replayed = [(20.0, press[0]), (20.1, press[1]), (21.5, press[0]), (21.6, press[1])]
    assert _feed(monkeypatch, replayed) == ["5", "5"]


def test_distinct_presses_and_late_end_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    packets = [
        (1.0, _press(1, 100, end=False, duration=160)),
        (1.1, _press(1, 100, end=True, duration=800)),
        (1.2, _press(1, 100, end=True, duration=800)),  # end copies shortly after: the same press
        (1.5, _press(2, 9000, end=False, duration=160)),
        (1.6, _press(11, 17000, end=False, duration=160)),
    ]
    assert _feed(monkeypatch, packets) == ["1", "2", "#"]
