"""A call submitted through the Invoca ingestion API is fetched over loopback, transcribed by the real model,
matched against the account's signals and served in every transcript format; workers split by stage hand
jobs on; a campaign without transcription gets the reason recorded and the call still completes."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, select, update

from callplane.core.calls.models import Call, CallSignal
from callplane.core.events.models import Event
from callplane.core.jobs.models import Job
from callplane.core.recordings.storage import LocalRecordingStorage
from callplane.core.tenancy.models import Campaign
from callplane.core.tenancy.secrets_box import SecretBox
from callplane.core.transcripts.models import CallTranscript
from callplane.db.engine import create_engine, create_session_factory
from callplane.runtime import build_pipeline_worker
from callplane.testing.factories import Admin, Network
from callplane.testing.server import (
    DEFAULT_POSTGRES_ADMIN_URL,
    RunningServer,
    running_server,
    scratch_postgres_database,
)
from callplane.testing.speech_calls import read_references
from callplane.workers import processing
from tests.conftest import ADMIN_TOKEN, _settings
from tests.pipeline.conftest import FileServer

pytestmark = pytest.mark.xdist_group("asr")  # the worker that already holds the model

TESTSET = Path(__file__).parents[1] / "transcripts" / "testset"
CALL = next(reference for reference in read_references(TESTSET / "references.json") if reference.name == "en_us_cancel")


@pytest.fixture(params=["sqlite", "postgresql"])
def quiet_server(
    request: pytest.FixtureRequest, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A fresh database served without in-process workers: the test runs the workers itself."""
    models = {"asr_models_dir": tmp_path_factory.getbasetemp() / "asr-models"}
    if request.param == "sqlite":
        with running_server(_settings(tmp_path, None, **models)) as running:
            yield running
        return
    admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
    with scratch_postgres_database(admin_url) as url, running_server(_settings(tmp_path, url, **models)) as running:
        yield running


@pytest.fixture
def admin(quiet_server: RunningServer) -> Iterator[Admin]:
    operator = Admin(quiet_server.base_url, ADMIN_TOKEN)
    yield operator
    operator.client.close()


def _run_worker(
    server: RunningServer, stages: frozenset[str] | None, *, until_idle: bool = True, **settings: Any
) -> None:
    """Run one pipeline worker (optionally limited to some stages, with some settings changed) until it finds
    nothing more to do."""

    async def run() -> None:
        engine = create_engine(server.settings)
        worker = build_pipeline_worker(
            server.settings.model_copy(update=settings),
            create_session_factory(engine),
            SecretBox(server.settings.effective_secret_key()),
            LocalRecordingStorage(server.settings.data_dir / "recordings"),
            stages=stages,
        )
        try:
            while await worker.run_once() and until_idle:
                pass
        finally:
            worker.close()
            await engine.dispose()

    asyncio.run(run())


def _in_db(server: RunningServer, work: Any) -> Any:
    async def run() -> Any:
        engine = create_engine(server.settings)
        try:
            async with create_session_factory(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _processed_results(server: RunningServer, call_id: str) -> Any:
    """`results` of the call.processed event (what webhooks and the batch callback carry)."""

    async def work(session: Any) -> Any:
        event = await session.scalar(select(Event).where(Event.call_id == call_id, Event.type == "call.processed"))
        return event.payload["results"]

    return _in_db(server, work)


def _network_with_signals(admin: Admin) -> Network:
    network = admin.network()
    definitions: list[dict[str, Any]] = [
        {"name": "Cancellation", "phrases": {"caller": ["want to cancel"]}},
        {"name": "Asked For Account", "phrases": {"agent": ["account number"]}},
        # Examples only: matched by sentence similarity (all-MiniLM-L6-v2, the default embedder).
        {"name": "Wants To Leave", "examples": ["I want to cancel my service", "I would like to stop my plan"]},
        # The caller never says it: an agent-only phrase must not fire on the caller's words, nor this one at all.
        {"name": "Upgrade", "phrases": {"any": ["upgrade"], "agent": ["cancel my subscription"]}},
    ]
    for definition in definitions:
        admin.post(f"/accounts/{network.account_id}/signal-definitions", definition)
    return network


def _submit(client: httpx.Client, network: Network, recording_url: str, **fields: Any) -> str:
    response = client.post(
        "/api/2022-03-01/calls.json",
        headers={"Authorization": network.token},
        json={
            "call": {
                "external_call_unique_id": secrets.token_hex(6),
                "start_time": 1460404800,
                "destination_phone_number": 9093900003,
                "calling_phone_number": 8779257384,
                "advertiser_campaign_id_from_network": 86,
                "call_direction": "inbound",
                "recording_url": recording_url,
            }
            | fields
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()["cuid"])


def _serve_test_call(files: FileServer) -> str:
    shutil.copy(TESTSET / CALL.audio, files.root / CALL.audio)
    return files.url(CALL.audio)


def test_invoca_call_is_transcribed_with_signals_and_served_in_every_format(
    quiet_server: RunningServer, files: FileServer, admin: Admin
) -> None:
    network = _network_with_signals(admin)
    other = admin.network()
    bearer = {"Authorization": f"Bearer {network.token}"}
    with httpx.Client(base_url=quiet_server.base_url, timeout=30) as client:
        call_id = _submit(client, network, _serve_test_call(files))
        pending = client.get(f"/v1/calls/{call_id}/transcript", headers=bearer)
        assert pending.status_code == 404 and "not been transcribed yet" in pending.json()["detail"]

        _run_worker(quiet_server, stages=None)

        call = client.get(f"/v1/calls/{call_id}", headers=bearer).json()
        assert call["status"] == "completed", call
        assert call["transcript"]["available"] is True and call["transcript"]["language_code"] == "en-US"
        assert call["transcript"]["path"] == f"/v1/calls/{call_id}/transcript"
        assert [h["stage"] for h in call["jobs"][0]["history"]] == ["recording", "transcribe", "finalize"]
        detected = {s["name"]: s for s in call["signals"] if s["source"] == "detected"}
        assert set(detected) == {"Cancellation", "Asked For Account", "Wants To Leave"}
        [evidence] = detected["Cancellation"]["evidence"]["matches"]
        assert evidence["speaker"] == "caller" and evidence["rule"] == "want to cancel"
        assert "want to cancel" in evidence["words"].casefold()
        caller_turn = next(turn for turn in CALL.turns if turn.speaker == "caller")
        assert caller_turn.start_s - 0.5 <= evidence["start_s"] < evidence["end_s"] <= caller_turn.end_s + 0.5
        assert detected["Asked For Account"]["evidence"]["matches"][0]["speaker"] == "agent"
        by_example = detected["Wants To Leave"]["evidence"]
        assert by_example["embedder"] == "minilm"
        assert by_example["matches"][0]["speaker"] == "caller" and by_example["matches"][0]["rule"].startswith(
            "example: "
        )
        assert _processed_results(quiet_server, call_id) == {
            "transcription_available": True,
            "analytics_available": True,
        }

        document = client.get(f"/v1/calls/{call_id}/transcript", headers=bearer).json()
        assert document["call_id"] == call_id and document["complete"] is True
        assert [channel["speaker"] for channel in document["channels"]] == ["caller", "agent"]
        assert [turn["speaker"] for turn in document["turns"]] == CALL.speaker_order
        starts = [segment["start_s"] for segment in document["segments"]]
        assert starts == sorted(starts) and {segment["speaker"] for segment in document["segments"]} == {
            "caller",
            "agent",
        }
        word = document["segments"][0]["words"][0]
        assert set(word) >= {"text", "start_s", "end_s", "probability"} and word["start_s"] <= word["end_s"]

        text = client.get(f"/v1/calls/{call_id}/transcript", params={"format": "text"}, headers=bearer)
        assert text.headers["content-type"].startswith("text/plain")
        assert text.text.splitlines()[0].startswith("[0:00] Agent: ")
        formats = {
            fmt: client.get(f"/v1/calls/{call_id}/transcript", params={"transcript_format": fmt}, headers=bearer).text
            for fmt in ("caller", "agent", "caller_agent_block", "caller_agent_conversation")
        }
        assert "want to cancel" in formats["caller"].casefold() and "account number" in formats["agent"].casefold()
        assert formats["caller_agent_block"] == f"Caller: {formats['caller']}\nAgent: {formats['agent']}"
        assert [line.split(":")[0] for line in formats["caller_agent_conversation"].splitlines()] == [
            speaker.capitalize() for speaker in CALL.speaker_order
        ]
        invoca = client.get(
            f"/call/transcript/{call_id}",
            params={"transcript_format": "caller_agent_conversation", "oauth_token": network.token},
        )
        assert invoca.status_code == 200 and invoca.text == formats["caller_agent_conversation"]
        unknown = client.get(f"/v1/calls/{call_id}/transcript", params={"transcript_format": "xml"}, headers=bearer)
        assert unknown.status_code == 422

        # Another tenant sees nothing, on either surface; no token is 401.
        stranger = {"Authorization": f"Bearer {other.token}"}
        assert client.get(f"/v1/calls/{call_id}/transcript", headers=stranger).status_code == 404
        assert client.get(f"/call/transcript/{call_id}", params={"oauth_token": other.token}).status_code == 404
        assert client.get(f"/call/transcript/{call_id}").status_code == 401

    # Transcribing again (the stored transcript removed by hand) replaces the detected signals, never adds.
    async def redo(session: Any) -> int:
        await session.execute(delete(CallTranscript).where(CallTranscript.call_id == call_id))
        return 0

    _in_db(quiet_server, redo)
    _run_stage_again(quiet_server, call_id)
    _run_stage_again(quiet_server, call_id)  # skipped: a transcript is stored

    async def counts(session: Any) -> tuple[int, int]:
        signals = await session.scalar(
            select(func.count()).select_from(CallSignal).where(CallSignal.call_id == call_id)
        )
        transcripts = await session.scalar(
            select(func.count()).select_from(CallTranscript).where(CallTranscript.call_id == call_id)
        )
        return int(signals), int(transcripts)

    assert _in_db(quiet_server, counts) == (3, 1)


def _run_stage_again(server: RunningServer, call_id: str) -> None:
    async def run() -> None:
        engine = create_engine(server.settings)
        worker = build_pipeline_worker(
            server.settings,
            create_session_factory(engine),
            SecretBox(server.settings.effective_secret_key()),
            LocalRecordingStorage(server.settings.data_dir / "recordings"),
        )
        try:
            async with worker.env.sessions() as session:
                call = await session.get(Call, call_id)
            assert call is not None
            await processing.stage_transcribe(worker.env, call)
        finally:
            worker.close()
            await engine.dispose()

    asyncio.run(run())


def test_stage_workers_hand_jobs_on_and_a_campaign_without_transcription_is_skipped_with_its_reason(
    quiet_server: RunningServer, files: FileServer, admin: Admin
) -> None:
    network = _network_with_signals(admin)
    bearer = {"Authorization": f"Bearer {network.token}"}
    with httpx.Client(base_url=quiet_server.base_url, timeout=30) as client:
        call_id = _submit(client, network, _serve_test_call(files))

        # The campaign turns transcription off after the call was accepted.
        async def switch_off(session: Any) -> None:
            await session.execute(
                update(Campaign).where(Campaign.id == network.campaign_id).values(transcription_enabled=False)
            )

        _in_db(quiet_server, switch_off)

        async def job(session: Any) -> tuple[str | None, str]:
            row = await session.scalar(select(Job).where(Job.call_id == call_id))
            return row.stage, row.status

        _run_worker(quiet_server, frozenset({"transcribe", "finalize"}))
        assert _in_db(quiet_server, job) == (None, "queued")  # not at a stage these workers run
        _run_worker(quiet_server, frozenset({"recording"}))
        assert _in_db(quiet_server, job) == ("transcribe", "queued")
        _run_worker(quiet_server, frozenset({"transcribe"}))
        assert _in_db(quiet_server, job) == ("finalize", "queued")
        _run_worker(quiet_server, frozenset({"finalize"}))
        assert _in_db(quiet_server, job) == (None, "succeeded")

        call = client.get(f"/v1/calls/{call_id}", headers=bearer).json()
        assert call["status"] == "completed"
        assert call["transcript"] == {
            "available": False,
            "status": "skipped",
            "reason": "transcription is turned off for campaign '86'",
        }
        assert [s for s in call["signals"] if s["source"] == "detected"] == []
        assert _processed_results(quiet_server, call_id) == {
            "transcription_available": False,
            "analytics_available": False,
        }
        missing = client.get(f"/v1/calls/{call_id}/transcript", headers=bearer)
        assert missing.status_code == 404
        assert missing.json()["detail"] == "the call was not transcribed: transcription is turned off for campaign '86'"
        invoca = client.get(f"/call/transcript/{call_id}", params={"oauth_token": network.token})
        assert invoca.status_code == 404 and invoca.json()["errors"]["class"] == "TranscriptNotAvailable"


@pytest.mark.parametrize("quiet_server", ["sqlite"], indirect=True)  # engine behaviour: one database is enough
def test_a_channel_over_its_time_budget_is_cut_short_and_the_call_still_completes(
    quiet_server: RunningServer, files: FileServer, admin: Admin
) -> None:
    network = _network_with_signals(admin)
    bearer = {"Authorization": f"Bearer {network.token}"}
    with httpx.Client(base_url=quiet_server.base_url, timeout=30) as client:
        call_id = _submit(client, network, _serve_test_call(files))
        # A budget far below the audio's length: decoding stops after the first segment. Both channels of this
        # short call are packed into one window (docs/transcription.md), so that is the agent's opening turn;
        # the caller, lost from that segment, gets its first segment decoded alone (never an empty channel).
        _run_worker(quiet_server, stages=None, asr_budget_ratio=0.001, asr_budget_min_seconds=0.001)
        call = client.get(f"/v1/calls/{call_id}", headers=bearer).json()
        assert call["status"] == "completed" and call["transcript"]["complete"] is False
        document = client.get(f"/v1/calls/{call_id}/transcript", headers=bearer).json()
        assert document["complete"] is False
        assert {channel["stopped_reason"] for channel in document["channels"]} == {"time budget exceeded"}
        kept = [segment["speaker"] for segment in document["segments"]]
        assert kept == ["agent", "caller"]  # each channel's first segment, nothing after
        assert _processed_results(quiet_server, call_id)["transcription_available"] is True


@pytest.mark.parametrize("quiet_server", ["sqlite"], indirect=True)
def test_a_mono_batch_call_is_one_unlabelled_track_and_every_phrase_applies_to_it(
    quiet_server: RunningServer, files: FileServer, admin: Admin
) -> None:
    mono = files.root / "mono-speech.mp3"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", str(TESTSET / CALL.audio), "-ac", "1", str(mono)], check=True
    )
    partner = admin.partner()
    admin.post(
        f"/accounts/{partner.account_id}/signal-definitions",
        {"name": "Cancellation", "phrases": {"caller": ["want to cancel"]}},
    )
    item = {
        "call": {
            "id": secrets.token_hex(5),
            "recording_url": files.url(mono.name),
            "start_time": "2023-01-01T10:00:00Z",
            "end_time": "2023-01-01T10:00:18Z",
            "contact_number": "+1234567890",
        },
        "callback_url": "https://127.0.0.3/callback",
    }
    bearer = {"Authorization": f"Bearer {partner.token}"}
    with httpx.Client(base_url=quiet_server.base_url, timeout=30) as client:
        assert (
            client.post("/partner/ingest/batch-call", headers=partner.headers, json={"data": [item]}).status_code == 200
        )
        [listed] = client.get("/v1/calls", headers=bearer).json()["calls"]
        _run_worker(quiet_server, stages=None)
        call = client.get(f"/v1/calls/{listed['id']}", headers=bearer).json()
        assert call["status"] == "completed" and call["recording"]["channels"] == 1
        document = client.get(f"/v1/calls/{listed['id']}/transcript", headers=bearer).json()
        assert [channel["speaker"] for channel in document["channels"]] == [None]
        assert {segment["speaker"] for segment in document["segments"]} == {None}
        formats = {
            fmt: client.get(
                f"/v1/calls/{listed['id']}/transcript", params={"transcript_format": fmt}, headers=bearer
            ).text
            for fmt in ("caller", "caller_agent_conversation")
        }
        assert formats["caller"] == ""  # no speakers on one track
        assert "want to cancel" in formats["caller_agent_conversation"].casefold()
        assert not formats["caller_agent_conversation"].startswith(("Caller:", "Agent:"))
        # A mono recording has no speakers, so a caller phrase applies to its one track.
        [signal] = [s for s in call["signals"] if s["source"] == "detected"]
        assert signal["name"] == "Cancellation" and signal["evidence"]["matches"][0]["speaker"] is None
    assert _processed_results(quiet_server, listed["id"]) == {
        "transcription_available": True,
        "analytics_available": True,
    }


KEYWORDS = {"en-GB": "parcel", "es-ES": "cancelar", "fr-FR": "merci"}  # caller words Whisper hears in each call


@pytest.mark.parametrize("quiet_server", ["sqlite"], indirect=True)
def test_en_gb_es_es_and_fr_fr_calls_are_transcribed_in_their_language(
    quiet_server: RunningServer, files: FileServer, admin: Admin
) -> None:
    network = admin.network(language_codes=["en-US", "en-GB", "es-ES", "fr-FR"])
    bearer = {"Authorization": f"Bearer {network.token}"}
    others = [r for r in read_references(TESTSET / "references.json") if r.language in ("en-GB", "es-ES", "fr-FR")]
    with httpx.Client(base_url=quiet_server.base_url, timeout=30) as client:
        submitted = {}
        for reference in others:
            shutil.copy(TESTSET / reference.audio, files.root / reference.audio)
            call_id = _submit(client, network, files.url(reference.audio), language_code=reference.language)
            submitted[call_id] = reference
        _run_worker(quiet_server, stages=None)
        for call_id, reference in submitted.items():
            document = client.get(f"/v1/calls/{call_id}/transcript", headers=bearer).json()
            assert document["language_code"] == reference.language
            assert [turn["speaker"] for turn in document["turns"]] == reference.speaker_order
            caller = client.get(
                f"/v1/calls/{call_id}/transcript", params={"transcript_format": "caller"}, headers=bearer
            ).text
            # Said in the call's language, not translated (accuracy is test_testset's; the pipeline re-encodes).
            assert KEYWORDS[reference.language] in caller.casefold(), (reference.name, caller)
