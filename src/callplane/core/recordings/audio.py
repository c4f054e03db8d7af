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
import re
import secrets
import shutil
import subprocess
import tempfile
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
        self._carry = np.zeros((0, channels), dtype=np.float32)  # squares of a frame's first samples

    def add(self, block: np.ndarray[Any, np.dtype[np.float32]]) -> None:
        """Meter ``block``, shaped (samples, channels): interleaved PCM as it comes off a pipe."""
        squares = np.square(block, dtype=np.float32)
        self.samples += block.shape[0]
        data = np.concatenate((self._carry, squares)) if self._carry.shape[0] else squares
        whole = data.shape[0] // self.frame_samples * self.frame_samples
        if whole:
            # Per frame and channel: the sum of squares (einsum: one pass, no temporaries).
            energy = np.einsum("ijk->ik", data[:whole].reshape(-1, self.frame_samples, data.shape[1]))
            self.sum_squares += energy.sum(axis=0, dtype=np.float64)
            self.silent += np.count_nonzero(energy < self.threshold_power * self.frame_samples, axis=0)
            self.frames += energy.shape[0]
        self._carry = data[whole:].copy()

    def levels(self, roles: tuple[str, ...]) -> tuple[ChannelLevel, ...]:
        out = []
        sum_squares = self.sum_squares + self._carry.sum(axis=0, dtype=np.float64)  # the last, partial frame
        for index, role in enumerate(roles):
            mean_square = sum_squares[index] / self.samples if self.samples else 0.0
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
        # A WAV's header says everything; without a small probe size FFmpeg reads 5 MB of PCM first (~30 ms).
        options = {"probesize": "65536"} if fmt is RecordingFormat.WAV else {}
        container = av.open(str(source), format=_DEMUXER[fmt], options=options, metadata_errors="ignore")
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
    use_ffmpeg_cli: bool = True,
) -> NormalizedRecording:
    """Check ``source`` and write the normalized MP3 to ``dest`` (atomically); raises an ``AudioError`` leaf.

    Channel 0 of the output is the caller and channel 1 the agent; ``swap_channels`` is for recordings made
    the other way round (Invoca: outbound calls). A mono recording is refused when ``require_stereo`` (the
    Invoca rule), otherwise kept mono and reported as single-channel.

    PyAV identifies the file and decodes its first frame (the checks); the transform itself then runs in one
    ffmpeg CLI process (decode, swap, resample, encode, plus the 8 kHz PCM for metering on a pipe) when the
    binary is installed and ``use_ffmpeg_cli``, else in-process with PyAV (about 2.5x slower: PyAV's bundled
    LAME is slower than Debian's, and every decoded frame crosses into Python).
    """
    try:
        pinned = open(source, "rb")  # closed below, after every other open of it
    except OSError as exc:
        raise CorruptRecording(f"the recording file cannot be read: {exc.strerror}") from exc
    with pinned:
        # Every later open (PyAV's, the ffmpeg CLI's) goes through this descriptor, so the file checked is the file
        # converted even if the path is replaced or removed meanwhile (a second run of the same job refetching).
        fd = pinned.fileno() if os.path.isdir("/dev/fd") else None
        return _normalize(
            Path(f"/dev/fd/{fd}") if fd is not None else source,
            dest,
            fd=fd,
            swap_channels=swap_channels,
            require_stereo=require_stereo,
            output_sample_rate_hz=output_sample_rate_hz,
            bit_rate=bit_rate,
            silence_threshold_dbfs=silence_threshold_dbfs,
            max_duration_s=max_duration_s,
            use_ffmpeg_cli=use_ffmpeg_cli,
        )


def _normalize(
    source: Path,
    dest: Path,
    *,
    fd: int | None,
    swap_channels: bool,
    require_stereo: bool,
    output_sample_rate_hz: int,
    bit_rate: int | None,
    silence_threshold_dbfs: float,
    max_duration_s: float | None,
    use_ffmpeg_cli: bool,
) -> NormalizedRecording:
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
        roles = ("caller", "agent") if out_channels == 2 else ("mono",)
        swapped = swap_channels and out_channels == 2
        warnings: list[str] = []
        if swap_channels and not swapped:
            warnings.append("swap_channels ignored: the recording is single-channel")
        ffmpeg = shutil.which("ffmpeg") if use_ffmpeg_cli else None

        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.part"
        meter = _LevelMeter(out_channels, output_sample_rate_hz // 50, silence_threshold_dbfs)
        transform = _Transform(
            channels=out_channels,
            swap=swapped,
            rate=output_sample_rate_hz,
            bit_rate=bit_rate,
            max_duration_s=max_duration_s,
            meter=meter,
        )
        try:
            if ffmpeg is not None:
                container.close()  # the CLI reads the file itself; only the first frame was decoded here
                duration_ms, stopped_early = _transform_cli(
                    ffmpeg, source, fmt, tmp, transform, fd=fd, frame_samples=first.samples, in_rate=in_rate
                )
            else:
                duration_ms, stopped_early = _transform_pyav(first, frames, tmp, transform, in_rate=in_rate)
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

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


def ffmpeg_transform_args(*, channels: int, swap: bool, rate: int = 8000, bit_rate: int | None = None) -> list[str]:
    """The ffmpeg CLI output arguments of the normalization transform: swap, resample, fix the layout, encode.

    The same filter and encoder settings as `normalize_recording` (bench/process.py's floor runs these).
    """
    return ["-af", _channel_filter(channels=channels, swap=swap, rate=rate), *_mp3_args(channels, bit_rate)]


def _channel_filter(*, channels: int, swap: bool, rate: int) -> str:
    layout = "stereo" if channels == 2 else "mono"
    # A pure channel mapping: swresample copies the planes, no mixing.
    steps = ["pan=stereo|c0=c1|c1=c0"] if swap and channels == 2 else []
    return ",".join([*steps, f"aresample={rate}", f"aformat=channel_layouts={layout}"])


def _mp3_args(channels: int, bit_rate: int | None) -> list[str]:
    return ["-c:a", "libmp3lame", "-b:a", str(_bit_rate(channels, bit_rate)), "-f", "mp3"]


def _bit_rate(channels: int, bit_rate: int | None) -> int:
    return bit_rate or (32_000 if channels == 2 else 16_000)


@dataclass(frozen=True, slots=True)
class _Transform:
    channels: int
    swap: bool
    rate: int
    bit_rate: int | None
    max_duration_s: float | None
    meter: _LevelMeter

    def too_long(self, seconds: float) -> bool:
        return self.max_duration_s is not None and seconds > self.max_duration_s

    def too_long_error(self) -> RecordingTooLong:
        return RecordingTooLong(f"the recording is longer than the {self.max_duration_s:g} s limit")


# What ffmpeg 5-7 print for a packet it cannot decode, and for a demuxer that fails mid-file.
_DECODE_ERROR = re.compile(r"error while decoding stream|error submitting packet to decoder|decoding error", re.I)
_PCM_CHUNK = 1 << 18  # 256 KiB of 8 kHz float PCM: 16 s of stereo per read


def _transform_cli(
    ffmpeg: str,
    source: Path,
    fmt: RecordingFormat,
    tmp: Path,
    transform: _Transform,
    *,
    fd: int | None,
    frame_samples: int,
    in_rate: int,
) -> tuple[int, str | None]:
    """Decode, swap, resample and encode in one ffmpeg process, as the CLI alone would; the 8 kHz float PCM it
    encodes also comes back on a pipe for metering. Returns (duration in ms, why decoding stopped early)."""
    graph = f"[0:a:0]{_channel_filter(channels=transform.channels, swap=transform.swap, rate=transform.rate)}"
    command = [
        ffmpeg,
        *("-nostdin", "-hide_banner", "-loglevel", "error", "-y"),
        *("-f", _DEMUXER[fmt], "-i", str(source)),  # forced demuxer: the content decided the format
        *("-filter_complex", f"{graph},asplit=2[mp3][pcm]"),
        *("-map", "[mp3]", *_mp3_args(transform.channels, transform.bit_rate), str(tmp)),
        *("-map", "[pcm]", "-c:a", "pcm_f32le", "-f", "f32le", "pipe:1"),
    ]
    samples = 0
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a chatty stderr can never block the encoder
        process = subprocess.Popen(  # noqa: S603 - fixed arguments, no shell
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            pass_fds=(fd,) if fd is not None else (),
        )
        assert process.stdout is not None
        try:
            with process.stdout as pcm:
                while chunk := pcm.read(_PCM_CHUNK):
                    whole = len(chunk) // (4 * transform.channels) * 4 * transform.channels
                    block = np.frombuffer(chunk, dtype=np.float32, count=whole // 4).reshape(-1, transform.channels)
                    transform.meter.add(block)
                    samples += block.shape[0]
                    if transform.too_long(samples / transform.rate):
                        raise transform.too_long_error()
            code = process.wait()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        log.seek(0)
        messages = log.read().decode(errors="replace").splitlines()
    duration_ms = round(samples * 1000 / transform.rate)
    if code != 0:
        reason = messages[-1] if messages else f"exit status {code}"
        raise CorruptRecording(f"the {fmt.value.upper()} file cannot be converted: {reason[:300]}")
    if not samples:
        raise CorruptRecording(f"the {fmt.value.upper()} file contains no decodable audio")
    bad = sum(1 for line in messages if _DECODE_ERROR.search(line))
    good = samples * in_rate // (transform.rate * max(frame_samples, 1))
    if bad > _Decoded.MAX_BAD_PACKETS and bad > good // 10:
        raise CorruptRecording(f"the {fmt.value.upper()} file is damaged: {bad} undecodable blocks")
    stopped = [
        line.split(": ", 1)[-1]
        for line in messages
        if line.startswith(f"{source}: ") or "error during demuxing" in line.lower()
    ]
    return duration_ms, stopped[-1] if stopped else None


def _transform_pyav(
    first: Any, frames: _Decoded, tmp: Path, transform: _Transform, *, in_rate: int
) -> tuple[int, str | None]:
    """The same transform in-process: PyAV's resampler and its bundled LAME."""
    layout = "stereo" if transform.channels == 2 else "mono"
    in_samples = 0
    with av.open(str(tmp), "w", format="mp3") as output:
        encoder = output.add_stream("libmp3lame", rate=transform.rate, layout=layout)
        encoder.bit_rate = _bit_rate(transform.channels, transform.bit_rate)
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=transform.rate)

        def emit(resampled: list[Any]) -> None:
            for frame in resampled:
                block = frame.to_ndarray()
                if transform.swap:
                    block = block[::-1]
                block = np.ascontiguousarray(block, dtype=np.float32)
                transform.meter.add(block.T)
                planar = av.AudioFrame.from_ndarray(block, format="fltp", layout=layout)
                planar.sample_rate = transform.rate
                for packet in encoder.encode(planar):
                    output.mux(packet)

        for frame in _chain(first, frames):
            in_samples += frame.samples
            if transform.too_long(in_samples / in_rate):
                raise transform.too_long_error()
            frame.pts = None  # the resampler restamps; container timestamps can be broken
            emit(resampler.resample(frame))
        emit(resampler.resample(None))
        for packet in encoder.encode(None):
            output.mux(packet)
    return round(in_samples * 1000 / in_rate), frames.stopped_early


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

    MAX_BAD_PACKETS = 20

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
                if self._bad > self.MAX_BAD_PACKETS and self._bad > self._good // 10:
                    raise CorruptRecording(
                        f"the {self._fmt.value.upper()} file is damaged: {self._bad} undecodable blocks ({exc})"
                    ) from exc
                continue
            self._good += len(self._pending)
        return self._pending.pop(0)


def _decoded_frames(container: Any, stream: Any, fmt: RecordingFormat) -> _Decoded:
    return _Decoded(container, stream, fmt)
