"""The WAV recorder's own limits (start-recording's maxSilence and maxDuration): it tells its engine once, when the
recorded audio has been silent that long or the file is that long; what it wrote stays a valid WAV."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from callplane.media.audio import RecordingChannels, WavRecorder, cadence_tone, is_silent
from callplane.media.jitter import FRAME_SAMPLES

TONE = cadence_tone((440.0,), 1000, 0)  # one second of a 440 Hz tone at the engine's amplitude
NOISE = (np.random.default_rng(7).normal(0, 20, FRAME_SAMPLES)).astype(np.int16)  # line hiss, about -64 dBFS


def _frames(audio: np.ndarray) -> list[np.ndarray]:
    return [audio[i : i + FRAME_SAMPLES] for i in range(0, len(audio) - FRAME_SAMPLES + 1, FRAME_SAMPLES)]


def test_silence_is_line_noise_or_nothing_and_a_tone_is_not() -> None:
    assert is_silent(np.zeros(FRAME_SAMPLES, dtype=np.int16)) and is_silent(NOISE)
    assert not is_silent(_frames(TONE)[0])


def test_max_silence_counts_silent_frames_in_a_row_and_tells_once(tmp_path: Path) -> None:
    reached: list[str | None] = []
    recorder = WavRecorder(tmp_path / "a.wav", RecordingChannels.STEREO, max_silence_ms=1000)
    recorder.on_limit = lambda: reached.append(recorder.limit_reached)
    tone = _frames(TONE)
    for frame in tone[:10]:  # speech, then 0.6 s of silence, speech again: the silence starts over
        recorder.write(frame, None)
    for _ in range(30):
        recorder.write(NOISE, None)
    for frame in tone[:5]:
        recorder.write(None, frame)  # what we sent counts as well: the recording holds both directions
    for _ in range(49):
        recorder.write(None, None)
    assert reached == []
    recorder.write(NOISE, None)  # the 50th silent frame in a row: one second
    for _ in range(20):
        recorder.write(None, None)
    assert reached == ["MAX_SILENCE"]
    recorder.close()
    with wave.open(str(tmp_path / "a.wav")) as wav:  # it kept writing until closed: the engine ends it
        assert (wav.getnchannels(), wav.getnframes()) == (2, (10 + 30 + 5 + 50 + 20) * FRAME_SAMPLES)


def test_max_duration_tells_at_that_many_frames_whatever_the_audio(tmp_path: Path) -> None:
    reached: list[str | None] = []
    recorder = WavRecorder(tmp_path / "b.wav", max_duration_ms=400, max_silence_ms=10_000)
    recorder.on_limit = lambda: reached.append(recorder.limit_reached)
    for frame in _frames(TONE)[:19]:
        recorder.write(frame, frame)
    assert reached == []
    recorder.write(_frames(TONE)[19], None)
    recorder.write(None, None)
    assert reached == ["MAX_DURATION"] and recorder.duration_ms == 420
    recorder.close()


def test_a_recorder_without_limits_never_tells(tmp_path: Path) -> None:
    recorder = WavRecorder(tmp_path / "c.wav", on_limit=lambda: (_ for _ in ()).throw(AssertionError("told")))
    for _ in range(500):
        recorder.write(None, None)
    recorder.close()
    assert recorder.limit_reached is None and recorder.duration_ms == 10_000
