"""Real speech for the live speech tests, as a call's far end sends it: 8 kHz int16 mono.

The committed test calls (tests/transcripts/testset: CMU Flite and espeak-ng voices through a telephone channel,
with their reference texts) and short answers spoken by Flite's slt voice.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from callplane.testing.speech_calls import CallReference, read_references

TESTSET = Path(__file__).parents[1] / "transcripts" / "testset"
REFERENCES = {reference.name: reference for reference in read_references(TESTSET / "references.json")}
Pcm = npt.NDArray[np.int16]


def reference(name: str) -> CallReference:
    return REFERENCES[name]


@functools.cache
def call_channel(name: str, channel: int) -> Pcm:
    """One channel (0 caller, 1 agent) of a committed test call, 8 kHz int16."""
    with av.open(str(TESTSET / REFERENCES[name].audio)) as container:
        resampler = av.AudioResampler(format="s16p", layout="stereo", rate=8000)
        frames = []
        for frame in container.decode(container.streams.audio[0]):
            frames += [part.to_ndarray() for part in resampler.resample(frame)]
        frames += [part.to_ndarray() for part in resampler.resample(None)]
    return np.ascontiguousarray(np.concatenate(frames, axis=1)[channel].astype(np.int16))


def flite_8k(text: str, out: Path) -> Pcm:
    """`text` spoken by CMU Flite's slt voice, 8 kHz int16 (written to `out` as a WAV too)."""
    raw = out.with_suffix(".raw.wav")
    subprocess.run(["flite", "-voice", "slt", "-t", text, "-o", str(raw)], check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", "8000", "-b", "16", "-c", "1", str(out), "norm", "-3"], check=True)
    with av.open(str(out)) as container:
        samples = [frame.to_ndarray().reshape(-1) for frame in container.decode(audio=0)]
    return np.concatenate(samples).astype(np.int16)


def silence(seconds: float) -> Pcm:
    return np.zeros(int(seconds * 8000), dtype=np.int16)
