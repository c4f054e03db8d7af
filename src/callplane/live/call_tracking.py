"""Call tracking on the live plane: a call to a promo number becomes a tracked call, bridged (a voice dialog) to
the campaign's destination. The voice service asks this planner about inbound calls that no voice route owns."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.call_tracking.models import OwnerType, PromoNumber, TrackedCall
from callplane.core.call_tracking.service import (
    Destination,
    new_call_record_id,
    new_transaction_id,
    number_candidates,
    parse_destination,
    phone_e164,
    resolved_custom_data,
)
from callplane.core.calls.models import Call, CallCustomData
from callplane.core.tenancy.models import Campaign
from callplane.core.voice.models import VoiceCall
from callplane.core.voice.schemas import NewCall, RecordingChannels
from callplane.db.base import utcnow
from callplane.errors import CallplaneError
from callplane.live.inbound import DialogPlacer, InboundPlan
from callplane.media.engine import IncomingCall

log = logging.getLogger("callplane.call_tracking")


@dataclass(frozen=True, slots=True)
class TrackingPayload:
    promo_number_id: str
    campaign_id: str
    advertiser_id: str
    called: str
    calling: str  # E.164 when the caller id is a number, else the SIP user
    destination: Destination
    trunk_id: str | None


class CallTrackingPlanner:
    """The voice service's inbound planner: a call to a promo number becomes a tracked call bridged to the
    campaign's destination."""

    async def plan(self, *, session: AsyncSession, event: IncomingCall) -> InboundPlan | None:
        promo = await session.scalar(
            select(PromoNumber).where(PromoNumber.number.in_(number_candidates(event.to_user)))
        )
        if promo is None:
            return None
        campaign = await session.get(Campaign, promo.campaign_id)
        if campaign is None:
            return None
        payload = TrackingPayload(
            promo_number_id=promo.id,
            campaign_id=campaign.id,
            advertiser_id=campaign.organization_id,
            called=promo.number,
            calling=phone_e164(event.from_user) or event.from_user,
            destination=parse_destination(promo.destination),
            trunk_id=promo.trunk_id,
        )
        return InboundPlan(
            account_id=promo.account_id,
            configuration_id=promo.configuration_id,
            record=RecordingChannels.STEREO if promo.record else None,
            payload=payload,
        )

    async def accepted(self, *, session: AsyncSession, call: VoiceCall, plan: InboundPlan) -> None:
        payload = plan.payload
        assert isinstance(payload, TrackingPayload)
        now = utcnow()
        tracked = TrackedCall(
            call_id=call.id,
            account_id=call.account_id,
            transaction_id=new_transaction_id(),
            call_record_id=new_call_record_id(),
            promo_number_id=payload.promo_number_id,
            calling_e164=phone_e164(payload.calling),
            called=payload.called,
            destination=payload.destination.value,
            destination_e164=payload.destination.e164,
            created_at=now,
        )
        session.add(tracked)
        core = await session.get(Call, call.id)
        if core is not None:
            core.campaign_id = payload.campaign_id
            core.organization_id = payload.advertiser_id
            core.from_e164 = core.contact_e164 = tracked.calling_e164
            core.to_e164 = phone_e164(payload.called)
            core.extras = {
                **core.extras,
                "transaction_id": tracked.transaction_id,
                "call_record_id": tracked.call_record_id,
                "promo_number_id": payload.promo_number_id,
            }
        owners = {
            OwnerType.NETWORK: call.account_id,
            OwnerType.ADVERTISER: payload.advertiser_id,
            OwnerType.CAMPAIGN: payload.campaign_id,
            OwnerType.PROMO_NUMBER: payload.promo_number_id,
        }
        for field_id, (name, value, owner_type) in (
            await resolved_custom_data(session, call.account_id, owners)
        ).items():
            session.add(
                CallCustomData(
                    call_id=call.id,
                    account_id=call.account_id,
                    field_id=field_id,
                    name=name,
                    value=value,
                    source=str(owner_type),
                    created_at=now,
                )
            )

    async def connect(self, *, voice: DialogPlacer, call: VoiceCall, plan: InboundPlan) -> None:
        """Transfer the caller to the destination: a dialog whose child answering answers and bridges the caller."""
        payload = plan.payload
        assert isinstance(payload, TrackingPayload)
        try:
            await voice.create_dialog(
                account_id=call.account_id,
                parent_call_id=call.id,
                child=NewCall(
                    configuration_id=plan.configuration_id,
                    endpoint=payload.destination.endpoint(payload.trunk_id),
                    from_user=payload.calling,
                ),
                child_hangup_ends_parent=True,
            )
        except CallplaneError as error:
            log.warning(
                "promo-number call not connected",
                extra={"fields": {"call_id": call.id, "error": type(error).__name__, "detail": error.message}},
            )
            try:
                await voice.hangup(account_id=call.account_id, call_id=call.id)
            except CallplaneError:
                pass  # the caller is already gone
