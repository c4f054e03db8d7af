"""Audio in the shape Whisper wants: float32, 16 kHz, one row per channel.

PyAV decodes in process (no subprocess, any container FFmpeg reads) and resamples with libswresample,
which is also used for arrays given at another rate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from callplane.core.transcripts.errors import UnsupportedAudio

WHISPER_RATE = 16_000
_LAYOUTS = {1: "mono", 2: "stereo"}


def _resampled(frames: list[npt.NDArray[Any]]) -> npt.NDArray[np.float32]:
    if not frames:
        raise UnsupportedAudio("the recording has no audio samples")
    return np.ascontiguousarray(np.concatenate(frames, axis=1), dtype=np.float32)


def decode_file(path: str | Path) -> npt.NDArray[np.float32]:
    """Decode the first audio stream to ``(channels, samples)`` float32 at 16 kHz, channels kept apart."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise UnsupportedAudio(f"{path} has no audio stream")
            stream = container.streams.audio[0]
            channels = stream.codec_context.channels
            if channels not in _LAYOUTS:
                raise UnsupportedAudio(f"{path} has {channels} channels; only mono and stereo are transcribed")
            resampler = av.AudioResampler(format="fltp", layout=_LAYOUTS[channels], rate=WHISPER_RATE)
            frames: list[npt.NDArray[Any]] = []
            for frame in container.decode(stream):
                frames.extend(f.to_ndarray() for f in resampler.resample(frame))
            frames.extend(f.to_ndarray() for f in resampler.resample(None))
    except av.FFmpegError as error:
        raise UnsupportedAudio(f"cannot decode {path}: {error}") from error
    return _resampled(frames)


def as_channels(samples: npt.NDArray[np.floating], sample_rate: int) -> npt.NDArray[np.float32]:
    """Shape samples as ``(channels, samples)`` float32 at 16 kHz; 1-D input is one mono channel."""
    array = np.asarray(samples, dtype=np.float32)
    if array.ndim == 1:
        array = array[np.newaxis, :]
    if array.ndim != 2 or array.shape[0] not in _LAYOUTS:
        raise UnsupportedAudio(f"samples shaped {array.shape}; expected (samples,) or (1 or 2, samples)")
    if array.shape[1] == 0:
        raise UnsupportedAudio("the recording has no audio samples")
    if sample_rate == WHISPER_RATE:
        return np.ascontiguousarray(array)
    layout = _LAYOUTS[array.shape[0]]
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(array), format="fltp", layout=layout)
    frame.sample_rate = sample_rate
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=WHISPER_RATE)
    frames = [f.to_ndarray() for f in resampler.resample(frame)]
    frames.extend(f.to_ndarray() for f in resampler.resample(None))
    return _resampled(frames)
