"""Signals detected in a call's transcript: the account's rules, the matcher with its embedder, the stored rows.

The pipeline's `transcribe` stage runs these after speech-to-text and stores the detections in the same
transaction as the transcript; transcripts know nothing of signals (and signals only read the transcript's shape).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.calls.models import CallSignal
from callplane.core.signals.matching import SentenceEmbedder, SignalDetection, detect_signals
from callplane.core.signals.matching import SignalDefinition as SignalRules
from callplane.core.signals.service import DETECTED
from callplane.core.tenancy.models import SignalDefinition
from callplane.core.transcripts.schemas import Transcript
from callplane.db.base import new_id
from callplane.errors import CallplaneError

HASHED_THRESHOLD = 0.6  # the lexical embedder's example threshold (docs/transcription.md)


@dataclass(frozen=True, slots=True)
class RulesOfAccount:
    """An account's signal definitions that say how to detect them, with their row ids by name."""

    rules: list[SignalRules]
    ids: dict[str, str]
    invalid: list[str]  # names of definitions whose phrases could not be parsed (skipped, logged)


async def detection_rules(session: AsyncSession, account_id: str) -> RulesOfAccount:
    """Definitions with phrases or examples; a definition with neither is only ever set through the API."""
    rows = await session.scalars(select(SignalDefinition).where(SignalDefinition.account_id == account_id))
    rules: list[SignalRules] = []
    ids: dict[str, str] = {}
    invalid: list[str] = []
    for row in rows:
        if not row.phrases and not row.examples:
            continue
        try:
            rule = SignalRules.from_config(
                name=row.name, description=row.description, phrases=row.phrases, examples=row.examples
            )
        except CallplaneError:
            invalid.append(row.name)
            continue
        rules.append(rule)
        ids[rule.name] = row.id
    return RulesOfAccount(rules=rules, ids=ids, invalid=invalid)


async def replace_detected(
    session: AsyncSession,
    *,
    call_id: str,
    account_id: str,
    detections: Sequence[SignalDetection],
    rules: RulesOfAccount,
    embedder: str,
) -> None:
    """Replace the call's detected signals with these, in the caller's transaction.

    Re-processing replaces what an earlier run detected; signals submitted through the APIs stay.
    """
    await session.execute(delete(CallSignal).where(CallSignal.call_id == call_id, CallSignal.source == DETECTED))
    now = datetime.now(UTC)
    rows = [
        {
            "id": new_id(),
            "call_id": call_id,
            "account_id": account_id,
            "signal_definition_id": rules.ids.get(detection.name),
            "name": detection.name,
            "value": True,
            "source": DETECTED,
            "evidence": {"matches": detection.to_dict()["evidence"], "embedder": embedder},
            "created_at": now,
        }
        for detection in detections
        if detection.detected
    ]
    if rows:
        await session.execute(insert(CallSignal), rows)


@dataclass
class SignalDetector:
    """One per worker process: matches transcripts against rules with the configured sentence embedder
    ("minilm", "hashed" or "off"), loaded on first use. Blocking: run it in a worker thread."""

    embedder_kind: str = "minilm"
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _embedder: tuple[SentenceEmbedder | None, float] | None = field(init=False, default=None)

    def embedder(self) -> tuple[SentenceEmbedder | None, float]:
        """The sentence embedder for example sentences and its threshold, loaded once."""
        with self._lock:
            if self._embedder is None:
                self._embedder = _load_embedder(self.embedder_kind)
            return self._embedder

    def detect(self, rules: Sequence[SignalRules], transcript: Transcript) -> list[SignalDetection]:
        needs_embedder = any(rule.examples for rule in rules)
        embedder, threshold = self.embedder() if needs_embedder else (None, HASHED_THRESHOLD)
        return detect_signals(rules, transcript, embedder=embedder, example_threshold=threshold)


def _load_embedder(kind: str) -> tuple[SentenceEmbedder | None, float]:
    """The configured embedder and its tuned threshold (core/signals/embedding.py, imported here: it pulls in
    tokenizers, which a process whose rules have no example sentences never needs)."""
    from callplane.core.signals.embedding import example_threshold, load_sentence_embedder

    return load_sentence_embedder(kind), example_threshold(kind)
