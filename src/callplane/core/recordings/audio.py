"""Check and normalize a downloaded recording: identify it, refuse what we cannot use, write 8 kHz MP3.

One streaming pass with PyAV: demux → decode → resample to 8 kHz float planar → (swap) → measure → encode
MP3. Memory stays bounded by a few codec frames whatever the recording's length. The format is decided
from the file's first bytes, never from its name or the server's Content-Type, and the demuxer is then
forced to that format so FFmpeg cannot guess from an extension either.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import av
import numpy as np

from callplane.core.recordings.errors import (
    CorruptRecording,
    MonoNotAllowed,
    RecordingTooLong,
    UnsupportedFormat,
    VideoNotAllowed,
)

SUPPORTED = "WAV, MP3, MP4 (audio-only), AAC or M4A"
_SNIFF_BYTES = 64 * 1024
_DBFS_FLOOR = -120.0  # what digital silence reports instead of -inf (JSON has no infinity)


class RecordingFormat(StrEnum):
    """Container formats the vendors' ingestion APIs accept (Invoca: WAV/MP3/MP4; Zipteams: +AAC/M4A)."""

    WAV = "wav"
    MP3 = "mp3"
    MP4 = "mp4"
    AAC = "aac"  # raw ADTS stream
    M4A = "m4a"


_DEMUXER = {
    RecordingFormat.WAV: "wav",
    RecordingFormat.MP3: "mp3",
    RecordingFormat.MP4: "mp4",
    RecordingFormat.M4A: "mp4",
    RecordingFormat.AAC: "aac",
}
_M4A_BRANDS = frozenset({b"M4A ", b"M4B ", b"M4P "})


def _id3_size(head: bytes) -> int:
    """Length of a leading ID3v2 tag (MP3s often start with one, sometimes an AAC stream too)."""
    if len(head) < 10 or head[:3] != b"ID3":
        return 0
    size = (head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F)
    return 10 + size + (10 if head[5] & 0x10 else 0)


def sniff_format(head: bytes) -> RecordingFormat | None:
    """Identify a supported container from its first bytes (magic numbers), or None."""
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return RecordingFormat.WAV
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return RecordingFormat.M4A if head[8:12] in _M4A_BRANDS else RecordingFormat.MP4
    offset = _id3_size(head)
    frame = head[offset : offset + 2]
    if len(frame) == 2 and frame[0] == 0xFF and frame[1] & 0xE0 == 0xE0:
        layer = (frame[1] >> 1) & 0x3
        if layer == 0 and frame[1] & 0xF0 == 0xF0:  # 12-bit sync, layer 00: ADTS
            return RecordingFormat.AAC
        if layer == 1:  # MPEG audio layer III
            return RecordingFormat.MP3
    if offset and len(head) <= offset:
        return RecordingFormat.MP3  # an ID3 tag longer than what we read: MP3 is by far the likeliest
    return None


def _describe_unknown(path: Path, head: bytes) -> str:
    """A reason a person can act on for content we do not accept."""
    text = head[:512].lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<")):
        return "the file is HTML/XML text, not audio; the URL probably points at a web page or an error page"
    if text.startswith((b"{", b"[")):
        return "the file is JSON text, not audio; the URL probably points at an API response, not the recording"
    try:
        with open(path, "rb") as handle, av.open(handle, metadata_errors="ignore") as container:
            kinds = ", ".join(f"{s.type} {s.codec_context.name}" for s in container.streams) or "no streams"
            name = container.format.long_name or container.format.name
            return f"the file is {name} ({kinds}); supported formats are {SUPPORTED}"
    except (av.FFmpegError, ValueError, OSError):
        return f"the file is not audio in any format we recognise; supported formats are {SUPPORTED}"


@dataclass(frozen=True, slots=True)
class ChannelLevel:
    """Loudness of one output channel, measured on the 8 kHz signal that downstream steps will hear."""

    role: str  # "caller", "agent", or "mono"
    rms_dbfs: float  # full-scale square wave = 0 dBFS, full-scale sine ≈ -3 dBFS; silence reports -120
    silence_ratio: float  # fraction of 20 ms frames quieter than the silence threshold


@dataclass(frozen=True, slots=True)
class NormalizedRecording:
    """What normalization found and produced; the report stored with the recording."""

    path: Path
    size_bytes: int
    duration_ms: int
    original_format: RecordingFormat
    original_codec: str
    original_sample_rate_hz: int
    original_channels: int
    output_sample_rate_hz: int
    output_channels: int
    single_channel: bool
    swapped: bool
    channels: tuple[ChannelLevel, ...]
    truncated: bool = False
    warnings: tuple[str, ...] = ()


class _LevelMeter:
    """Running per-channel RMS and silent-frame count over fixed-length frames, O(1) memory."""

    def __init__(self, channels: int, frame_samples: int, threshold_dbfs: float) -> None:
        self.frame_samples = frame_samples
        self.threshold_power = 10.0 ** (threshold_dbfs / 10.0)
        self.sum_squares = np.zeros(channels, dtype=np.float64)
        self.samples = 0
        self.frames = 0
        self.silent = np.zeros(channels, dtype=np.int64)
        self._carry = np.zeros((channels, 0), dtype=np.float32)

    def add(self, block: np.ndarray[Any, np.dtype[np.float32]]) -> None:
        self.sum_squares += np.einsum("ij,ij->i", block, block, dtype=np.float64)
        self.samples += block.shape[1]
        data = np.concatenate((self._carry, block), axis=1) if self._carry.shape[1] else block
        whole = data.shape[1] // self.frame_samples * self.frame_samples
        if whole:
            frames = data[:, :whole].reshape(data.shape[0], -1, self.frame_samples)
            power = np.mean(np.square(frames, dtype=np.float32), axis=2)
            self.silent += np.count_nonzero(power < self.threshold_power, axis=1)
            self.frames += frames.shape[1]
        self._carry = data[:, whole:].copy()

    def levels(self, roles: tuple[str, ...]) -> tuple[ChannelLevel, ...]:
        out = []
        for index, role in enumerate(roles):
            mean_square = self.sum_squares[index] / self.samples if self.samples else 0.0
            dbfs = 10.0 * math.log10(mean_square) if mean_square > 0 else _DBFS_FLOOR
            ratio = float(self.silent[index]) / self.frames if self.frames else 1.0
            level = round(max(dbfs, _DBFS_FLOOR), 2)
            out.append(ChannelLevel(role=role, rms_dbfs=level, silence_ratio=round(ratio, 4)))
        return tuple(out)


def _wav_shortfall(source: Path, head: bytes) -> int:
    """Bytes the WAV ``data`` chunk declares but the file does not hold (a cut-off download or copy).

    FFmpeg quietly clamps a WAV's duration to what is there, so this reads the chunk table itself. Streamed
    WAVs declare 0 or 0xFFFFFFFF ("unknown"); those are never called truncated.
    """
    offset = 12
    while offset + 8 <= len(head):
        chunk_id, size = head[offset : offset + 4], int.from_bytes(head[offset + 4 : offset + 8], "little")
        if chunk_id == b"data":
            if size in (0, 0xFFFFFFFF) or head[:4] != b"RIFF":
                return 0
            return max(0, size - (source.stat().st_size - offset - 8))
        offset += 8 + size + (size & 1)
    return 0


def _open_checked(source: Path) -> tuple[RecordingFormat, Any, bytes]:
    try:
        with open(source, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError as exc:
        raise CorruptRecording(f"the recording file cannot be read: {exc.strerror}") from exc
    if not head:
        raise CorruptRecording("the recording file is empty (0 bytes)")
    fmt = sniff_format(head)
    if fmt is None:
        raise UnsupportedFormat(_describe_unknown(source, head))
    try:
        container = av.open(str(source), format=_DEMUXER[fmt], metadata_errors="ignore")
    except (av.FFmpegError, ValueError) as exc:
        raise CorruptRecording(f"the recording looks like {fmt.value.upper()} but cannot be read: {exc}") from exc
    return fmt, container, head


def _has_real_video(container: Any) -> bool:
    """Cover art (an attached picture) is fine in an M4A/MP3; a moving picture is not."""
    attached = av.stream.Disposition.attached_pic
    return any(not (stream.disposition & attached) for stream in container.streams.video)


def normalize_recording(
    source: Path,
    dest: Path,
    *,
    swap_channels: bool = False,
    require_stereo: bool = True,
    output_sample_rate_hz: int = 8000,
    bit_rate: int | None = None,
    silence_threshold_dbfs: float = -45.0,
    max_duration_s: float | None = None,
) -> NormalizedRecording:
    """Check ``source`` and write the normalized MP3 to ``dest`` (atomically); raises an ``AudioError`` leaf.

    Channel 0 of the output is the caller and channel 1 the agent; ``swap_channels`` is for recordings made
    the other way round (Invoca: outbound calls). A mono recording is refused when ``require_stereo`` (the
    Invoca rule), otherwise kept mono and reported as single-channel.
    """
    fmt, container, head = _open_checked(source)
    wav_missing_bytes = _wav_shortfall(source, head) if fmt is RecordingFormat.WAV else 0
    with container:
        if fmt in (RecordingFormat.MP4, RecordingFormat.M4A) and _has_real_video(container):
            raise VideoNotAllowed()
        if not container.streams.audio:
            raise CorruptRecording(f"the {fmt.value.upper()} file has no audio stream")
        stream = container.streams.audio[0]
        codec = stream.codec_context.codec.canonical_name
        frames = _decoded_frames(container, stream, fmt)
        try:
            first = next(frames)
        except StopIteration:
            raise CorruptRecording(f"the {fmt.value.upper()} file contains no decodable audio") from None
        in_channels = first.layout.nb_channels
        in_rate = first.sample_rate
        if in_channels > 2:
            raise UnsupportedFormat(
                f"the recording has {in_channels} channels; expected 2 (caller and agent) or, if allowed, 1"
            )
        if in_channels == 1 and require_stereo:
            raise MonoNotAllowed("recordings must be dual-channel (caller and agent); this one is single-channel")
        declared_ms = _declared_duration_ms(container, stream)
        out_channels = in_channels
        layout = "stereo" if out_channels == 2 else "mono"
        roles = ("caller", "agent") if out_channels == 2 else ("mono",)
        swapped = swap_channels and out_channels == 2
        warnings: list[str] = []
        if swap_channels and not swapped:
            warnings.append("swap_channels ignored: the recording is single-channel")

        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.part"
        meter = _LevelMeter(out_channels, output_sample_rate_hz // 50, silence_threshold_dbfs)
        in_samples = 0
        try:
            bit_rate_bps = bit_rate or (32_000 if out_channels == 2 else 16_000)
            encoder = _Mp3Encoder(tmp, rate=output_sample_rate_hz, layout=layout, bit_rate=bit_rate_bps)
            with encoder:
                resampler = av.AudioResampler(format="fltp", layout=layout, rate=output_sample_rate_hz)
                max_samples = None if max_duration_s is None else int(max_duration_s * in_rate)

                def emit(resampled: list[Any]) -> None:
                    for frame in resampled:
                        block = frame.to_ndarray()
                        if swapped:
                            block = block[::-1]
                        block = np.ascontiguousarray(block, dtype=np.float32)
                        meter.add(block)
                        encoder.write(block)

                for frame in _chain(first, frames):
                    in_samples += frame.samples
                    if max_samples is not None and in_samples > max_samples:
                        raise RecordingTooLong(f"the recording is longer than the {max_duration_s:g} s limit")
                    frame.pts = None  # the resampler restamps; container timestamps can be broken
                    emit(resampler.resample(frame))
                emit(resampler.resample(None))
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    duration_ms = round(in_samples * 1000 / in_rate)
    stopped_early = frames.stopped_early
    truncated = stopped_early is not None or (declared_ms is not None and duration_ms < declared_ms * 0.98 - 100)
    if stopped_early is not None:
        warnings.append(f"decoding stopped early at {duration_ms / 1000:.1f} s: {stopped_early}")
    elif wav_missing_bytes:
        truncated = True
        warnings.append(f"the WAV file is truncated: {wav_missing_bytes} bytes of declared audio are missing")
    elif truncated:
        warnings.append(f"the file declares {declared_ms} ms of audio but holds {duration_ms} ms; it looks truncated")
    return NormalizedRecording(
        path=dest,
        size_bytes=dest.stat().st_size,
        duration_ms=duration_ms,
        original_format=fmt,
        original_codec=codec,
        original_sample_rate_hz=in_rate,
        original_channels=in_channels,
        output_sample_rate_hz=output_sample_rate_hz,
        output_channels=out_channels,
        single_channel=out_channels == 1,
        swapped=swapped,
        channels=meter.levels(roles),
        truncated=truncated,
        warnings=tuple(warnings),
    )


class _Mp3Encoder:
    """MP3 encoding of planar float blocks: the ffmpeg binary when it is installed, else PyAV's encoder.

    PyAV's bundled libmp3lame measured about 2.5x slower than the system ffmpeg's at the same settings, and the
    encoder is most of normalization's time; piping PCM to ffmpeg also runs the encoder on another core.
    """

    def __init__(self, dest: Path, *, rate: int, layout: str, bit_rate: int) -> None:
        self.dest, self.rate, self.layout, self.bit_rate = dest, rate, layout, bit_rate
        self.channels = 2 if layout == "stereo" else 1
        self._process: subprocess.Popen[bytes] | None = None
        self._output: Any = None
        self._stream: Any = None

    def __enter__(self) -> _Mp3Encoder:
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg:
            self._process = subprocess.Popen(  # noqa: S603 - fixed arguments, no shell
                [
                    ffmpeg,
                    "-nostdin",
                    "-loglevel",
                    "error",
                    "-y",
                    "-f",
                    "f32le",
                    "-ar",
                    str(self.rate),
                    "-ac",
                    str(self.channels),
                    "-i",
                    "pipe:0",
                    "-c:a",
                    "libmp3lame",
                    "-b:a",
                    str(self.bit_rate),
                    "-f",
                    "mp3",
                    str(self.dest),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        else:
            self._output = av.open(str(self.dest), "w", format="mp3")
            self._stream = self._output.add_stream("libmp3lame", rate=self.rate, layout=self.layout)
            self._stream.bit_rate = self.bit_rate
        return self

    def write(self, planar: np.ndarray) -> None:
        if self._process is not None:
            assert self._process.stdin is not None
            try:
                self._process.stdin.write(planar.T.tobytes())  # interleave the channels
            except BrokenPipeError as exc:
                raise CorruptRecording(f"the MP3 encoder stopped: {self._stderr()}") from exc
            return
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=self.layout)
        frame.sample_rate = self.rate
        for packet in self._stream.encode(frame):
            self._output.mux(packet)

    def _stderr(self) -> str:
        assert self._process is not None and self._process.stderr is not None
        return self._process.stderr.read().decode(errors="replace").strip()[:500]

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        if self._process is not None:
            process = self._process
            assert process.stdin is not None and process.stderr is not None
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
            try:
                if error is not None:
                    process.kill()
                    process.wait()
                    return
                if process.wait() != 0:
                    raise CorruptRecording(f"the MP3 encoder failed: {self._stderr()}")
            finally:
                process.stderr.close()
            return
        if error is None:
            for packet in self._stream.encode(None):
                self._output.mux(packet)
        self._output.close()


async def normalize_recording_async(source: Path, dest: Path, **options: Any) -> NormalizedRecording:
    """``normalize_recording`` off the event loop (decoding is CPU work; FFmpeg releases the GIL)."""
    return await asyncio.to_thread(normalize_recording, source, dest, **options)


def _chain(first: Any, rest: Any) -> Any:
    yield first
    yield from rest


def _declared_duration_ms(container: Any, stream: Any) -> int | None:
    if stream.duration is not None and stream.time_base is not None:
        return int(stream.duration * stream.time_base * 1000)
    if container.duration is not None:
        return int(container.duration / 1000)
    return None


class _Decoded:
    """Decoded frames of one stream; tolerates a few bad packets, records where decoding had to stop."""

    _MAX_BAD_PACKETS = 20

    def __init__(self, container: Any, stream: Any, fmt: RecordingFormat) -> None:
        self._packets = container.demux(stream)
        self._stream = stream
        self._fmt = fmt
        self._pending: list[Any] = []
        self._bad = 0
        self._good = 0
        self._done = False
        self.stopped_early: str | None = None

    def __iter__(self) -> _Decoded:
        return self

    def __next__(self) -> Any:
        while not self._pending:
            if self._done:
                raise StopIteration
            try:
                packet = next(self._packets)
            except StopIteration:
                self._done = True
                continue
            except av.FFmpegError as exc:  # the demuxer hit damaged or missing data
                self._done = True
                if self._good:
                    self.stopped_early = str(exc)
                    continue
                raise CorruptRecording(f"the {self._fmt.value.upper()} file cannot be read: {exc}") from exc
            try:
                self._pending = list(packet.decode())
            except av.FFmpegError as exc:
                self._bad += 1
                if self._bad > self._MAX_BAD_PACKETS and self._bad > self._good // 10:
                    raise CorruptRecording(
                        f"the {self._fmt.value.upper()} file is damaged: {self._bad} undecodable blocks ({exc})"
                    ) from exc
                continue
            self._good += len(self._pending)
        return self._pending.pop(0)


def _decoded_frames(container: Any, stream: Any, fmt: RecordingFormat) -> _Decoded:
    return _Decoded(container, stream, fmt)
