"""Signals detected from what was said on a call, and values of signals submitted through the APIs."""

from callplane.core.signals.errors import InvalidSignalDefinition, InvalidSignalValue
from callplane.core.signals.matching import (
    Evidence,
    HashedBagOfWordsEmbedder,
    Phrase,
    SentenceEmbedder,
    SignalDefinition,
    SignalDetection,
    detect_signals,
    match_examples,
    match_phrases,
    parse_signal_value,
    tokens,
)

__all__ = [
    "Evidence",
    "HashedBagOfWordsEmbedder",
    "InvalidSignalDefinition",
    "InvalidSignalValue",
    "Phrase",
    "SentenceEmbedder",
    "SignalDefinition",
    "SignalDetection",
    "detect_signals",
    "match_examples",
    "match_phrases",
    "parse_signal_value",
    "tokens",
]
