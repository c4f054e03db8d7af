"""The `callplane` command: serve, migrate, demo-setup and admin commands."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.settings import Settings

app = typer.Typer(help="callplane: a self-hosted call platform.", no_args_is_help=True)
admin = typer.Typer(help="Create accounts, organizations, campaigns, definitions and tokens.", no_args_is_help=True)
app.add_typer(admin, name="admin")

T = TypeVar("T")


def _settings() -> Settings:
    return Settings()


def _print(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def _in_transaction(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Migrate, then run `work` in one committed transaction against the configured database."""
    from callplane.db.engine import create_engine, create_session_factory
    from callplane.db.migrate import upgrade

    settings = _settings()
    upgrade(settings)

    async def run() -> T:
        engine = create_engine(settings)
        try:
            async with create_session_factory(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8080,
    workers: Annotated[int, typer.Option(help="API worker processes")] = 1,
    data_dir: Annotated[Path | None, typer.Option(envvar="CALLPLANE_DATA_DIR")] = None,
    role: Annotated[
        str,
        typer.Option(help="all: the embedded default; api: no SIP/media engine here (calls live on `callplane media`)"),
    ] = "all",
) -> None:
    """Apply migrations, then serve every API on HOST:PORT."""
    import uvicorn

    from callplane.db.migrate import upgrade
    from callplane.logging import configure_logging

    if role not in ("all", "api"):
        raise typer.BadParameter("--role is all or api")
    if data_dir is not None:
        os.environ["CALLPLANE_DATA_DIR"] = str(data_dir)  # worker processes read the same environment
    if role == "api":
        os.environ["CALLPLANE_VOICE_ENABLED"] = "false"  # commands reach media nodes through the relay
    settings = _settings()
    if settings.voice_enabled and workers > 1:
        # each worker would start its own SIP engine on the same port; live calls belong to one process
        raise typer.BadParameter("the voice engine runs in one process: use --workers 1 with CALLPLANE_VOICE_ENABLED")
    configure_logging(settings.log_level, settings.log_format)
    settings.ensure_data_dir()
    settings.effective_admin_token()  # create it once here, not racing in each worker
    settings.effective_secret_key()
    upgrade(settings)
    if workers > 1:  # /metrics adds up every API process's values (docs/observability.md "Processes")
        from callplane.observability.endpoint import prepare_multiprocess

        prepare_multiprocess(settings.ensure_data_dir() / "metrics")
    uvicorn.run(
        "callplane.app:create_app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_config=None,
        server_header=False,
    )


@app.command()
def media(
    health_port: Annotated[int | None, typer.Option(help="answer GET /healthz on this port (JSON)")] = None,
    health_host: Annotated[str, typer.Option(help="address for --health-port")] = "127.0.0.1",
) -> None:
    """Run a media node: the SIP/media engine and the live calls it carries, no public API.

    Inbound calls, events, recordings and the trunk registrar run here; `callplane serve --role api` processes
    relay commands to the node that carries each call (PostgreSQL LISTEN/NOTIFY, with a poll). Give each node its
    own stable CALLPLANE_VOICE_NODE_ID: on start a node ends the calls it left live when it last stopped.
    """
    from callplane.db.migrate import upgrade
    from callplane.logging import configure_logging
    from callplane.runtime import run_media_node

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    settings.ensure_data_dir()
    settings.effective_secret_key()
    upgrade(settings)
    asyncio.run(run_media_node(settings, health=(health_host, health_port) if health_port is not None else None))


@app.command("media-drain")
def media_drain(node_id: Annotated[str, typer.Argument(help="the node's CALLPLANE_VOICE_NODE_ID")]) -> None:
    """Drain a media node: from its next heartbeat it answers 503 to OPTIONS and new INVITEs (a SIP front door takes
    it out of rotation), new outbound calls go to other nodes, its live calls finish, then it exits.

    The same as `POST /v1/admin/voice/nodes/{id}/drain`, or SIGUSR1 to the node's process."""
    from callplane.live.nodes import request_drain

    async def work(session: AsyncSession) -> dict[str, Any]:
        node = await request_drain(session, node_id=node_id)
        if node is None:
            raise typer.BadParameter(f"no media node {node_id!r} has ever run")
        return {"id": node.id, "drain_requested_at": node.drain_requested_at, "stopped_at": node.stopped_at}

    _print(_in_transaction(work))


@app.command("sip-front")
def sip_front(
    node: Annotated[list[str], typer.Option(help="a media node's SIP address host:port (repeat for each node)")],
    listen: Annotated[str, typer.Option(help="the front door's SIP address host:port (UDP)")] = "127.0.0.1:5060",
    work_dir: Annotated[Path, typer.Option(help="where the dispatcher list and Kamailio's runtime files go")] = Path(
        "sip-front"
    ),
    probe_seconds: Annotated[int, typer.Option(help="OPTIONS probe interval for each node")] = 1,
    timeout_ms: Annotated[
        int, typer.Option(help="a probe, or an INVITE a node does not answer at all, fails after this (ms)")
    ] = 3000,
    config: Annotated[Path | None, typer.Option(help="the Kamailio config (default: deploy/kamailio)")] = None,
) -> None:
    """Run Kamailio as the SIP front door of these media nodes: it writes the dispatcher list, then runs
    `kamailio` in the foreground (round robin over the nodes that answer OPTIONS with 200; a 503 or no answer takes
    a node out until it answers 200 again; an INVITE refused 503 or unanswered is retried on the next node)."""
    from callplane.sipfront import FrontDoor, parse_address

    front = FrontDoor(
        listen=parse_address(listen),
        nodes=[parse_address(address) for address in node],
        work_dir=work_dir,
        probe_seconds=probe_seconds,
        config=config,
        timeout_ms=timeout_ms,
    )
    raise typer.Exit(front.run())


@app.command()
def migrate(revision: str = "head") -> None:
    """Apply database migrations up to REVISION."""
    from callplane.db.migrate import upgrade

    upgrade(_settings(), revision)
    typer.echo("migrations applied")


@app.command()
def worker(
    stage: Annotated[
        list[str] | None,
        typer.Option(help="run only this pipeline stage (repeatable): recording, transcribe or finalize"),
    ] = None,
    delivery: Annotated[
        bool | None, typer.Option(help="also deliver webhooks and callbacks (default: only without --stage)")
    ] = None,
) -> None:
    """Run post-call processing and webhook delivery only (any number, on any machines sharing one PostgreSQL).

    With --stage, the worker claims only jobs at those stages and hands each job on afterwards, e.g.
    `callplane worker --stage transcribe` on a GPU machine next to workers running the other stages.
    """
    from callplane.core.tenancy.secrets_box import SecretBox
    from callplane.db.engine import create_engine, create_session_factory
    from callplane.db.migrate import upgrade
    from callplane.logging import configure_logging
    from callplane.runtime import build_delivery_worker, build_pipeline_worker, build_recording_storage
    from callplane.workers.processing import STAGE_NAMES

    unknown = sorted(set(stage or ()) - set(STAGE_NAMES))
    if unknown:
        raise typer.BadParameter(f"unknown stage {', '.join(unknown)}; stages are {', '.join(STAGE_NAMES)}")
    stages = frozenset(stage) if stage else None
    deliver = delivery if delivery is not None else stages is None
    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    upgrade(settings)

    async def run() -> None:
        from callplane.observability.endpoint import serve_metrics_for
        from callplane.observability.tracing import configure_tracing

        configure_tracing(settings)  # a job's run continues the trace of the request that queued it
        engine = create_engine(settings)
        metrics_server = await serve_metrics_for(settings)  # a worker has no API to mount /metrics on
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        pipeline = build_pipeline_worker(
            settings,
            create_session_factory(engine),
            SecretBox(settings.effective_secret_key()),
            build_recording_storage(settings),
            stages=stages,
        )
        sender = (
            build_delivery_worker(settings, create_session_factory(engine), SecretBox(settings.effective_secret_key()))
            if deliver
            else None
        )
        try:
            await asyncio.gather(pipeline.run_forever(stop), *([sender.run_forever(stop)] if sender else []))
        finally:
            pipeline.close()
            if sender is not None:
                await sender.aclose()
            if metrics_server is not None:
                metrics_server.close()
            await engine.dispose()

    asyncio.run(run())


@app.command("retry-call")
def retry_call(call_id: str) -> None:
    """Re-run a failed call from the stage it failed at."""
    from callplane.core.calls import service

    async def work(session: AsyncSession) -> dict[str, Any]:
        call = await service.retry_call(session=session, principal=None, call_id=call_id)
        return {"id": call.id, "status": call.status}

    _print(_in_transaction(work))


@app.command("demo-setup")
def demo_setup(
    base_url: Annotated[str, typer.Option(help="where `callplane serve` listens, for the printed URLs")] = (
        "http://127.0.0.1:8080"
    ),
) -> None:
    """Create a demo network and partner and print their tokens and headers as JSON."""
    from callplane.core.tenancy.demo import create_demo

    demo = _in_transaction(lambda session: create_demo(session=session))
    demo["voice"] |= _voice_addresses(_settings(), base_url)
    _print(demo)


def _voice_addresses(settings: Settings, base_url: str) -> dict[str, str]:
    """Where a Calls API client and a SIP phone reach this server (`serve` with CALLPLANE_VOICE_ENABLED)."""
    sip_host = settings.sip_public_host or settings.sip_host
    return {"base_url": base_url.rstrip("/"), "sip_address": f"sip:{sip_host}:{settings.sip_port}"}


@app.command()
def phone(
    listen: Annotated[str | None, typer.Option(help="answer calls on HOST:PORT (SIP over UDP)")] = None,
    dial: Annotated[str | None, typer.Option(help="call sip:user@host:port")] = None,
    digits: Annotated[str, typer.Option(help="DTMF to send once the call is answered")] = "",
    digits_delay: Annotated[float, typer.Option(help="seconds to wait after answer before the digits")] = 0.0,
    play: Annotated[Path | None, typer.Option(help="WAV/MP3 to play once answered")] = None,
    say: Annotated[str | None, typer.Option(help="text to speak once answered (espeak-ng)")] = None,
    duration: Annotated[float | None, typer.Option(help="hang up this many seconds after answer")] = None,
    calls: Annotated[int | None, typer.Option(help="with --listen: exit after this many calls")] = None,
    username: Annotated[str | None, typer.Option(help="digest username for --dial")] = None,
    password: Annotated[str | None, typer.Option(help="digest password for --dial")] = None,
    record: Annotated[Path | None, typer.Option(help="record each call to this WAV (stereo)")] = None,
    rtp_ports: Annotated[str, typer.Option(help="RTP port range LOW-HIGH")] = "30000-31000",
) -> None:
    """A SIP softphone on the media engine: answer with a prompt, or dial, send digits, play; JSON lines out."""
    from callplane.media.phone import (
        PhoneOptions,
        PhoneUsageError,
        SipUri,
        json_line_emitter,
        parse_host_port,
        run_phone,
    )

    try:
        low, _, high = rtp_ports.partition("-")
        options = PhoneOptions(
            listen=parse_host_port(listen) if listen else None,
            dial=SipUri.parse(dial) if dial else None,
            digits=digits,
            digits_delay_s=digits_delay,
            play=play,
            say=say,
            duration_s=duration,
            calls=calls,
            username=username,
            password=password,
            record=record,
            cache_dir=_settings().data_dir / "phone-cache",
            rtp_port_range=(int(low), int(high)),
        )
        if listen and not dial and options.say is None and options.play is None:
            from callplane.media.phone import DEFAULT_PROMPT

            options = dataclasses.replace(options, say=DEFAULT_PROMPT)
    except (PhoneUsageError, ValueError) as error:
        raise typer.BadParameter(str(error)) from error

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        return await run_phone(options, json_line_emitter(lambda line: typer.echo(line)), stop=stop)

    raise typer.Exit(asyncio.run(run()))


@app.command("admin-token")
def admin_token() -> None:
    """Print the admin API token (generated into the data directory in development)."""
    typer.echo(_settings().effective_admin_token())


@admin.command("create-account")
def create_account(
    kind: Annotated[str, typer.Option(help="network or partner")],
    name: Annotated[str, typer.Option()],
    external_id: Annotated[str | None, typer.Option(help="network id, or the partner's x-partner-id")] = None,
    default_language_code: str = "en-US",
    language_codes: Annotated[str | None, typer.Option(help="comma-separated")] = None,
    time_zone: str = "UTC",
    ingestion_enabled: bool = True,
    rate_limit_per_minute: int | None = None,
) -> None:
    from callplane.core.tenancy import service
    from callplane.core.tenancy.models import AccountKind
    from callplane.surfaces.admin.router import account_out

    async def work(session: AsyncSession) -> dict[str, Any]:
        account = await service.create_account(
            session=session,
            kind=AccountKind(kind),
            name=name,
            external_id=external_id,
            default_language_code=default_language_code,
            language_codes=language_codes.split(",") if language_codes else None,
            time_zone=time_zone,
            ingestion_enabled=ingestion_enabled,
            rate_limit_per_minute=rate_limit_per_minute,
        )
        return account_out(account)

    _print(_in_transaction(work))


@admin.command("create-organization")
def create_organization(
    account_id: Annotated[str, typer.Option()],
    kind: Annotated[str, typer.Option(help="advertiser, tenant or sub_tenant")],
    external_id: Annotated[str, typer.Option()],
    name: str = "",
    parent_id: str | None = None,
) -> None:
    from callplane.core.tenancy import service
    from callplane.core.tenancy.models import OrganizationKind
    from callplane.surfaces.admin.router import organization_out

    async def work(session: AsyncSession) -> dict[str, Any]:
        return organization_out(
            await service.create_organization(
                session=session,
                account_id=account_id,
                kind=OrganizationKind(kind),
                external_id=external_id,
                name=name,
                parent_id=parent_id,
            )
        )

    _print(_in_transaction(work))


@admin.command("create-campaign")
def create_campaign(
    account_id: Annotated[str, typer.Option()],
    organization_id: Annotated[str, typer.Option(help="the advertiser's organization id")],
    external_id: Annotated[str, typer.Option(help="the campaign's id from network")],
    name: str = "",
    kind: Annotated[str, typer.Option(help="external_only or standard")] = "external_only",
    transcription_enabled: bool = True,
) -> None:
    from callplane.core.tenancy import service
    from callplane.core.tenancy.models import CampaignKind
    from callplane.surfaces.admin.router import campaign_out

    async def work(session: AsyncSession) -> dict[str, Any]:
        return campaign_out(
            await service.create_campaign(
                session=session,
                account_id=account_id,
                organization_id=organization_id,
                external_id=external_id,
                name=name,
                kind=CampaignKind(kind),
                transcription_enabled=transcription_enabled,
            )
        )

    _print(_in_transaction(work))


@admin.command("create-signal")
def create_signal(
    account_id: Annotated[str, typer.Option()],
    name: Annotated[str, typer.Option()],
    description: str = "",
) -> None:
    from callplane.core.tenancy import service
    from callplane.surfaces.admin.router import signal_out

    async def work(session: AsyncSession) -> dict[str, Any]:
        return signal_out(
            await service.create_signal_definition(
                session=session, account_id=account_id, name=name, description=description
            )
        )

    _print(_in_transaction(work))


@admin.command("create-custom-data-field")
def create_custom_data_field(
    account_id: Annotated[str, typer.Option()],
    api_name: Annotated[str, typer.Option(help="the partner (API) name")],
    display_name: str = "",
) -> None:
    from callplane.core.tenancy import service
    from callplane.surfaces.admin.router import field_out

    async def work(session: AsyncSession) -> dict[str, Any]:
        return field_out(
            await service.create_custom_data_field(
                session=session, account_id=account_id, api_name=api_name, display_name=display_name
            )
        )

    _print(_in_transaction(work))


@admin.command("issue-token")
def issue_token(
    account_id: Annotated[str, typer.Option()],
    organization_id: Annotated[str | None, typer.Option(help="limit the token to this organization")] = None,
    name: str = "",
) -> None:
    """Print a new API token (shown this once; only its hash is stored)."""
    from callplane.core.tenancy import service
    from callplane.surfaces.admin.router import token_out

    async def work(session: AsyncSession) -> dict[str, Any]:
        token, plaintext = await service.issue_token(
            session=session, account_id=account_id, organization_id=organization_id, name=name
        )
        return token_out(token) | {"token": plaintext}

    _print(_in_transaction(work))


@admin.command("revoke-token")
def revoke_token(account_id: Annotated[str, typer.Option()], token_id: Annotated[str, typer.Option()]) -> None:
    from callplane.core.tenancy import service
    from callplane.surfaces.admin.router import token_out

    async def work(session: AsyncSession) -> dict[str, Any]:
        return token_out(await service.revoke_token(session=session, account_id=account_id, token_id=token_id))

    _print(_in_transaction(work))


@admin.command("create-recording-auth-config")
def create_recording_auth_config(
    account_id: Annotated[str, typer.Option()],
    method: Annotated[str, typer.Option(help="bearer, query or header")],
    secret: Annotated[str, typer.Option(prompt=True, hide_input=True)],
    parameter_name: str = "",
    name: str = "",
) -> None:
    from callplane.core.tenancy import service
    from callplane.core.tenancy.models import RecordingAuthMethod
    from callplane.core.tenancy.secrets_box import SecretBox
    from callplane.surfaces.admin.router import auth_config_out

    box = SecretBox(_settings().effective_secret_key())

    async def work(session: AsyncSession) -> dict[str, Any]:
        return auth_config_out(
            await service.create_recording_auth_config(
                session=session,
                secret_box=box,
                account_id=account_id,
                method=RecordingAuthMethod(method),
                secret=secret,
                parameter_name=parameter_name,
                name=name,
            )
        )

    _print(_in_transaction(work))


@admin.command("set-s3-access")
def set_s3_access(
    account_id: Annotated[str, typer.Option()],
    bucket: Annotated[str, typer.Option()],
    access_key_id: Annotated[str, typer.Option()],
    secret_access_key: Annotated[str, typer.Option(prompt=True, hide_input=True)],
    region: str | None = None,
    prefix: str = "",
    endpoint_url: Annotated[str | None, typer.Option(help="unset: AWS; set for an S3-compatible service")] = None,
) -> None:
    """Direct S3 access to the account's recordings (calls with a recording_filename, or none: the external id)."""
    from callplane.core.recordings import bucket_access
    from callplane.core.tenancy.secrets_box import SecretBox
    from callplane.surfaces.admin.recording_access import s3_access_out

    box = SecretBox(_settings().effective_secret_key())

    async def work(session: AsyncSession) -> dict[str, Any]:
        return s3_access_out(
            await bucket_access.set_s3_access(
                session=session,
                secret_box=box,
                account_id=account_id,
                bucket=bucket,
                access_key_id=access_key_id,
                secret_access_key=secret_access_key,
                region=region,
                prefix=prefix,
                endpoint_url=endpoint_url,
            )
        )

    _print(_in_transaction(work))


@admin.command("set-azure-blob-access")
def set_azure_blob_access(
    account_id: Annotated[str, typer.Option()],
    storage_account: Annotated[str, typer.Option()],
    container: Annotated[str, typer.Option()],
    credential_kind: Annotated[str, typer.Option(help="key (an account key) or sas (a SAS token)")],
    credential: Annotated[str, typer.Option(prompt=True, hide_input=True)],
    prefix: str = "",
    endpoint_url: Annotated[str | None, typer.Option(help="the blob service URL; unset: Azure's")] = None,
) -> None:
    """Direct Azure Blob access to the account's recordings (calls with a recording_filename, or none)."""
    from callplane.core.recordings import bucket_access
    from callplane.core.tenancy.secrets_box import SecretBox
    from callplane.surfaces.admin.recording_access import azure_blob_access_out

    if credential_kind not in ("key", "sas"):
        raise typer.BadParameter("--credential-kind is key or sas")
    box = SecretBox(_settings().effective_secret_key())

    async def work(session: AsyncSession) -> dict[str, Any]:
        return azure_blob_access_out(
            await bucket_access.set_azure_blob_access(
                session=session,
                secret_box=box,
                account_id=account_id,
                storage_account=storage_account,
                container=container,
                credential_kind="sas" if credential_kind == "sas" else "key",
                credential=credential,
                prefix=prefix,
                endpoint_url=endpoint_url,
            )
        )

    _print(_in_transaction(work))


@admin.command("list-accounts")
def list_accounts() -> None:
    from callplane.core.tenancy import service
    from callplane.surfaces.admin.router import account_out

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        return [account_out(a) for a in await service.list_accounts(session=session)]

    _print(_in_transaction(work))


@admin.command("create-promo-number")
def create_promo_number(
    account_id: Annotated[str, typer.Option()],
    campaign_id: Annotated[str, typer.Option(help="the campaign whose calls these are")],
    number: Annotated[str, typer.Option(help="the called number (any format) or SIP user")],
    destination: Annotated[str, typer.Option(help="sip:user@host[:port] or a phone number (with --trunk-id)")],
    trunk_id: Annotated[str | None, typer.Option(help="the SIP trunk that dials a phone destination")] = None,
    configuration_id: Annotated[str | None, typer.Option(help="voice configuration (default: a new one)")] = None,
    description: str = "",
    external_id: Annotated[str | None, typer.Option(help="the network's promo number id")] = None,
    media_type: str | None = None,
    record: Annotated[bool, typer.Option(help="record calls and send them through the post-call pipeline")] = True,
) -> None:
    """A campaign promo number: calls to it are bridged to the destination and tracked (calls in progress)."""
    from callplane.core.call_tracking import service
    from callplane.surfaces.admin.call_tracking import promo_out

    async def work(session: AsyncSession) -> dict[str, Any]:
        return promo_out(
            await service.create_promo_number(
                session=session,
                account_id=account_id,
                campaign_id=campaign_id,
                number=number,
                destination=destination,
                trunk_id=trunk_id,
                configuration_id=configuration_id,
                description=description,
                external_id=external_id,
                media_type=media_type,
                record=record,
            )
        )

    _print(_in_transaction(work))


@admin.command("list-promo-numbers")
def list_promo_numbers(account_id: Annotated[str, typer.Option()]) -> None:
    from callplane.core.call_tracking import service
    from callplane.surfaces.admin.call_tracking import promo_out

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        return [promo_out(p) for p in await service.list_promo_numbers(session=session, account_id=account_id)]

    _print(_in_transaction(work))


@admin.command("delete-promo-number")
def delete_promo_number(
    account_id: Annotated[str, typer.Option()], promo_number_id: Annotated[str, typer.Option()]
) -> None:
    from callplane.core.call_tracking import service
    from callplane.surfaces.admin.call_tracking import promo_out

    async def work(session: AsyncSession) -> dict[str, Any]:
        return promo_out(
            await service.delete_promo_number(session=session, account_id=account_id, promo_number_id=promo_number_id)
        )

    _print(_in_transaction(work))


@admin.command("set-custom-data")
def set_custom_data(
    account_id: Annotated[str, typer.Option()],
    owner_type: Annotated[str, typer.Option(help="network, advertiser, campaign or promo_number")],
    value: Annotated[list[str], typer.Option(help="NAME=VALUE (NAME= clears it); repeat for several")],
    owner_id: Annotated[str | None, typer.Option(help="the owner's id (not for network)")] = None,
) -> None:
    """Marketing data values that calls to promo numbers carry (the most specific owner wins)."""
    from callplane.core.call_tracking import service
    from callplane.core.call_tracking.models import OwnerType

    kind = OwnerType(owner_type)
    values: dict[str, str | None] = {}
    for item in value:
        name, _, text = item.partition("=")
        values[name] = text or None

    async def work(session: AsyncSession) -> dict[str, Any]:
        owner = account_id if kind is OwnerType.NETWORK else (owner_id or "")
        result = await service.set_custom_data_values(
            session=session, account_id=account_id, owner_type=kind, owner_id=owner, values=values
        )
        return {"owner_type": kind, "owner_id": owner, "values": dict(result)}

    _print(_in_transaction(work))


# ---- contact center (docs/contact-center.md) ------------------------------------------------------


@admin.command("cc-create-agent")
def cc_create_agent(
    account_id: Annotated[str, typer.Option()],
    email: Annotated[str, typer.Option()],
    endpoint_user: Annotated[str, typer.Option(help="SIP username, or a phone number with --endpoint-type PHONE")],
    endpoint_host: Annotated[str | None, typer.Option(help="host[:port] of the agent's SIP phone")] = None,
    endpoint_type: Annotated[str, typer.Option(help="SIP or PHONE")] = "SIP",
    trunk_id: Annotated[str | None, typer.Option(help="a SIP trunk (required for PHONE)")] = None,
    first_name: str = "",
    last_name: str = "",
    agent_number: str | None = None,
    avatar_url: str | None = None,
    can_place_calls: bool = True,
    status: Annotated[str, typer.Option(help="available or unavailable")] = "unavailable",
) -> None:
    """An agent: who they are and the phone that rings when they get a call."""
    from callplane.core.contact_center import service
    from callplane.surfaces.admin.contact_center import agent_out

    spec = service.AgentSpec(
        email=email,
        endpoint_user=endpoint_user,
        endpoint_type=endpoint_type,
        endpoint_host=endpoint_host,
        trunk_id=trunk_id,
        first_name=first_name,
        last_name=last_name,
        agent_number=agent_number,
        avatar_url=avatar_url,
        can_place_calls=can_place_calls,
        status=status,
    )

    async def work(session: AsyncSession) -> dict[str, Any]:
        return agent_out(await service.create_agent(session=session, account_id=account_id, spec=spec))

    _print(_in_transaction(work))


@admin.command("cc-set-agent-status")
def cc_set_agent_status(
    account_id: Annotated[str, typer.Option()],
    agent_id: Annotated[int, typer.Option()],
    status: Annotated[str, typer.Option(help="available or unavailable")],
) -> None:
    """Make an agent available (queued calls may go to them within a second) or unavailable."""
    from callplane.core.contact_center import service
    from callplane.surfaces.admin.contact_center import agent_out

    async def work(session: AsyncSession) -> dict[str, Any]:
        return agent_out(
            await service.update_agent(
                session=session, account_id=account_id, agent_id=agent_id, changes={"status": status}
            )
        )

    _print(_in_transaction(work))


@admin.command("cc-create-menu")
def cc_create_menu(
    account_id: Annotated[str, typer.Option()],
    name: Annotated[str, typer.Option()],
    menu_type: Annotated[str, typer.Option(help="ivr_menu, mobile_menu or web_menu")] = "ivr_menu",
    parent_id: int | None = None,
    position: int = 0,
    state: Annotated[str, typer.Option(help="open, after_hours or manual_redirection")] = "open",
    language: Annotated[list[str] | None, typer.Option(help="ISO 639-1; repeat for several")] = None,
    output_msg: str | None = None,
    outbound_number_id: int | None = None,
    agent_id: Annotated[list[int] | None, typer.Option(help="an agent of the queue; repeat for several")] = None,
) -> None:
    """A menu (a node of the tree; with agents, a queue)."""
    from callplane.core.contact_center import service
    from callplane.surfaces.admin.contact_center import menu_view

    spec = service.MenuSpec(
        name=name,
        menu_type=menu_type,
        parent_id=parent_id,
        position=position,
        state=state,
        languages=tuple(language or ["en"]),
        output_msg=output_msg,
        outbound_number_id=outbound_number_id,
        agent_ids=tuple(agent_id or []),
    )

    async def work(session: AsyncSession) -> dict[str, Any]:
        menu = await service.create_menu(session=session, account_id=account_id, spec=spec)
        return await menu_view(session, menu)

    _print(_in_transaction(work))


@admin.command("cc-set-menu-state")
def cc_set_menu_state(
    account_id: Annotated[str, typer.Option()],
    menu_id: Annotated[int, typer.Option()],
    state: Annotated[str, typer.Option(help="open, after_hours or manual_redirection")],
) -> None:
    from callplane.core.contact_center import service
    from callplane.surfaces.admin.contact_center import menu_view

    async def work(session: AsyncSession) -> dict[str, Any]:
        menu = await service.update_menu(
            session=session, account_id=account_id, menu_id=menu_id, changes={"state": state}
        )
        return await menu_view(session, menu)

    _print(_in_transaction(work))


@admin.command("cc-create-outbound-number")
def cc_create_outbound_number(
    account_id: Annotated[str, typer.Option()],
    number: Annotated[str, typer.Option(help="international form, e.g. +1 339-219-5276")],
    trunk_id: Annotated[str | None, typer.Option(help="the SIP trunk that carries calls from this number")] = None,
    default: bool = False,
) -> None:
    from callplane.core.contact_center import service
    from callplane.surfaces.admin.contact_center import number_out

    async def work(session: AsyncSession) -> dict[str, Any]:
        return number_out(
            await service.create_outbound_number(
                session=session, account_id=account_id, number=number, trunk_id=trunk_id, is_default=default
            )
        )

    _print(_in_transaction(work))


@admin.command("cc-create-crm-ticket")
def cc_create_crm_ticket(
    account_id: Annotated[str, typer.Option()],
    ticket_id: Annotated[str, typer.Option()],
    out_contact_id: Annotated[str, typer.Option(help="the CRM's contact id")],
    number: Annotated[str, typer.Option(help="the contact's phone number")],
    url: str | None = None,
) -> None:
    """A CRM ticket: what a call's `ticket_id` resolves to."""
    from callplane.core.contact_center import service
    from callplane.surfaces.admin.contact_center import ticket_out

    async def work(session: AsyncSession) -> dict[str, Any]:
        return ticket_out(
            await service.create_crm_ticket(
                session=session,
                account_id=account_id,
                ticket_id=ticket_id,
                out_contact_id=out_contact_id,
                number=number,
                url=url,
            )
        )

    _print(_in_transaction(work))


@admin.command("cc-list")
def cc_list(account_id: Annotated[str, typer.Option()]) -> None:
    """An account's agents, menus and outbound numbers."""
    from callplane.core.contact_center import service
    from callplane.surfaces.admin.contact_center import agent_out, menu_view, number_out

    async def work(session: AsyncSession) -> dict[str, Any]:
        menus = [
            await menu_view(session, menu) for menu in await service.list_menus(session=session, account_id=account_id)
        ]
        return {
            "agents": [agent_out(a) for a in await service.list_agents(session=session, account_id=account_id)],
            "menus": menus,
            "outbound_numbers": [
                number_out(n) for n in await service.list_outbound_numbers(session=session, account_id=account_id)
            ],
        }

    _print(_in_transaction(work))


def main() -> None:
    app()
