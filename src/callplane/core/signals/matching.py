"""Signals: whether something was said on a call, with the words that show it.

A definition names a signal and says how to detect it: phrases per speaker (``caller``, ``agent``, ``any``)
and example sentences. Phrases are matched on whole words after case folding and punctuation removal
("Cancel my subscription!" matches ``cancel my subscription``; ``cancel`` does not match "cancellation";
``cancel*`` does). Examples are matched by sentence similarity with a ``SentenceEmbedder``. Every
detection carries its evidence: who said it, when, and the words, so a reviewer can check it.

Signals submitted through the APIs carry a value instead; ``parse_signal_value`` reads it.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from callplane.core.signals.errors import InvalidSignalDefinition, InvalidSignalValue
from callplane.core.transcripts.schemas import Segment, Speaker, Transcript, Word

ANY_SPEAKER = "any"
_SPEAKER_KEYS = frozenset({Speaker.CALLER.value, Speaker.AGENT.value, ANY_SPEAKER})
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_APOSTROPHES = re.compile(r"['\u2019`]")
_NON_WORD = re.compile(r"[^\w]+|_", re.UNICODE)


def parse_signal_value(value: object = None) -> bool:
    """true/false, 1/0, yes/no in any case (strings, numbers or booleans); missing (None) means true."""
    if value is None:
        return True
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        folded = value.strip().casefold()
        if folded in _TRUE:
            return True
        if folded in _FALSE:
            return False
    raise InvalidSignalValue(f"signal value {value!r} must be true, false, 1, 0, yes or no")


def tokens(text: str) -> list[str]:
    """Case-folded words without punctuation; apostrophes join ("don't" → "dont") so both spellings match."""
    return _NON_WORD.sub(" ", _APOSTROPHES.sub("", text.casefold())).split()


@dataclass(frozen=True, slots=True)
class Phrase:
    """One phrase rule: whole words in order; a word ending in ``*`` matches any word it starts."""

    text: str
    speaker: str  # "caller", "agent" or "any"
    words: tuple[str, ...]
    prefix: tuple[bool, ...]

    @classmethod
    def parse(cls, text: str, speaker: str) -> Phrase:
        words: list[str] = []
        prefix: list[bool] = []
        for raw in text.split():
            parts = tokens(raw.rstrip("*"))
            if not parts:
                continue
            words.extend(parts)
            prefix.extend([False] * (len(parts) - 1) + [raw.endswith("*")])
        if not words:
            raise InvalidSignalDefinition(f"phrase {text!r} has no words")
        return cls(text=text, speaker=speaker, words=tuple(words), prefix=tuple(prefix))

    def matches_at(self, stream: Sequence[str], start: int) -> bool:
        if start + len(self.words) > len(stream):
            return False
        for offset, (word, is_prefix) in enumerate(zip(self.words, self.prefix, strict=True)):
            token = stream[start + offset]
            if not (token.startswith(word) if is_prefix else token == word):
                return False
        return True


@dataclass(frozen=True, slots=True)
class SignalDefinition:
    """What to look for. Build from stored configuration with ``SignalDefinition.from_config``."""

    name: str
    description: str = ""
    phrases: tuple[Phrase, ...] = ()
    examples: tuple[str, ...] = ()

    @classmethod
    def from_config(
        cls,
        *,
        name: str,
        description: str = "",
        phrases: Mapping[str, Sequence[str]] | None = None,
        examples: Sequence[str] | None = None,
    ) -> SignalDefinition:
        """From the admin API's shape: ``phrases={"caller": [...], "agent": [...], "any": [...]}``."""
        if not name.strip():
            raise InvalidSignalDefinition("signal name must not be empty")
        parsed: list[Phrase] = []
        for speaker, texts in (phrases or {}).items():
            if speaker not in _SPEAKER_KEYS:
                raise InvalidSignalDefinition(f"phrase speaker {speaker!r} must be caller, agent or any")
            if isinstance(texts, str):
                raise InvalidSignalDefinition(f"phrases for {speaker!r} must be a list of strings")
            parsed.extend(Phrase.parse(text, speaker) for text in texts)
        return cls(
            name=name.strip(),
            description=description,
            phrases=tuple(parsed),
            examples=tuple(e.strip() for e in (examples or ()) if e.strip()),
        )


@dataclass(frozen=True, slots=True)
class Evidence:
    """Where a signal was found: who said which words, when (seconds from the start of the call)."""

    speaker: Speaker | None
    start_s: float
    end_s: float
    words: str
    rule: str  # the phrase that matched, or "example: <sentence>"
    score: float = 1.0  # 1 for a phrase; the similarity for an example


@dataclass(frozen=True, slots=True)
class SignalDetection:
    """One signal's outcome on one call."""

    name: str
    detected: bool
    evidence: tuple[Evidence, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, for storage and webhooks."""
        return {
            "name": self.name,
            "detected": self.detected,
            "evidence": [
                {
                    "speaker": e.speaker.value if e.speaker else None,
                    "start_s": e.start_s,
                    "end_s": e.end_s,
                    "words": e.words,
                    "rule": e.rule,
                    "score": round(e.score, 4),
                }
                for e in self.evidence
            ],
        }


@dataclass(frozen=True, slots=True)
class _Stream:
    """One channel's words as a token stream, each token pointing back at the word it came from."""

    speaker: Speaker | None
    tokens: tuple[str, ...]
    owners: tuple[Word, ...]


def _streams(transcript: Transcript) -> list[_Stream]:
    streams = []
    for channel in transcript.channels:
        stream: list[str] = []
        owners: list[Word] = []
        for segment in channel.segments:
            # A segment without word timings still matches, with the segment's span as the evidence's.
            words = segment.words or (Word(segment.text, segment.start_s, segment.end_s, segment.confidence),)
            for word in words:
                for token in tokens(word.text):
                    stream.append(token)
                    owners.append(word)
        streams.append(_Stream(channel.speaker, tuple(stream), tuple(owners)))
    return streams


def _applies(phrase: Phrase, speaker: Speaker | None) -> bool:
    # Mono recordings have no speakers, so every phrase applies to their one track.
    return speaker is None or phrase.speaker in (ANY_SPEAKER, speaker.value)


def match_phrases(definition: SignalDefinition, transcript: Transcript) -> SignalDetection:
    """Every occurrence of every phrase of ``definition`` on the speakers it is defined for, in time order."""
    found: list[Evidence] = []
    for stream in _streams(transcript):
        for phrase in definition.phrases:
            if not _applies(phrase, stream.speaker):
                continue
            for start in range(len(stream.tokens)):
                if phrase.matches_at(stream.tokens, start):
                    owners = stream.owners[start : start + len(phrase.words)]
                    distinct = list(dict.fromkeys(owners))  # a word split into several tokens counts once
                    found.append(
                        Evidence(
                            speaker=stream.speaker,
                            start_s=owners[0].start_s,
                            end_s=owners[-1].end_s,
                            words=" ".join(word.text for word in distinct),
                            rule=phrase.text,
                        )
                    )
    found.sort(key=lambda e: (e.start_s, e.speaker or ""))
    return SignalDetection(name=definition.name, detected=bool(found), evidence=tuple(found))


class SentenceEmbedder(Protocol):
    """Turns sentences into L2-normalised vectors whose dot product is their similarity."""

    def embed(self, sentences: Sequence[str]) -> npt.NDArray[np.float32]: ...


class HashedBagOfWordsEmbedder:
    """A dependency-free lexical embedder: hashed word and word-pair counts, L2-normalised.

    It only knows shared words ("cancel my plan" ≈ "I want to cancel the plan"), not synonyms; it is the
    baseline used when no sentence-embedding model is installed (see docs/transcription.md).
    """

    def __init__(self, dimensions: int = 4096) -> None:
        self.dimensions = dimensions

    def _bucket(self, feature: str) -> int:
        return int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little") % self.dimensions

    def embed(self, sentences: Sequence[str]) -> npt.NDArray[np.float32]:
        matrix = np.zeros((len(sentences), self.dimensions), dtype=np.float32)
        for row, sentence in enumerate(sentences):
            words = tokens(sentence)
            for feature in [*words, *(f"{a} {b}" for a, b in itertools.pairwise(words))]:
                matrix[row, self._bucket(feature)] += 1.0
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        normalised: npt.NDArray[np.float32] = (matrix / np.where(norms == 0, 1.0, norms)).astype(np.float32)
        return normalised


@dataclass(frozen=True, slots=True)
class _Said:
    """A transcript's non-empty segments and their sentence vectors, embedded once for every definition."""

    segments: tuple[tuple[Speaker | None, Segment], ...]
    vectors: npt.NDArray[np.float32]

    @classmethod
    def of(cls, transcript: Transcript, embedder: SentenceEmbedder) -> _Said:
        segments = tuple(
            (channel.speaker, segment)
            for channel in transcript.channels
            for segment in channel.segments
            if segment.text.strip()
        )
        vectors = embedder.embed([segment.text for _, segment in segments]) if segments else np.zeros((0, 1))
        return cls(segments, vectors.astype(np.float32))


def _examples_found(
    definition: SignalDefinition, said: _Said, examples: npt.NDArray[np.float32], threshold: float
) -> SignalDetection:
    if not definition.examples or not said.segments:
        return SignalDetection(name=definition.name, detected=False)
    similarity = said.vectors @ examples.T  # rows: segments, columns: examples
    found = []
    for index, (speaker, segment) in enumerate(said.segments):
        best = int(np.argmax(similarity[index]))
        score = float(similarity[index, best])
        if score >= threshold and math.isfinite(score):
            found.append(
                Evidence(
                    speaker=speaker,
                    start_s=segment.start_s,
                    end_s=segment.end_s,
                    words=segment.text,
                    rule=f"example: {definition.examples[best]}",
                    score=score,
                )
            )
    found.sort(key=lambda e: (e.start_s, e.speaker or ""))
    return SignalDetection(name=definition.name, detected=bool(found), evidence=tuple(found))


def match_examples(
    definition: SignalDefinition,
    transcript: Transcript,
    embedder: SentenceEmbedder,
    *,
    threshold: float,
) -> SignalDetection:
    """Segments whose similarity to one of the definition's example sentences reaches ``threshold``.

    Compared per segment (about a sentence: Whisper cuts at pauses and sentence ends), the unit an example
    describes; a whole turn would dilute one sentence among the others.
    """
    if not definition.examples:
        return SignalDetection(name=definition.name, detected=False)
    said = _Said.of(transcript, embedder)
    return _examples_found(definition, said, embedder.embed(list(definition.examples)), threshold)


def detect_signals(
    definitions: Iterable[SignalDefinition],
    transcript: Transcript,
    *,
    embedder: SentenceEmbedder | None = None,
    example_threshold: float = 0.6,
) -> list[SignalDetection]:
    """Every definition against one transcript: phrases always, examples when an embedder is given."""
    definitions = list(definitions)
    examples: dict[int, npt.NDArray[np.float32]] = {}
    said = None
    if embedder is not None and any(d.examples for d in definitions):
        # The transcript's segments and every definition's examples are embedded once, in two batches:
        # the embedding, not the comparison, is what costs (docs/benchmarks.md, "Signal AI").
        said = _Said.of(transcript, embedder)
        sentences = sorted({e for d in definitions for e in d.examples})
        rows = dict(zip(sentences, embedder.embed(sentences), strict=True))
        examples = {i: np.stack([rows[e] for e in d.examples]) for i, d in enumerate(definitions) if d.examples}
    results = []
    for index, definition in enumerate(definitions):
        by_phrase = match_phrases(definition, transcript)
        evidence = list(by_phrase.evidence)
        if said is not None and definition.examples:
            found = _examples_found(definition, said, examples[index], example_threshold)
            evidence.extend(found.evidence)
            evidence.sort(key=lambda e: (e.start_s, e.speaker or ""))
        results.append(SignalDetection(name=definition.name, detected=bool(evidence), evidence=tuple(evidence)))
    return results
