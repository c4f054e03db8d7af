"""What plays into and records out of a call: decoded files and URLs, espeak-ng speech, WAV recorders,
DTMF collection. Everything is 8 kHz mono int16 so the clock only ever moves 160-sample frames.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
import wave
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import av
import httpx
import numpy as np

from callplane.media.g711 import Pcm
from callplane.media.jitter import FRAME_SAMPLES

SAMPLE_RATE = 8000
_SILENCE: Pcm = np.zeros(FRAME_SAMPLES, dtype=np.int16)


class AudioUnavailable(ValueError):
    """The file, URL or text could not be turned into audio."""


def decode_to_pcm(path: Path) -> Pcm:
    """Any container/codec ffmpeg reads (WAV, MP3...) to 8 kHz mono int16; blocking, run it off the loop."""
    chunks: list[Pcm] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioUnavailable(f"{path.name} has no audio stream")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(container.streams.audio[0]):
                for converted in resampler.resample(frame):
                    chunks.append(converted.to_ndarray().reshape(-1).astype(np.int16))
            for converted in resampler.resample(None):
                chunks.append(converted.to_ndarray().reshape(-1).astype(np.int16))
    except av.error.FFmpegError as error:
        raise AudioUnavailable(f"cannot decode {path.name}: {error}") from error
    if not chunks:
        raise AudioUnavailable(f"{path.name} decoded to no samples")
    return np.concatenate(chunks)


def write_wav(path: Path, samples: Pcm, *, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples.astype("<i2").tobytes())


def read_wav(path: Path) -> tuple[Pcm, int]:
    """A WAV written by us: samples (interleaved when stereo) and the channel count."""
    with wave.open(str(path), "rb") as source:
        channels = source.getnchannels()
        data = source.readframes(source.getnframes())
    return np.frombuffer(data, dtype="<i2").astype(np.int16), channels


class AudioLibrary:
    """Decoded audio kept in memory (LRU by samples) and downloads kept on disk, so a prompt is
    decoded once however many calls play it."""

    def __init__(self, cache_dir: Path, *, max_cached_seconds: int = 3600) -> None:
        self._cache_dir = cache_dir
        self._max_samples = max_cached_seconds * SAMPLE_RATE
        self._decoded: OrderedDict[str, Pcm] = OrderedDict()
        self._pending: dict[str, asyncio.Future[Pcm]] = {}
        self._cache_dir.mkdir(parents=True, exist_ok=True)

    async def file(self, path: Path) -> Pcm:
        try:
            stat = path.stat()  # noqa: ASYNC240 - one stat of a local file; a thread hop per play costs more
        except OSError as error:
            raise AudioUnavailable(f"cannot read {path}: {error.strerror}") from error
        key = f"file:{path}:{stat.st_mtime_ns}:{stat.st_size}"
        return await self._once(key, lambda: asyncio.to_thread(decode_to_pcm, path))

    async def url(self, url: str, *, client: httpx.AsyncClient | None = None) -> Pcm:
        if not url.startswith(("http://", "https://")):
            raise AudioUnavailable("only http(s) URLs can be played")
        key = f"url:{url}"

        async def fetch() -> Pcm:
            target = self._cache_dir / ("url-" + hashlib.sha256(url.encode()).hexdigest())
            if not target.exists():
                await self._download(url, target, client)
            return await asyncio.to_thread(decode_to_pcm, target)

        return await self._once(key, fetch)

    async def _download(self, url: str, target: Path, client: httpx.AsyncClient | None) -> None:
        owns_client = client is None
        http = client or httpx.AsyncClient(timeout=30, follow_redirects=True)
        try:
            response = await http.get(url)
            if response.status_code != 200:
                raise AudioUnavailable(f"GET {url} answered {response.status_code}")
            partial = target.with_suffix(".part")
            partial.write_bytes(response.content)
            partial.replace(target)
        except httpx.HTTPError as error:
            raise AudioUnavailable(f"GET {url} failed: {error}") from error
        finally:
            if owns_client:
                await http.aclose()

    async def _once(self, key: str, produce: Callable[[], Awaitable[Pcm]]) -> Pcm:
        """Decode each key once even when many calls ask for it at the same moment."""
        cached = self._decoded.get(key)
        if cached is not None:
            self._decoded.move_to_end(key)
            return cached
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Pcm] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            samples = await produce()
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # mark retrieved: waiters (if any) re-raise it themselves
            raise
        finally:
            self._pending.pop(key, None)
        future.set_result(samples)
        self._remember(key, samples)
        return samples

    def _remember(self, key: str, samples: Pcm) -> None:
        self._decoded[key] = samples
        total = sum(len(value) for value in self._decoded.values())
        while total > self._max_samples and len(self._decoded) > 1:
            _, evicted = self._decoded.popitem(last=False)
            total -= len(evicted)


class SpeechSynthesizer:
    """espeak-ng rendered once per (text, voice, rate) into an 8 kHz WAV on disk, then reused."""

    def __init__(self, cache_dir: Path, library: AudioLibrary, *, binary: str = "espeak-ng") -> None:
        self._cache_dir = cache_dir
        self._library = library
        self._binary = binary
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        self._rendering: dict[Path, asyncio.Lock] = {}
        self.renders = 0

    def cache_path(self, text: str, voice: str, words_per_minute: int) -> Path:
        digest = hashlib.sha256(f"{voice}\0{words_per_minute}\0{text}".encode()).hexdigest()
        return self._cache_dir / f"tts-{digest}.wav"

    async def speak(self, text: str, *, voice: str = "en", words_per_minute: int = 160) -> Pcm:
        if not text.strip():
            raise AudioUnavailable("nothing to say")
        if not voice.replace("-", "").replace("+", "").isalnum():
            raise AudioUnavailable(f"bad voice name {voice!r}")
        target = self.cache_path(text, voice, words_per_minute)
        lock = self._rendering.setdefault(target, asyncio.Lock())
        async with lock:  # many calls asking for the same new prompt at once: render it once
            if not target.exists():
                await self._render(text, voice, words_per_minute, target)
        self._rendering.pop(target, None)
        return await self._library.file(target)

    async def _render(self, text: str, voice: str, words_per_minute: int, target: Path) -> None:
        binary = shutil.which(self._binary)
        if binary is None:
            raise AudioUnavailable(f"{self._binary} is not installed")
        with tempfile.TemporaryDirectory(dir=self._cache_dir) as scratch:
            text_file = Path(scratch) / "text.txt"
            text_file.write_text(text, encoding="utf-8")
            raw = Path(scratch) / "speech.wav"
            process = await asyncio.create_subprocess_exec(
                binary,
                "-v", voice,
                "-s", str(words_per_minute),
                "-w", str(raw),
                "-f", str(text_file),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, stderr = await process.communicate()
            if process.returncode != 0 or not raw.exists():
                raise AudioUnavailable(f"espeak-ng failed: {stderr.decode(errors='replace').strip()[:200]}")
            samples = await asyncio.to_thread(decode_to_pcm, raw)
            partial = Path(scratch) / "speech-8k.wav"
            await asyncio.to_thread(write_wav, partial, samples)
            os.replace(partial, target)
        self.renders += 1


def cadence_tone(frequencies_hz: tuple[float, ...], on_ms: int, off_ms: int, *, amplitude: int = 6000) -> Pcm:
    """One cadence of a call-progress tone: the frequencies summed for `on_ms`, then `off_ms` of silence."""
    on = np.arange(on_ms * SAMPLE_RATE // 1000) / SAMPLE_RATE
    wave_sum = sum((np.sin(2 * np.pi * frequency * on) for frequency in frequencies_hz), np.zeros_like(on))
    level = amplitude / max(1, len(frequencies_hz))
    tone = (level * wave_sum).astype(np.int16)
    return np.concatenate([tone, np.zeros(off_ms * SAMPLE_RATE // 1000, dtype=np.int16)])


def compose_tracks(paths: list[Path], target: Path, *, multi_channel: bool = False) -> int:
    """Recordings that started on the same tick (ours, 8 kHz mono) into one WAV: summed with saturation, or one
    channel per input with `multi_channel`. Shorter tracks are padded with silence. Returns the duration in ms."""
    tracks = []
    for path in paths:
        samples, channels = read_wav(path)
        if channels != 1:
            raise ValueError(f"{path.name} is not a mono recording")
        tracks.append(samples)
    length = max((len(track) for track in tracks), default=0)
    padded = [np.concatenate([track, np.zeros(length - len(track), dtype=np.int16)]) for track in tracks]
    target.parent.mkdir(parents=True, exist_ok=True)
    if multi_channel and len(padded) > 1:
        write_wav(target, np.stack(padded, axis=1).reshape(-1), channels=len(padded))
    else:
        mixed = np.sum(np.stack(padded).astype(np.int32), axis=0) if padded else np.zeros(0, dtype=np.int32)
        write_wav(target, np.clip(mixed, -32768, 32767).astype(np.int16))
    return length * 1000 // SAMPLE_RATE


class PcmPlayer:
    """Plays samples `loop_count` times; offset and timeout apply to the first loop (Infobip's rule)."""

    def __init__(self, samples: Pcm, *, loop_count: int = 1, offset_ms: int = 0, timeout_ms: int | None = None) -> None:
        if loop_count < 1:
            raise ValueError("loop_count must be at least 1")
        self._samples = samples
        self._loops_left = loop_count
        start = min(len(samples), offset_ms * SAMPLE_RATE // 1000)
        end = len(samples) if timeout_ms is None else min(len(samples), start + timeout_ms * SAMPLE_RATE // 1000)
        self._position = start
        self._end = end
        self.samples_played = 0

    def read_frame(self) -> Pcm | None:
        if self._position >= self._end:
            self._loops_left -= 1
            if self._loops_left <= 0 or len(self._samples) == 0:
                return None
            self._position, self._end = 0, len(self._samples)
        frame = self._samples[self._position : self._position + FRAME_SAMPLES]
        self._position += FRAME_SAMPLES
        if self._position > self._end:
            frame = frame[: FRAME_SAMPLES - (self._position - self._end)]
        self.samples_played += len(frame)
        if len(frame) < FRAME_SAMPLES:
            frame = np.concatenate([frame, np.zeros(FRAME_SAMPLES - len(frame), dtype=np.int16)])
        return frame


SILENCE_RMS = 150.0  # about -47 dBFS: a frame quieter than this is silence (idle lines and G.711 hiss are below)


def is_silent(frame: Pcm) -> bool:
    """Whether a frame (mono, or interleaved stereo) holds no more than line noise."""
    samples = frame.astype(np.float32)
    return float(np.sqrt(np.mean(samples * samples))) < SILENCE_RMS


class RecordingChannels(StrEnum):
    MONO = "MONO"
    STEREO = "STEREO"
    HEARD = "HEARD"  # mono, only what the far end sent: one party's own track (a dialog's per-leg file)


class WavRecorder:
    """Both directions of a call into a WAV: mixed (MONO) or heard on the left, sent on the right (STEREO);
    HEARD keeps only what the far end sent.

    Frames are buffered and written about once a second: a few kB per write keeps the event loop free.
    """

    _FLUSH_FRAMES = 50

    def __init__(
        self,
        path: Path,
        channels: RecordingChannels = RecordingChannels.MONO,
        *,
        max_silence_ms: int | None = None,
        max_duration_ms: int | None = None,
        on_limit: Callable[[], None] | None = None,
    ) -> None:
        """`max_silence_ms` / `max_duration_ms`: once the recorded audio has been silent that long, or the file is
        that long, `on_limit` is called (once; the recorder keeps writing until it is closed)."""
        self.path = path
        self.channels = channels
        self._max_frames = None if max_duration_ms is None else max(1, max_duration_ms // 20)
        self._max_silent_frames = None if max_silence_ms is None else max(1, max_silence_ms // 20)
        self._silent_frames = 0
        self.on_limit = on_limit
        self.limit_reached: str | None = None  # "MAX_DURATION" | "MAX_SILENCE"
        self._wave = wave.open(str(path), "wb")
        self._wave.setnchannels(2 if channels is RecordingChannels.STEREO else 1)
        self._wave.setsampwidth(2)
        self._wave.setframerate(SAMPLE_RATE)
        self._pending: list[bytes] = []
        self.frames_written = 0
        self.closed = False

    def write(self, inbound: Pcm | None, outbound: Pcm | None) -> None:
        # Runs for every recorded call on every tick: avoid np.clip's overhead and copies where one side is silent.
        if self.closed:
            return
        if self.channels is RecordingChannels.STEREO:
            block = np.zeros(2 * FRAME_SAMPLES, dtype=np.int16)
            if inbound is not None:
                block[0::2] = inbound
            if outbound is not None:
                block[1::2] = outbound
        elif self.channels is RecordingChannels.HEARD:
            block = _SILENCE if inbound is None else inbound
        elif inbound is None:
            block = _SILENCE if outbound is None else outbound
        elif outbound is None:
            block = inbound
        else:
            mixed = np.add(inbound, outbound, dtype=np.int32)
            block = np.minimum(np.maximum(mixed, -32768), 32767).astype(np.int16)
        self._pending.append(block.astype("<i2", copy=False).tobytes())  # a no-op on little-endian machines
        self.frames_written += 1
        if len(self._pending) >= self._FLUSH_FRAMES:
            self._flush()
        if (self._max_frames is not None or self._max_silent_frames is not None) and self.limit_reached is None:
            self._check_limits(block)

    def _check_limits(self, block: Pcm) -> None:
        if self._max_frames is not None and self.frames_written >= self._max_frames:
            self._reached("MAX_DURATION")
        elif self._max_silent_frames is not None:
            self._silent_frames = self._silent_frames + 1 if is_silent(block) else 0
            if self._silent_frames >= self._max_silent_frames:
                self._reached("MAX_SILENCE")

    def _reached(self, limit: str) -> None:
        self.limit_reached = limit
        if self.on_limit is not None:
            self.on_limit()

    def _flush(self) -> None:
        if self._pending:
            self._wave.writeframesraw(b"".join(self._pending))
            self._pending.clear()

    def close(self) -> None:
        if not self.closed:
            self._flush()
            self._wave.close()
            self.closed = True

    @property
    def duration_ms(self) -> int:
        return self.frames_written * 20


class CollectionEnd(StrEnum):
    MAX_LENGTH = "MAX_LENGTH"
    TERMINATOR = "TERMINATOR"
    TIMEOUT = "TIMEOUT"
    HANGUP = "HANGUP"


@dataclass(slots=True, frozen=True)
class DtmfCollection:
    digits: str
    ended_by: CollectionEnd


HANGUP_MARK = "\x00"
"""Put on a digit queue when the call ends, so a pending collection returns at once."""


async def collect_digits(
    digits: asyncio.Queue[str],
    *,
    max_length: int,
    terminator: str | None = None,
    first_digit_timeout_s: float = 5.0,
    inter_digit_timeout_s: float = 3.0,
) -> DtmfCollection:
    """Gather digits until max_length, the terminator (not included), a timeout or the hangup."""
    if max_length < 1:
        raise ValueError("max_length must be at least 1")
    collected = ""
    while len(collected) < max_length:
        timeout = first_digit_timeout_s if not collected else inter_digit_timeout_s
        try:
            digit = await asyncio.wait_for(digits.get(), timeout)
        except TimeoutError:
            return DtmfCollection(collected, CollectionEnd.TIMEOUT)
        if digit == HANGUP_MARK:
            return DtmfCollection(collected, CollectionEnd.HANGUP)
        if terminator is not None and digit == terminator:
            return DtmfCollection(collected, CollectionEnd.TERMINATOR)
        collected += digit
    return DtmfCollection(collected, CollectionEnd.MAX_LENGTH)
