"""Accept finished calls: call, idempotency key, processing job and event in one transaction.

The caller owns the session and commits it before answering, so a 2xx always means durable. On PostgreSQL a new
call is one statement (one transaction by itself): it runs on a pooled connection of its own unless a lookup has
already begun a transaction in the session, which it then joins.
Rows go in with Core inserts: this is the hot path of ingestion and ORM unit-of-work overhead
would dominate it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from callplane.core.calls.models import (
    CallOrigin,
    CallStatus,
    IdempotencyKey,
)
from callplane.core.events.types import CALL_RECEIVED
from callplane.core.ingestion import statements
from callplane.core.ingestion.errors import (
    CampaignNotAccessible,
    CampaignNotExternal,
    CampaignWithoutTranscription,
    ExternalIdReused,
)
from callplane.core.ingestion.schemas import AcceptedCall, CallSubmission
from callplane.core.jobs import queue
from callplane.core.jobs.models import JobKind
from callplane.core.signals.service import SUBMITTED, SignalInput, custom_data_row, signal_row, unknown_names
from callplane.core.tenancy.models import CampaignKind
from callplane.core.tenancy.schemas import CampaignInfo, Principal
from callplane.core.tenancy.service import SUPPORTED_LANGUAGE_CODES, TenancyLookups
from callplane.db.base import new_id
from callplane.errors import CallplaneError, InvalidInput
from callplane.observability.metrics import INGESTED_CALLS, INGESTION_REJECTED, JOBS_ENQUEUED


async def check_campaign(
    *, session: AsyncSession, lookups: TenancyLookups, principal: Principal, campaign_external_id: str
) -> CampaignInfo:
    """The campaign must exist in the caller's account and scope, be external-only and transcribe."""
    campaign = await lookups.campaign(session, principal.account.id, campaign_external_id)
    if campaign is None or not principal.may_see_organization(campaign.organization_id):
        raise CampaignNotAccessible()
    if campaign.kind != CampaignKind.EXTERNAL_ONLY:
        raise CampaignNotExternal()
    if not campaign.transcription_enabled:
        raise CampaignWithoutTranscription()
    return campaign


async def reference_problems(
    *, session: AsyncSession, lookups: TenancyLookups, principal: Principal, submission: CallSubmission
) -> list[str]:
    """Problems only the account's configuration can reveal: languages, signal and field names, auth configs."""
    problems: list[str] = []
    account = principal.account
    if submission.language_code is not None:
        allowed = {account.default_language_code, *account.language_codes}
        if submission.language_code not in SUPPORTED_LANGUAGE_CODES:
            problems.append(
                f"'language_code' {submission.language_code!r} is not supported "
                f"(supported: {', '.join(SUPPORTED_LANGUAGE_CODES)})"
            )
        elif submission.language_code not in allowed:
            problems.append(f"'language_code' {submission.language_code!r} is not enabled for this network")
    catalog = await lookups.catalog(session, account.id)
    if (
        submission.recording_auth_config_id is not None
        and submission.recording_auth_config_id not in catalog.recording_auth_config_ids
    ):
        problems.append(f"'recording_auth_config_id' {submission.recording_auth_config_id!r} does not exist")
    problems += unknown_names(
        catalog, (signal.name for signal in submission.signals), (item.name for item in submission.custom_data)
    )
    return problems


async def accept_single_call(
    *,
    session: AsyncSession,
    lookups: TenancyLookups,
    principal: Principal,
    submission: CallSubmission,
    campaign: CampaignInfo,
    max_attempts: int | None = None,
) -> AcceptedCall:
    """Store one call idempotently on its external id; 'created' False means an identical resubmission.

    ``max_attempts``: of its processing job (Settings.job_max_attempts; None is the queue's default)."""
    assert submission.external_id is not None
    catalog = await lookups.catalog(session, principal.account.id)
    request_hash = submission.content_hash()
    call_id = new_id()
    now = datetime.now(UTC)
    key_row = {
        "account_id": principal.account.id,
        "scope": CallOrigin.SINGLE_INGEST,
        "key": submission.external_id,
        "request_hash": request_hash,
        "call_id": call_id,
        "created_at": now,
    }
    language = submission.language_code or principal.account.default_language_code or "en-US"
    call_row, job_row, event_row = _call_rows(
        principal,
        call_id,
        submission,
        origin=CallOrigin.SINGLE_INGEST,
        campaign=campaign,
        language=language,
        now=now,
        max_attempts=max_attempts,
    )
    signal_rows = [
        signal_row(
            call_id=call_id,
            account_id=principal.account.id,
            definition=catalog.signals[s.name.casefold()],
            signal=SignalInput(name=s.name, value=s.value),
            source=SUBMITTED,
            now=now,
        )
        for s in submission.signals
    ]
    custom_rows = _custom_data_rows(principal, call_id, submission, catalog.custom_fields, now)
    if session.get_bind().dialect.name == "postgresql":
        bundle = _bundle(key_row, call_row, job_row, event_row, signal_rows, custom_rows)
        if session.in_transaction():  # a lookup missed its cache: join that transaction (one connection)
            inserted = await statements.run_bundle(await session.connection(), *bundle)
        else:  # the common case: no ORM session work at all, just a pooled connection for one statement
            assert isinstance(session.bind, AsyncEngine)
            async with session.bind.connect() as connection:
                inserted = await statements.run_bundle(connection, *bundle)
    else:
        connection = await session.connection()
        inserted = (await connection.execute(statements.claim_key(connection.dialect.name), key_row)).scalar()
        if inserted is not None:
            await connection.execute(statements.CALL_INSERT, [call_row])
            await connection.execute(statements.JOB_INSERT, [job_row])
            await connection.execute(statements.EVENT_INSERT, [event_row])
            if signal_rows:
                await connection.execute(statements.SIGNAL_INSERT, signal_rows)
            if custom_rows:
                await connection.execute(statements.CUSTOM_DATA_INSERT, custom_rows)
    if inserted is None:
        return await _existing(
            session, principal.account.id, CallOrigin.SINGLE_INGEST, submission.external_id, request_hash
        )
    JOBS_ENQUEUED.labels(JobKind.PROCESS_CALL).inc()  # its job row went in with the call (not for a duplicate)
    return AcceptedCall(call_id=call_id, created=True)


def _bundle(
    key_row: dict[str, Any],
    call_row: dict[str, Any],
    job_row: dict[str, Any],
    event_row: dict[str, Any],
    signal_rows: list[dict[str, Any]],
    custom_rows: list[dict[str, Any]],
) -> tuple[Any, dict[str, Any]]:
    statement = statements.accept_call_bundle(
        tuple(key_row),
        tuple(call_row),
        tuple(job_row),
        tuple(event_row),
        tuple(signal_rows[0]) if signal_rows else (),
        tuple(custom_rows[0]) if custom_rows else (),
        len(signal_rows),
        len(custom_rows),
    )
    parameters: dict[str, Any] = {}
    for prefix, row in (("k_", key_row), ("c_", call_row), ("j_", job_row), ("e_", event_row)):
        parameters.update({prefix + name: value for name, value in row.items()})
    for index, row in enumerate(signal_rows):
        parameters.update({f"s{index}_{name}": value for name, value in row.items()})
    for index, row in enumerate(custom_rows):
        parameters.update({f"d{index}_{name}": value for name, value in row.items()})
    return statement, parameters


async def accept_batch(
    *,
    session: AsyncSession,
    principal: Principal,
    organization_id: str,
    submissions: list[CallSubmission],
    max_attempts: int | None = None,
) -> list[AcceptedCall]:
    """Store a batch; calls whose id was seen before (in any earlier batch, or earlier in this one) are skipped.

    ``max_attempts``: of each call's processing job (Settings.job_max_attempts; None is the queue's default)."""
    unique: dict[str, CallSubmission] = {}
    for submission in submissions:
        assert submission.external_id is not None
        unique.setdefault(submission.external_id, submission)
    now = datetime.now(UTC)
    planned = {key: new_id() for key in unique}
    rows: list[dict[str, Any]] = [
        {
            "account_id": principal.account.id,
            "scope": CallOrigin.BATCH_INGEST,
            "key": key,
            "request_hash": submission.content_hash(),
            "call_id": planned[key],
            "created_at": now,
        }
        for key, submission in unique.items()
    ]
    inserted_keys: set[str] = set()
    # One statement per row keeps RETURNING portable; they share one transaction and round trips are cheap.
    connection = await session.connection()
    claim = statements.claim_key(connection.dialect.name)
    for row in rows:
        if (await connection.execute(claim, row)).scalar() is not None:
            inserted_keys.add(row["key"])
    fresh = [(planned[key], unique[key]) for key in unique if key in inserted_keys]
    for _, submission in fresh:
        submission.organization_id = organization_id
    if fresh:
        await _insert_calls(
            session,
            principal,
            fresh,
            origin=CallOrigin.BATCH_INGEST,
            campaign=None,
            language=principal.account.default_language_code,
            max_attempts=max_attempts,
        )
        for call_id, submission in fresh:
            await _insert_custom_data(session, principal, call_id, submission, None)
    results = [AcceptedCall(call_id=planned[key], created=key in inserted_keys) for key in unique]
    INGESTED_CALLS.labels("batch", "created").inc(len(inserted_keys))
    JOBS_ENQUEUED.labels(JobKind.PROCESS_CALL).inc(len(inserted_keys))
    INGESTED_CALLS.labels("batch", "duplicate").inc(len(submissions) - len(inserted_keys))
    return results


async def _existing(session: AsyncSession, account_id: str, scope: str, key: str, request_hash: str) -> AcceptedCall:
    row = (
        await session.execute(
            select(IdempotencyKey.call_id, IdempotencyKey.request_hash).where(
                IdempotencyKey.account_id == account_id,
                IdempotencyKey.scope == scope,
                IdempotencyKey.key == key,
            )
        )
    ).one()
    if row.request_hash != request_hash:
        raise ExternalIdReused()
    return AcceptedCall(call_id=row.call_id, created=False)


def _call_rows(
    principal: Principal,
    call_id: str,
    s: CallSubmission,
    *,
    origin: CallOrigin,
    campaign: CampaignInfo | None,
    language: str,
    now: datetime,
    max_attempts: int | None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The call, its processing job and its call.received event, as rows."""
    account_id = principal.account.id
    duration_ms = None
    if s.started_at and s.ended_at:
        duration_ms = int((s.ended_at - s.started_at).total_seconds() * 1000)
    call_row: dict[str, Any] = {
        "id": call_id,
        "account_id": account_id,
        "organization_id": campaign.organization_id if campaign else s.organization_id,
        "campaign_id": campaign.id if campaign else None,
        "origin": origin,
        "external_id": s.external_id,
        "direction": s.direction,
        "from_e164": s.from_e164,
        "to_e164": s.to_e164,
        "contact_e164": s.contact_e164,
        "started_at": s.started_at,
        "ended_at": s.ended_at,
        "duration_ms": duration_ms,
        "language_code": s.language_code or language,
        "recording_url": s.recording_url,
        "recording_filename": s.recording_filename,
        "recording_auth_config_id": s.recording_auth_config_id,
        "callback_url": s.callback_url,
        "status": CallStatus.QUEUED,
        "status_reason": None,
        "agent": s.agent,
        "customer": s.customer,
        "metadata": s.metadata,
        "extras": s.extras,
        "received_at": now,
        "updated_at": now,
    }
    job_row = queue.job_row(
        kind=JobKind.PROCESS_CALL, account_id=account_id, call_id=call_id, max_attempts=max_attempts, now=now
    )
    event_row: dict[str, Any] = {
        "account_id": account_id,
        "call_id": call_id,
        "type": CALL_RECEIVED,
        "payload": {"call_id": call_id, "external_id": s.external_id, "origin": str(origin)},
        "created_at": now,
    }
    return call_row, job_row, event_row


async def _insert_calls(
    session: AsyncSession,
    principal: Principal,
    calls: list[tuple[str, CallSubmission]],
    *,
    origin: CallOrigin,
    campaign: CampaignInfo | None,
    language: str,
    max_attempts: int | None,
) -> None:
    now = datetime.now(UTC)
    rows = [
        _call_rows(
            principal,
            call_id,
            s,
            origin=origin,
            campaign=campaign,
            language=language,
            now=now,
            max_attempts=max_attempts,
        )
        for call_id, s in calls
    ]
    connection = await session.connection()
    await connection.execute(statements.CALL_INSERT, [row[0] for row in rows])
    await connection.execute(statements.JOB_INSERT, [row[1] for row in rows])
    await connection.execute(statements.EVENT_INSERT, [row[2] for row in rows])


def _custom_data_rows(
    principal: Principal,
    call_id: str,
    submission: CallSubmission,
    known_fields: dict[str, tuple[str, str]] | None,
    now: datetime,
) -> list[dict[str, Any]]:
    rows = []
    for item in submission.custom_data:
        # A batch checks no names (known_fields None): the field is stored under the name as sent.
        field: tuple[str | None, str] = (None, item.name)
        if known_fields is not None:
            field = known_fields[item.name.casefold()]
        rows.append(
            custom_data_row(
                call_id=call_id,
                account_id=principal.account.id,
                field=field,
                value=item.value,
                source=SUBMITTED,
                now=now,
            )
        )
    return rows


async def _insert_custom_data(
    session: AsyncSession,
    principal: Principal,
    call_id: str,
    submission: CallSubmission,
    known_fields: dict[str, tuple[str, str]] | None,
) -> None:
    rows = _custom_data_rows(principal, call_id, submission, known_fields, datetime.now(UTC))
    if rows:
        await (await session.connection()).execute(statements.CUSTOM_DATA_INSERT, rows)


def require_no_problems(problems: list[str]) -> None:
    if problems:
        raise InvalidInput("; ".join(problems), problems)


async def submit_single_call(
    *,
    session: AsyncSession,
    lookups: TenancyLookups,
    principal: Principal,
    submission: CallSubmission,
    wire_problems: list[str],
    max_attempts: int | None = None,
) -> AcceptedCall:
    """Check the campaign, then every reference, then store: campaign errors first, then all problems at once."""
    try:
        accepted = await _submit_single_call(
            session=session,
            lookups=lookups,
            principal=principal,
            submission=submission,
            wire_problems=wire_problems,
            max_attempts=max_attempts,
        )
    except CallplaneError as error:
        # Counted here, the one door every single-call refusal leaves by; the class name is a bounded reason.
        INGESTION_REJECTED.labels("single", rejection_reason(error)).inc()
        raise
    INGESTED_CALLS.labels("single", "created" if accepted.created else "duplicate").inc()
    return accepted


def rejection_reason(error: CallplaneError) -> str:
    """``CampaignNotAccessible`` -> ``campaign_not_accessible``: a label value per error class, never its text."""
    name = type(error).__name__
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


async def _submit_single_call(
    *,
    session: AsyncSession,
    lookups: TenancyLookups,
    principal: Principal,
    submission: CallSubmission,
    wire_problems: list[str],
    max_attempts: int | None,
) -> AcceptedCall:
    campaign = None
    if submission.campaign_external_id is not None:
        campaign = await check_campaign(
            session=session,
            lookups=lookups,
            principal=principal,
            campaign_external_id=submission.campaign_external_id,
        )
    problems = wire_problems + await reference_problems(
        session=session, lookups=lookups, principal=principal, submission=submission
    )
    require_no_problems(problems)
    assert campaign is not None  # a missing campaign id is one of the problems above
    return await accept_single_call(
        session=session,
        lookups=lookups,
        principal=principal,
        submission=submission,
        campaign=campaign,
        max_attempts=max_attempts,
    )
