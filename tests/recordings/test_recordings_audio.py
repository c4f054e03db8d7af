"""Audio checks and normalization on real files generated with sox, ffmpeg and espeak-ng."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from recordings_support import AudioFiles

from callplane.core.recordings.audio import RecordingFormat, normalize_recording, sniff_format
from callplane.core.recordings.errors import (
    CorruptRecording,
    MonoNotAllowed,
    RecordingTooLong,
    UnsupportedFormat,
    VideoNotAllowed,
)

Normalize = Callable[..., Any]


@pytest.fixture(params=[True, False], ids=["ffmpeg-cli", "pyav"])
def normalize(request: pytest.FixtureRequest) -> Normalize:
    """Both transforms: the ffmpeg CLI (installed here and in production) and the in-process PyAV fallback."""
    return partial(normalize_recording, use_ffmpeg_cli=request.param)


def decode(path: Path) -> tuple[np.ndarray, int]:
    """The whole output as (channels, samples) float32, and its sample rate."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        blocks = [frame.to_ndarray() for frame in container.decode(stream)]
        rate = stream.codec_context.sample_rate
    data = np.concatenate(blocks, axis=1).astype(np.float32)
    return data, rate


def dominant_hz(channel: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(channel * np.hanning(len(channel))))
    return float(np.fft.rfftfreq(len(channel), 1 / rate)[int(np.argmax(spectrum))])


@pytest.mark.parametrize(
    ("name", "fmt", "codec"),
    [
        ("stereo_wav", RecordingFormat.WAV, "pcm_s16le"),
        ("stereo_mp3", RecordingFormat.MP3, "mp3"),
        ("stereo_m4a", RecordingFormat.M4A, "aac"),
        ("stereo_aac", RecordingFormat.AAC, "aac"),
        ("audio_mp4", RecordingFormat.MP4, "aac"),
        ("mulaw_wav", RecordingFormat.WAV, "pcm_mulaw"),
        ("mp3_with_cover", RecordingFormat.MP3, "mp3"),
        ("mp3_named_wav", RecordingFormat.MP3, "mp3"),  # the content decides, not the name
    ],
)
def test_supported_formats_become_8khz_stereo_mp3(
    audio: AudioFiles, tmp_path: Path, normalize: Normalize, name: str, fmt: RecordingFormat, codec: str
) -> None:
    dest = tmp_path / "out.mp3"
    report = normalize(getattr(audio, name), dest)
    assert (report.original_format, report.original_codec, report.original_channels) == (fmt, codec, 2)
    assert report.output_sample_rate_hz == 8000 and report.output_channels == 2
    assert 1900 <= report.duration_ms <= 2200
    assert not report.truncated and not report.single_channel
    assert sniff_format(dest.read_bytes()[:4096]) is RecordingFormat.MP3
    with av.open(str(dest)) as out:
        stream = out.streams.audio[0]
        assert (stream.codec_context.sample_rate, stream.codec_context.layout.nb_channels) == (8000, 2)
    assert [c.role for c in report.channels] == ["caller", "agent"]
    for level in report.channels:
        assert -10 < level.rms_dbfs < -3  # a 0 dBFS-peak sine is about -3 dBFS RMS
        assert level.silence_ratio < 0.05
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


@pytest.mark.parametrize("swap", [False, True])
def test_channels_are_caller_then_agent_and_swap_exchanges_them(
    audio: AudioFiles, tmp_path: Path, normalize: Normalize, swap: bool
) -> None:
    """Input: 440 Hz on channel 0, 1000 Hz on channel 1; after a swap the peaks trade places."""
    dest = tmp_path / "out.mp3"
    report = normalize(audio.stereo_wav, dest, swap_channels=swap)
    assert report.swapped is swap
    data, rate = decode(dest)
    assert rate == 8000 and data.shape[0] == 2
    middle = data[:, rate // 4 : rate // 4 + rate]  # one second away from encoder padding
    found = (round(dominant_hz(middle[0], rate)), round(dominant_hz(middle[1], rate)))
    assert found == ((1000, 440) if swap else (440, 1000))


def test_levels_and_silence_ratio_per_channel(audio: AudioFiles, tmp_path: Path, normalize: Normalize) -> None:
    """Channel 0: 1 s of tone then 1 s of silence. Channel 1: silence throughout."""
    report = normalize(audio.half_silent_wav, tmp_path / "out.mp3")
    caller, agent = report.channels
    assert 0.45 <= caller.silence_ratio <= 0.55
    assert agent.silence_ratio == 1.0
    assert agent.rms_dbfs == -120.0
    assert -12 < caller.rms_dbfs < -6  # a sine at half the time: about -3 dB - 3 dB
    assert report.duration_ms == 2000


def test_mono_is_refused_when_stereo_is_required(audio: AudioFiles, tmp_path: Path, normalize: Normalize) -> None:
    dest = tmp_path / "out.mp3"
    with pytest.raises(MonoNotAllowed, match="recordings must be dual-channel") as caught:
        normalize(audio.mono_speech_wav, dest, require_stereo=True)
    assert caught.value.permanent
    assert not dest.exists()


def test_mono_is_kept_mono_and_reported_when_accepted(audio: AudioFiles, tmp_path: Path, normalize: Normalize) -> None:
    dest = tmp_path / "out.mp3"
    report = normalize(audio.mono_speech_wav, dest, require_stereo=False, swap_channels=True)
    assert report.single_channel and report.output_channels == 1 and report.original_channels == 1
    assert report.original_sample_rate_hz == 22050
    assert not report.swapped and report.warnings
    assert [c.role for c in report.channels] == ["mono"]
    assert 0.0 < report.channels[0].silence_ratio < 0.9  # speech has pauses
    data, rate = decode(dest)
    assert rate == 8000 and data.shape[0] == 1


def test_mp4_with_video_is_refused(audio: AudioFiles, tmp_path: Path, normalize: Normalize) -> None:
    with pytest.raises(VideoNotAllowed, match="audio-only") as caught:
        normalize(audio.video_mp4, tmp_path / "out.mp3")
    assert caught.value.permanent


@pytest.mark.parametrize(
    ("name", "error", "reason"),
    [
        ("flac", UnsupportedFormat, "FLAC"),
        ("html_page", UnsupportedFormat, "HTML"),
        ("random_bytes", UnsupportedFormat, "supported formats are"),
        ("three_channel_wav", UnsupportedFormat, "3 channels"),
        ("corrupt_mp4", CorruptRecording, "looks like MP4"),
        ("corrupt_wav", CorruptRecording, "WAV"),
        ("truncated_m4a", CorruptRecording, "M4A"),
        ("empty", CorruptRecording, "empty"),
    ],
)
def test_unusable_files_are_refused_with_their_own_reason(
    audio: AudioFiles, tmp_path: Path, normalize: Normalize, name: str, error: type[Exception], reason: str
) -> None:
    dest = tmp_path / "out.mp3"
    with pytest.raises(error, match=reason):
        normalize(getattr(audio, name), dest)
    assert not dest.exists()
    assert not list(tmp_path.iterdir())


def test_truncated_wav_is_kept_and_flagged(audio: AudioFiles, tmp_path: Path, normalize: Normalize) -> None:
    report = normalize(audio.truncated_wav, tmp_path / "out.mp3")
    assert report.truncated
    assert 1000 <= report.duration_ms < 1300
    assert any("truncated" in w for w in report.warnings)


def test_duration_cap(audio: AudioFiles, tmp_path: Path, normalize: Normalize) -> None:
    with pytest.raises(RecordingTooLong, match="1 s limit"):
        normalize(audio.stereo_wav, tmp_path / "out.mp3", max_duration_s=1)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("head", "fmt"),
    [
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", RecordingFormat.WAV),
        (b"RF64\xff\xff\xff\xffWAVEds64", RecordingFormat.WAV),
        (b"\x00\x00\x00\x1cftypM4A \x00\x00\x02\x00", RecordingFormat.M4A),
        (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00", RecordingFormat.MP4),
        (b"\xff\xfb\x90\x64", RecordingFormat.MP3),
        (b"\xff\xf3\x48\xc4", RecordingFormat.MP3),  # MPEG-2 layer III (8 kHz telephony)
        (b"ID3\x04\x00\x00\x00\x00\x00\x03abc\xff\xfb\x90\x64", RecordingFormat.MP3),
        (b"\xff\xf1\x50\x80", RecordingFormat.AAC),
        (b"\xff\xf9\x50\x80", RecordingFormat.AAC),
        (b"OggS\x00\x02", None),
        (b"fLaC\x00\x00", None),
        (b"<html>", None),
        (b"", None),
    ],
)
def test_sniffing_uses_magic_bytes(head: bytes, fmt: RecordingFormat | None) -> None:
    assert sniff_format(head) is fmt


def test_both_transforms_agree(audio: AudioFiles, tmp_path: Path) -> None:
    """The ffmpeg CLI path and the PyAV path meter the same 8 kHz signal: same duration, levels, silence."""
    cli = normalize_recording(audio.half_silent_wav, tmp_path / "cli.mp3", swap_channels=True)
    pyav = normalize_recording(audio.half_silent_wav, tmp_path / "pyav.mp3", swap_channels=True, use_ffmpeg_cli=False)
    assert cli.duration_ms == pyav.duration_ms == 2000
    assert [c.role for c in cli.channels] == [c.role for c in pyav.channels] == ["caller", "agent"]
    for ours, theirs in zip(cli.channels, pyav.channels, strict=True):
        assert abs(ours.rms_dbfs - theirs.rms_dbfs) < 0.1
        assert abs(ours.silence_ratio - theirs.silence_ratio) <= 0.02
    assert cli.channels[0].rms_dbfs == -120.0  # swapped: the silent channel is the caller now


def test_a_damaged_stretch_is_skipped_alike_by_both_transforms(audio: AudioFiles, tmp_path: Path) -> None:
    """A few undecodable blocks are skipped, not refused, and both transforms lose the same audio."""
    data = bytearray(audio.stereo_mp3.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 300] = bytes(300)
    damaged = tmp_path / "damaged.mp3"
    damaged.write_bytes(bytes(data))
    cli = normalize_recording(damaged, tmp_path / "cli.mp3")
    pyav = normalize_recording(damaged, tmp_path / "pyav.mp3", use_ffmpeg_cli=False)
    assert 500 <= cli.duration_ms < 2000
    assert abs(cli.duration_ms - pyav.duration_ms) <= 30
    assert cli.output_channels == pyav.output_channels == 2
