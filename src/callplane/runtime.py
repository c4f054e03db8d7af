"""The long-running parts of a process, built from settings and supervised: the post-call pipeline worker, webhook
delivery, the retention sweeper, and (where the engine runs) the live-call plane (voice control, contact center,
trunk registrar, node heartbeat, command relay). `app.py` only builds the ASGI app; `cli.py` runs these."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callplane import __version__
from callplane.core.pipeline.outcomes import notify_outcome
from callplane.core.recordings.fetch import DropFolder, FetchLimits
from callplane.core.recordings.storage import LocalRecordingStorage, RecordingStorage
from callplane.core.recordings.targets import TargetPolicy
from callplane.core.recordings.voice_files import VoiceFileStore
from callplane.core.tenancy.secrets_box import SecretBox
from callplane.core.tenancy.service import TenancyLookups
from callplane.core.transcripts.engine import AsrSettings
from callplane.core.transcripts.runtime import TranscriptionRuntime
from callplane.core.transcripts.streaming import LiveAsr
from callplane.core.voice.queries import RECORDINGS_DIRECTORY
from callplane.db.engine import create_engine, create_session_factory
from callplane.live.call_tracking import CallTrackingPlanner
from callplane.live.contact_center import ContactCenterRuntime, LegInbox
from callplane.live.control import VoiceService
from callplane.live.nodes import NodeHeartbeat, detached_engine, request_drain
from callplane.live.registrar import TrunkRegistrar
from callplane.live.relay import CommandExecutor, CommandRelay, Notifications
from callplane.media.engine import CallEngine, EngineConfig
from callplane.media.sip import SippyCallEngine
from callplane.observability.endpoint import serve_metrics_for
from callplane.observability.metrics import watch_live_calls
from callplane.observability.tracing import configure_tracing
from callplane.settings import Settings
from callplane.surfaces.context import AppContext
from callplane.surfaces.infobip.calls_mapping import InfobipEventRenderer
from callplane.workers.delivery import DeliveryConfig, DeliveryWorker
from callplane.workers.pipeline import PipelineWorker
from callplane.workers.processing import ProcessingEnvironment
from callplane.workers.retention import RetentionSweeper

log = logging.getLogger("callplane.runtime")


def build_recording_storage(settings: Settings) -> RecordingStorage:
    """Local disk under the data directory (the default), or the S3-compatible bucket every node shares."""
    if settings.storage_backend == "local":
        return LocalRecordingStorage(settings.ensure_data_dir() / "recordings")
    if not settings.storage_s3_bucket:
        raise RuntimeError("CALLPLANE_STORAGE_BACKEND=s3 needs CALLPLANE_STORAGE_S3_BUCKET")
    from callplane.core.recordings.s3 import S3RecordingStorage, S3StorageConfig  # boto3: only with this store

    sse = settings.storage_s3_server_side_encryption
    return S3RecordingStorage(
        S3StorageConfig(
            bucket=settings.storage_s3_bucket,
            prefix=settings.storage_s3_prefix,
            endpoint_url=settings.storage_s3_endpoint_url,
            region=settings.storage_s3_region,
            access_key_id=settings.storage_s3_access_key_id,
            secret_access_key=settings.storage_s3_secret_access_key,
            session_token=settings.storage_s3_session_token,
            addressing_style=settings.storage_s3_addressing_style,
            server_side_encryption=None if sse == "none" else sse,
            sse_kms_key_id=settings.storage_s3_sse_kms_key_id,
        )
    )


def build_voice_files(settings: Settings, storage: RecordingStorage) -> VoiceFileStore:
    """Voice recordings, compositions and uploaded media files: the engine's working copies under the data directory,
    and with CALLPLANE_STORAGE_BACKEND=s3 the shared bucket (the same store as the pipeline's recordings)."""
    return VoiceFileStore(settings.ensure_data_dir(), storage if settings.storage_backend != "local" else None)


def attach_voice_files(voice: VoiceService, store: VoiceFileStore) -> None:
    voice.store = store
    voice.calls.store = store


def build_context(settings: Settings) -> AppContext:
    engine = create_engine(settings)
    settings.ensure_data_dir()
    return AppContext(
        settings=settings,
        engine=engine,
        sessions=create_session_factory(engine),
        lookups=TenancyLookups(settings.tenancy_cache_seconds),
        secret_box=SecretBox(settings.effective_secret_key()),
        admin_token=settings.effective_admin_token(),
        storage=build_recording_storage(settings),
        voice_events=InfobipEventRenderer(),
    )


@contextlib.asynccontextmanager
async def supervised(
    settings: Settings, context: AppContext, *, call_engine: CallEngine | None = None
) -> AsyncIterator[None]:
    """What `serve` runs beside the API, for the app's lifespan: the workers (CALLPLANE_WORKERS_ENABLED) and the
    voice engine (CALLPLANE_VOICE_ENABLED; else the Calls API relays to media nodes). `call_engine` replaces the
    built-in SIP engine (tests pass the in-memory engine of `callplane.testing.engine`)."""
    stop = asyncio.Event()
    workers: list[asyncio.Task[None]] = []
    delivery = None
    pipeline = None
    if settings.workers_enabled:
        pipeline = build_pipeline_worker(settings, context.sessions, context.secret_box, context.storage)
        delivery = build_delivery_worker(settings, context.sessions, context.secret_box)
        workers.append(asyncio.create_task(pipeline.run_forever(stop)))
        workers.append(asyncio.create_task(delivery.run_forever(stop)))
        workers.append(asyncio.create_task(build_retention_sweeper(settings, context).run_forever(stop)))
    if settings.voice_enabled:
        stop_voice = await start_voice(settings, context, stop, workers, engine=call_engine)
    else:
        stop_voice = start_detached_voice(settings, context)  # reads calls, relays commands to media nodes
    try:
        yield
    finally:
        stop.set()
        await stop_voice()
        await asyncio.gather(*workers, return_exceptions=True)
        if pipeline is not None:
            pipeline.close()
        if delivery is not None:
            await delivery.aclose()
        await context.engine.dispose()


def asr_settings(settings: Settings) -> AsrSettings:
    """The speech-to-text engine's settings from the application's (CALLPLANE_ASR_*)."""
    return AsrSettings(
        model_path=settings.asr_model_path,
        data_dir=settings.asr_models_dir or settings.data_dir / "models",
        device=settings.asr_device,
        compute_type=settings.asr_compute_type,
        cpu_threads=settings.asr_cpu_threads,
        num_workers=settings.asr_num_workers,
        beam_size=settings.asr_beam_size,
        vad_threshold=settings.asr_vad_threshold,
        pack_window_s=settings.asr_pack_window_seconds,
        budget_ratio=settings.asr_budget_ratio,
        budget_min_s=settings.asr_budget_min_seconds,
    )


def build_transcription(settings: Settings) -> TranscriptionRuntime | None:
    """Transcription for one worker process; nothing is loaded until its first call."""
    if not settings.transcription_enabled:
        return None
    return TranscriptionRuntime(
        asr=asr_settings(settings),
        embedder_kind=settings.signals_embedder,
        concurrency=settings.transcription_concurrency,
    )


def build_pipeline_worker(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    secret_box: SecretBox,
    storage: RecordingStorage,
    *,
    stages: frozenset[str] | None = None,
) -> PipelineWorker:
    """The post-call worker, from settings; used in-process by `serve` and standalone by `callplane worker`.

    ``stages`` (else ``CALLPLANE_WORKER_STAGES``) limits it to those stages (None: all); jobs at other stages are
    left to other workers.
    """
    if stages is None and settings.worker_stages:
        stages = frozenset(settings.worker_stages)
    env = ProcessingEnvironment(
        sessions=sessions,
        storage=storage,
        policy=TargetPolicy.from_config(settings.fetch_allowed_networks, settings.fetch_allowed_hosts),
        secret_box=secret_box,
        work_dir=settings.ensure_data_dir() / "work",
        limits=FetchLimits(
            max_bytes=settings.recording_max_bytes, total_timeout_s=settings.recording_fetch_timeout_seconds
        ),
        drop_folder=DropFolder(settings.recording_drop_dir) if settings.recording_drop_dir else None,
        voice_recordings=DropFolder(settings.ensure_data_dir() / RECORDINGS_DIRECTORY),
        voice_files=build_voice_files(settings, storage),
        on_outcome=notify_outcome,
        transcription=build_transcription(settings) if stages is None or "transcribe" in stages else None,
    )
    return PipelineWorker(
        env,
        stages=stages,
        concurrency=settings.worker_concurrency,
        poll_seconds=settings.worker_poll_seconds,
        lease_seconds=settings.job_lease_seconds,
        backoff_base_seconds=settings.job_backoff_base_seconds,
        backoff_cap_seconds=settings.job_backoff_cap_seconds,
    )


def build_delivery_worker(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], secret_box: SecretBox
) -> DeliveryWorker:
    """The webhook and callback sender, from settings."""
    return DeliveryWorker(
        sessions=sessions,
        secret_box=secret_box,
        policy=TargetPolicy.from_config(settings.fetch_allowed_networks, settings.fetch_allowed_hosts),
        config=DeliveryConfig(
            timeout_s=settings.delivery_timeout_seconds,
            lease_s=settings.delivery_lease_seconds or max(60.0, settings.delivery_timeout_seconds * 3),
            backoff_base_s=settings.delivery_backoff_base_seconds,
            backoff_cap_s=settings.delivery_backoff_cap_seconds,
            poll_interval_s=settings.delivery_poll_seconds,
        ),
        callback_secret=settings.callback_signing_secret,
    )


def build_retention_sweeper(settings: Settings, context: AppContext) -> RetentionSweeper:
    """Voice history, recordings and unused uploads past their retention (docs/voice.md "Retention")."""
    return RetentionSweeper(
        sessions=context.sessions,
        data_dir=settings.ensure_data_dir(),
        history_days=settings.voice_history_retention_days,
        recording_days=settings.voice_recording_retention_days,
        interval_s=settings.voice_retention_sweep_seconds,
        store=build_voice_files(settings, context.storage),
    )


async def start_voice(
    settings: Settings,
    context: AppContext,
    stop: asyncio.Event,
    workers: list[asyncio.Task[None]],
    *,
    engine: CallEngine | None = None,
    on_drain: Callable[[], None] | None = None,
) -> Callable[[], Awaitable[None]]:
    """The in-process SIP/media engine (or the given one), its control plane and the trunk registrar (one engine per
    process), as a media node: heartbeat, and the commands other processes relay for its calls. Returns what stops
    it."""
    data_dir = settings.ensure_data_dir()
    engine = engine or SippyCallEngine(
        EngineConfig(
            sip_host=settings.sip_host,
            sip_port=settings.sip_port,
            rtp_host=settings.rtp_host,
            rtp_port_range=(settings.rtp_port_min, settings.rtp_port_max),
            sip_receive_buffer_bytes=settings.sip_receive_buffer_bytes,
            cache_dir=data_dir / "media-cache",
        )
    )
    node_id = settings.voice_node_id or socket.gethostname()
    notifications = Notifications(listen_dsn(settings))
    contact_center_legs = LegInbox()
    voice = VoiceService(
        engine=engine,
        sessions=context.sessions,
        secret_box=context.secret_box,
        renderer=context.voice_events,
        data_dir=data_dir,
        node_id=node_id,
        fetch_policy=TargetPolicy.from_config(settings.fetch_allowed_networks, settings.fetch_allowed_hosts),
        trunk_channels=context.trunk_channels,
        relay=command_relay(settings, context, notifications, local_node=node_id),
        inbound_planner=CallTrackingPlanner(),  # calls to campaign promo numbers
        inbound_answer_timeout_s=settings.voice_inbound_answer_timeout_seconds,
        job_max_attempts=settings.job_max_attempts,
        listeners=[contact_center_legs.put],
        live_asr=LiveAsr(asr_settings(settings)),  # live transcription and speech capture
    )
    attach_voice_files(voice, build_voice_files(settings, context.storage))
    await voice.start()
    context.voice = voice
    unwatch_live_calls = watch_live_calls(voice.node_id, voice.live_count)  # /metrics: live calls per node
    context.contact_center = ContactCenterRuntime(
        sessions=context.sessions,
        voice=voice,
        legs=contact_center_legs,
        ring_timeout_s=settings.contact_center_ring_timeout_seconds,
        poll_s=settings.contact_center_poll_seconds,
        job_max_attempts=settings.job_max_attempts,
    )
    voice.contact_center = context.contact_center  # agents' actions relayed here from API processes
    await context.contact_center.start()
    context.trunk_registrar = TrunkRegistrar(
        engine=engine, sessions=context.sessions, secret_box=context.secret_box, policy=voice.fetch_policy
    )
    workers.append(asyncio.create_task(context.trunk_registrar.run_forever(stop)))
    heartbeat = NodeHeartbeat(
        sessions=context.sessions,
        node_id=voice.node_id,
        sip_address=f"{settings.sip_public_host or settings.sip_host}:{settings.sip_port}",
        live_calls=voice.live_count,
        every_s=settings.voice_node_heartbeat_seconds,
        on_drain=functools.partial(drain_engine, engine, on_drain),
        after_beat=functools.partial(voice.end_calls_of_dead_nodes, settings.voice_node_dead_after_seconds),
    )
    await heartbeat.start()
    executor = CommandExecutor(
        voice=voice,
        sessions=context.sessions,
        notifications=notifications,
        node_id=voice.node_id,
        poll_s=settings.voice_relay_poll_seconds,
    )
    workers.append(asyncio.create_task(heartbeat.run_forever(stop)))
    workers.append(asyncio.create_task(executor.run_forever(stop)))
    log.info(
        "voice engine started",
        extra={"fields": {"sip": f"{settings.sip_host}:{settings.sip_port}", "node": voice.node_id}},
    )

    async def stop_voice() -> None:
        stop.set()
        unwatch_live_calls()
        await voice.stop()  # ends the calls it carries (BYE, one terminal event each)
        if context.contact_center is not None:
            await context.contact_center.stop()  # after the legs' terminal events, so their calls end too
            context.contact_center = None
        await heartbeat.stopped()
        await notifications.stop()
        context.voice = None

    return stop_voice


def drain_engine(engine: CallEngine, then: Callable[[], None] | None) -> None:
    """A drain was asked for this node: the SIP engine answers 503 to OPTIONS and new INVITEs from now on."""
    if isinstance(engine, SippyCallEngine):
        engine.draining = True
    if then is not None:
        then()


def start_detached_voice(settings: Settings, context: AppContext) -> Callable[[], Awaitable[None]]:
    """The Calls API without an engine (`serve --role api`): reads go to the database, commands for live calls
    to the media node carrying them, new calls to the least loaded live node. Returns what stops it."""
    notifications = Notifications(listen_dsn(settings))
    voice = VoiceService(
        engine=detached_engine(),
        sessions=context.sessions,
        secret_box=context.secret_box,
        renderer=context.voice_events,
        data_dir=settings.ensure_data_dir(),
        node_id=settings.voice_node_id or socket.gethostname(),
        fetch_policy=TargetPolicy.from_config(settings.fetch_allowed_networks, settings.fetch_allowed_hosts),
        trunk_channels=context.trunk_channels,
        relay=command_relay(settings, context, notifications, local_node=None),
    )
    attach_voice_files(voice, build_voice_files(settings, context.storage))
    context.voice = voice

    async def stop_voice() -> None:
        await notifications.stop()
        context.voice = None

    return stop_voice


def command_relay(
    settings: Settings, context: AppContext, notifications: Notifications, *, local_node: str | None
) -> CommandRelay:
    return CommandRelay(
        sessions=context.sessions,
        notifications=notifications,
        local_node=local_node,
        timeout_s=settings.voice_relay_timeout_seconds,
        dead_after_s=settings.voice_node_dead_after_seconds,
        poll_s=settings.voice_relay_poll_seconds,
    )


def listen_dsn(settings: Settings) -> str | None:
    """The database for LISTEN (asyncpg's own URL form) on PostgreSQL; None elsewhere (nodes poll)."""
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def drain_node(context: AppContext, node_id: str) -> None:
    """Write this node's drain request (SIGUSR1): its heartbeat then drains it as for the admin API's."""
    async with context.sessions() as session, session.begin():
        await request_drain(session, node_id=node_id)


async def stop_when_drained(context: AppContext, draining: asyncio.Event, stop: asyncio.Event) -> None:
    """Once a drain is asked: wait until the node carries no call (new ones are refused by then), then stop."""
    waiting = asyncio.create_task(draining.wait())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait((waiting, stopping), return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    stopping.cancel()
    idle_checks = 0
    while draining.is_set() and not stop.is_set():
        voice = context.voice
        idle = voice is None or (voice.live_count() == 0 and voice.calls.dialing == 0)
        idle_checks = idle_checks + 1 if idle else 0
        if idle_checks >= 3:  # idle across three looks: nothing was being placed between them either
            log.warning("drained: no live calls left, stopping")
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)


async def run_media_node(settings: Settings, *, health: tuple[str, int] | None = None) -> None:
    """`callplane media`: the engine as a media node until SIGINT/SIGTERM (its calls are ended cleanly then)."""
    import signal

    settings.ensure_data_dir()
    engine = create_engine(settings)
    context = AppContext(
        settings=settings,
        engine=engine,
        sessions=create_session_factory(engine),
        lookups=TenancyLookups(settings.tenancy_cache_seconds),
        secret_box=SecretBox(settings.effective_secret_key()),
        admin_token="",  # no API here
        storage=build_recording_storage(settings),
        voice_events=InfobipEventRenderer(),
    )
    stop = asyncio.Event()
    draining = asyncio.Event()  # a drain was asked (admin API, `callplane media-drain`, SIGUSR1)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    workers: list[asyncio.Task[None]] = []
    stop_voice = await start_voice(settings, context, stop, workers, on_drain=draining.set)
    voice = context.voice
    node_id = voice.node_id if voice is not None else settings.voice_node_id or socket.gethostname()
    loop.add_signal_handler(signal.SIGUSR1, lambda: workers.append(loop.create_task(drain_node(context, node_id))))
    workers.append(asyncio.create_task(stop_when_drained(context, draining, stop)))
    server = None
    if health is not None:

        async def healthz(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                await reader.readuntil(b"\r\n\r\n")
                body = json.dumps(
                    {
                        "status": "ok",
                        "version": __version__,
                        "node": settings.voice_node_id or socket.gethostname(),
                        "live_calls": voice.live_count() if voice is not None else 0,
                        "draining": draining.is_set(),
                    }
                ).encode()
                head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
                writer.write(head.encode() + b"connection: close\r\n\r\n" + body)
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(healthz, health[0], health[1])
    metrics_server = await serve_metrics_for(settings)  # a media node has no API to mount /metrics on
    configure_tracing(settings)  # deliveries of its calls' events continue the traces that wrote them
    log.info("media node running", extra={"fields": {"node": voice.node_id if voice else None}})
    try:
        await stop.wait()
    finally:
        if server is not None:
            server.close()
        if metrics_server is not None:
            metrics_server.close()
        await stop_voice()
        await asyncio.gather(*workers, return_exceptions=True)
        await engine.dispose()
