"""Reading conferences, their participants and their recordings, for any process (no engine needed).

Functions take the caller's session and never commit; the one that marks recordings deleted leaves removing the files
to the caller, after its commit. What changes conferences lives in live/conferences.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.voice.conference_models import (
    ConferenceState,
    ParticipantState,
    VoiceConference,
    VoiceConferenceParticipant,
)
from callplane.core.voice.models import VoiceCall, VoiceRecording
from callplane.core.voice.queries import RecordingNotFound
from callplane.db.base import utcnow
from callplane.errors import NotFound


class ConferenceNotFound(NotFound):
    """Conference not found."""


@dataclass(frozen=True, slots=True)
class ConferenceView:
    """A conference with its participant sessions (oldest first) and their calls."""

    conference: VoiceConference
    participants: list[VoiceConferenceParticipant]
    calls: dict[str, VoiceCall]

    def current(self) -> list[VoiceConferenceParticipant]:
        """Each call's latest session: what `participants` of a live conference shows."""
        latest: dict[str, VoiceConferenceParticipant] = {}
        for participant in self.participants:
            latest[participant.call_id] = participant
        return list(latest.values())


@dataclass(frozen=True, slots=True)
class ConferenceRecordings:
    """A conference's ready recording files (composed ones have `composed` set) and the calls they belong to."""

    conference: VoiceConference
    files: list[VoiceRecording]
    calls: dict[str, VoiceCall]


async def get_conference(session: AsyncSession, *, account_id: str, conference_id: str) -> VoiceConference:
    conference = await session.get(VoiceConference, conference_id)
    if conference is None or conference.account_id != account_id:
        raise ConferenceNotFound()
    return conference


async def views(session: AsyncSession, conferences: list[VoiceConference]) -> list[ConferenceView]:
    """The conferences with their participant sessions and calls (two queries for all of them)."""
    ids = [conference.id for conference in conferences]
    participants = list(
        await session.scalars(
            select(VoiceConferenceParticipant)
            .where(VoiceConferenceParticipant.conference_id.in_(ids))
            .order_by(VoiceConferenceParticipant.created_at, VoiceConferenceParticipant.id)
        )
    )
    call_ids = {participant.call_id for participant in participants}
    calls = {call.id: call for call in await session.scalars(select(VoiceCall).where(VoiceCall.id.in_(call_ids)))}
    return [
        ConferenceView(conference, [p for p in participants if p.conference_id == conference.id], calls)
        for conference in conferences
    ]


async def view(session: AsyncSession, conference: VoiceConference) -> ConferenceView:
    return (await views(session, [conference]))[0]


async def active_participants(session: AsyncSession, conference_id: str) -> list[VoiceConferenceParticipant]:
    """The sessions still in the room or on their way in (JOINING, JOINED), oldest first."""
    return list(
        await session.scalars(
            select(VoiceConferenceParticipant)
            .where(
                VoiceConferenceParticipant.conference_id == conference_id,
                VoiceConferenceParticipant.state != ParticipantState.LEFT,
            )
            .order_by(VoiceConferenceParticipant.created_at, VoiceConferenceParticipant.id)
        )
    )


async def participant_of(session: AsyncSession, call_id: str) -> VoiceConferenceParticipant | None:
    """The call's session that is not over (JOINING or JOINED), if any."""
    found: VoiceConferenceParticipant | None = await session.scalar(
        select(VoiceConferenceParticipant)
        .where(
            VoiceConferenceParticipant.call_id == call_id,
            VoiceConferenceParticipant.state != ParticipantState.LEFT,
        )
        .order_by(VoiceConferenceParticipant.created_at.desc())
        .limit(1)
    )
    return found


async def list_conferences(
    session: AsyncSession,
    *,
    account_id: str,
    live: bool,
    name: str | None = None,
    call_id: str | None = None,
    configuration_id: str | None = None,
    start_time_after: datetime | None = None,
    end_time_before: datetime | None = None,
    offset: int = 0,
    limit: int = 20,
) -> tuple[list[ConferenceView], int]:
    """Live (ACTIVE) or finished conferences, newest first."""
    state = ConferenceState.ACTIVE if live else ConferenceState.FINISHED
    conditions: list[Any] = [VoiceConference.account_id == account_id, VoiceConference.state == state]
    if name:
        conditions.append(VoiceConference.name == name)
    if configuration_id:
        conditions.append(VoiceConference.configuration_id == configuration_id)
    if start_time_after is not None:
        conditions.append(VoiceConference.created_at > start_time_after)
    if end_time_before is not None:
        conditions.append(VoiceConference.ended_at < end_time_before)
    if call_id:
        conditions.append(
            VoiceConference.id.in_(
                select(VoiceConferenceParticipant.conference_id).where(VoiceConferenceParticipant.call_id == call_id)
            )
        )
    total = await session.scalar(select(func.count()).select_from(VoiceConference).where(*conditions)) or 0
    rows = list(
        await session.scalars(
            select(VoiceConference)
            .where(*conditions)
            .order_by(VoiceConference.created_at.desc(), VoiceConference.id)
            .offset(offset)
            .limit(limit)
        )
    )
    return await views(session, rows), total


# ---- recordings ---------------------------------------------------------------------------------


async def list_conference_recordings(
    session: AsyncSession,
    *,
    account_id: str,
    conference_id: str | None = None,
    configuration_id: str | None = None,
    conference_name: str | None = None,
    call_id: str | None = None,
    start_time_after: datetime | None = None,
    end_time_before: datetime | None = None,
    composition: bool | None = None,
    offset: int = 0,
    limit: int = 20,
) -> tuple[list[ConferenceRecordings], int]:
    """Conferences that have ready recording files, newest first, each with its files and their calls."""
    conditions: list[Any] = [
        VoiceRecording.account_id == account_id,
        VoiceRecording.ready.is_(True),
        VoiceRecording.conference_id.is_not(None),
    ]
    if conference_id:
        conditions.append(VoiceRecording.conference_id == conference_id)
    if configuration_id:
        conditions.append(VoiceRecording.configuration_id == configuration_id)
    if call_id:
        conditions.append(VoiceRecording.call_id == call_id)
    if composition is not None:
        conditions.append(VoiceRecording.composed.is_(composition))
    if start_time_after is not None:
        conditions.append(VoiceRecording.started_at > start_time_after)
    if end_time_before is not None:
        conditions.append(VoiceRecording.ended_at < end_time_before)
    conference_ids = select(VoiceRecording.conference_id).where(*conditions).distinct().subquery()
    conference_conditions: list[Any] = [VoiceConference.id.in_(select(conference_ids.c.conference_id))]
    if conference_name:
        conference_conditions.append(VoiceConference.name == conference_name)
    total = await session.scalar(select(func.count()).select_from(VoiceConference).where(*conference_conditions)) or 0
    conferences = list(
        await session.scalars(
            select(VoiceConference)
            .where(*conference_conditions)
            .order_by(VoiceConference.created_at.desc(), VoiceConference.id)
            .offset(offset)
            .limit(limit)
        )
    )
    ids = [conference.id for conference in conferences]
    files = list(
        await session.scalars(
            select(VoiceRecording)
            .where(*conditions, VoiceRecording.conference_id.in_(ids))
            .order_by(VoiceRecording.started_at, VoiceRecording.composed.desc(), VoiceRecording.id)
        )
    )
    call_ids = {f.call_id for f in files}
    calls = {call.id: call for call in await session.scalars(select(VoiceCall).where(VoiceCall.id.in_(call_ids)))}
    found = [
        ConferenceRecordings(conference, [f for f in files if f.conference_id == conference.id], calls)
        for conference in conferences
    ]
    return found, total


async def conference_recordings(session: AsyncSession, *, account_id: str, conference_id: str) -> ConferenceRecordings:
    found, _ = await list_conference_recordings(session, account_id=account_id, conference_id=conference_id, limit=1)
    if not found:
        raise RecordingNotFound()
    return found[0]


async def mark_conference_recordings_deleted(session: AsyncSession, *, account_id: str, conference_id: str) -> None:
    await session.execute(
        update(VoiceRecording)
        .where(VoiceRecording.conference_id == conference_id, VoiceRecording.account_id == account_id)
        .values(ready=False, deleted_at=utcnow())
    )
