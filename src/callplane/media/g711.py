"""G.711 µ-law (PCMU) and A-law (PCMA) as numpy lookup tables.

Decoding is one 256-entry table lookup and encoding one 65 536-entry lookup, so a 20 ms frame costs two
numpy indexing operations instead of a Python loop (and no dependency on the deprecated `audioop`).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import numpy.typing as npt

Pcm = npt.NDArray[np.int16]
"""Signed 16-bit linear samples, 8 kHz mono throughout the media plane."""

_MULAW_BIAS = 0x84


class PayloadType(IntEnum):
    """The static RTP payload types of the two codecs we speak (RFC 3551)."""

    PCMU = 0
    PCMA = 8


def _decode_mulaw_table() -> Pcm:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + _MULAW_BIAS) << exponent) - _MULAW_BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _decode_alaw_table() -> Pcm:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(
        exponent == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
    )
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


def _encode_mulaw_table() -> npt.NDArray[np.uint8]:
    """Sun's reference g711.c (the one audioop uses): 14-bit magnitude, bias 33, eight segments."""
    linear = np.arange(-32768, 32768, dtype=np.int32) >> 2
    mask = np.where(linear < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.where(linear < 0, -linear, linear), 8159) + 0x21
    segment_ends = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    segment = np.searchsorted(segment_ends, magnitude, side="left")
    code = (np.minimum(segment, 7) << 4) | ((magnitude >> (segment + 1)) & 0x0F)
    code = np.where(segment >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


def _encode_alaw_table() -> npt.NDArray[np.uint8]:
    linear = np.arange(-32768, 32768, dtype=np.int32) >> 3  # A-law works on 13 bits
    mask = np.where(linear >= 0, 0xD5, 0x55)
    magnitude = np.where(linear >= 0, linear, -linear - 1)
    segment_ends = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    segment = np.searchsorted(segment_ends, magnitude, side="left")
    shift = np.where(segment < 2, 1, segment)
    code = (np.minimum(segment, 7) << 4) | ((magnitude >> shift) & 0x0F)
    code = np.where(segment >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


MULAW_TO_LINEAR: Pcm = _decode_mulaw_table()
ALAW_TO_LINEAR: Pcm = _decode_alaw_table()
LINEAR_TO_MULAW: npt.NDArray[np.uint8] = _encode_mulaw_table()
LINEAR_TO_ALAW: npt.NDArray[np.uint8] = _encode_alaw_table()

_DECODERS = {PayloadType.PCMU: MULAW_TO_LINEAR, PayloadType.PCMA: ALAW_TO_LINEAR}
# The same tables re-indexed by the sample's raw uint16 bits, so encoding is one lookup with no arithmetic.
_ENCODERS = {
    PayloadType.PCMU: np.roll(LINEAR_TO_MULAW, -32768),
    PayloadType.PCMA: np.roll(LINEAR_TO_ALAW, -32768),
}

SILENCE_BYTE = {PayloadType.PCMU: 0xFF, PayloadType.PCMA: 0xD5}


def decode(payload: bytes, payload_type: PayloadType) -> Pcm:
    """G.711 bytes to linear samples."""
    return _DECODERS[payload_type][np.frombuffer(payload, dtype=np.uint8)]


def encode(samples: Pcm, payload_type: PayloadType) -> bytes:
    """Linear samples to G.711 bytes."""
    return _ENCODERS[payload_type][samples.astype(np.int16, copy=False).view(np.uint16)].tobytes()
