"""Calls ingested through the real API, their transcripts stored the way the transcribe stage stores them."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.calls.models import Call
from callplane.core.transcripts.merge import transcript_to_dict
from callplane.core.transcripts.models import CallTranscript, TranscriptStatus
from callplane.core.transcripts.schemas import ChannelTranscript, Segment, Speaker, Transcript, Word
from callplane.db.base import new_id
from callplane.db.engine import create_engine, create_session_factory
from callplane.settings import Settings
from callplane.testing.factories import Admin, Network
from callplane.testing.server import RunningServer

INGEST_URL = "/api/2022-03-01/calls.json"
WORD_STEP_S = 0.5  # each test word starts half a second after the one before

T = TypeVar("T")


@dataclass(frozen=True)
class Said:
    """One turn: who, when it starts, what was said."""

    speaker: Speaker
    start_s: float
    text: str

    def word_start(self, index: int) -> float:
        return self.start_s + index * WORD_STEP_S


def transcript_of(*turns: Said) -> Transcript:
    """A stereo transcript (caller channel 0, agent channel 1) with a word every WORD_STEP_S seconds."""
    channels = []
    for number, speaker in enumerate((Speaker.CALLER, Speaker.AGENT)):
        segments = []
        for turn in (turn for turn in turns if turn.speaker == speaker):
            texts = turn.text.split()
            words = tuple(
                Word(text, turn.word_start(i), turn.word_start(i) + 0.4, 0.95) for i, text in enumerate(texts)
            )
            segments.append(Segment(turn.text, words[0].start_s, words[-1].end_s, 0.9, 0.01, words))
        channels.append(ChannelTranscript(number, speaker, tuple(segments), 120.0))
    return Transcript("en-US", tuple(channels), 120.0, model="test")


def run_on(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one committed transaction on the server's database (a fresh engine: tests are sync)."""

    async def run() -> T:
        engine = create_engine(settings)
        try:
            async with create_session_factory(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


@dataclass
class Calls:
    """Makes calls for a network through the Invoca API and stores their transcripts."""

    client: httpx.Client
    settings: Settings

    def ingest(self, network: Network, **overrides: Any) -> str:
        body = {
            "external_call_unique_id": secrets.token_hex(6),
            "start_time": 1460404800,
            "destination_phone_number": 9093900003,
            "calling_phone_number": 8779257384,
            "advertiser_campaign_id_from_network": 86,
            "call_direction": "inbound",
            "recording_url": "https://recordings.example.com/a.wav",
        } | overrides
        response = self.client.post(INGEST_URL, headers={"Authorization": network.token}, json={"call": body})
        assert response.status_code == 201, response.text
        call_id: str = response.json()["cuid"]
        return call_id

    def store_transcript(self, call_id: str, transcript: Transcript) -> None:
        async def store(session: AsyncSession) -> None:
            call = await session.get(Call, call_id)
            assert call is not None
            # The row the transcribe stage writes (core/transcripts/service.py save_transcript).
            await session.execute(
                insert(CallTranscript).values(
                    id=new_id(),
                    call_id=call.id,
                    account_id=call.account_id,
                    status=TranscriptStatus.COMPLETED,
                    language_code=transcript.language,
                    model=transcript.model,
                    transcript=transcript_to_dict(transcript),
                    audio_duration_ms=round(transcript.duration_s * 1000),
                    elapsed_ms=0,
                    complete=True,
                    dropped_segments=0,
                    signals_evaluated=0,
                    created_at=datetime.now(UTC),
                )
            )

        run_on(self.settings, store)

    def with_transcript(self, network: Network, *turns: Said, **overrides: Any) -> str:
        call_id = self.ingest(network, **overrides)
        self.store_transcript(call_id, transcript_of(*turns))
        return call_id


@pytest.fixture
def calls(client: httpx.Client, server: RunningServer) -> Calls:
    return Calls(client=client, settings=server.settings)


@pytest.fixture
def network(admin: Admin) -> Network:
    return admin.network()


def search(client: httpx.Client, network: Network | str, q: str, **params: Any) -> httpx.Response:
    token = network if isinstance(network, str) else network.token
    return client.get("/v1/calls", params={"q": q, **params}, headers={"Authorization": f"Bearer {token}"})
