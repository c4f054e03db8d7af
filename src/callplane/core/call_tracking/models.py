"""Promo numbers, the marketing data set on the tenancy tree, and the tracking identity of live calls."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from callplane.db.base import Base, new_id, utcnow


class DestinationType(StrEnum):
    SIP = "SIP"  # a SIP URI: sip:user@host[:port]
    PHONE = "PHONE"  # an E.164 number dialled through one of the account's SIP trunks


class OwnerType(StrEnum):
    """Where a custom data value is set; a more specific owner wins (promo number > campaign > ...)."""

    NETWORK = "network"
    ADVERTISER = "advertiser"
    CAMPAIGN = "campaign"
    PROMO_NUMBER = "promo_number"


class PromoNumber(Base):
    """A number (or SIP user) a campaign advertises; calls to it are connected to the campaign's destination."""

    __tablename__ = "promo_numbers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    # The called user of the INVITE's Request-URI: E.164 for numbers; one owner across accounts.
    number: Mapped[str] = mapped_column(String(64), unique=True)
    external_id: Mapped[str | None] = mapped_column(String(255))  # promo_number_id (the network's own id)
    description: Mapped[str] = mapped_column(Text, default="")
    media_type: Mapped[str | None] = mapped_column(String(64))
    destination_type: Mapped[str] = mapped_column(String(8))
    destination: Mapped[str] = mapped_column(String(255))  # sip:user@host[:port] or +E164
    trunk_id: Mapped[str | None] = mapped_column(String(36))  # PHONE destinations
    # The voice configuration whose subscriptions get the legs' events and whose postCallProcessing applies.
    configuration_id: Mapped[str] = mapped_column(String(128))
    record: Mapped[bool] = mapped_column(default=True)  # STEREO recording of the bridged call
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CustomDataValue(Base):
    """A marketing data field's value set on a network (the account), advertiser, campaign or promo number."""

    __tablename__ = "custom_data_values"
    __table_args__ = (UniqueConstraint("owner_type", "owner_id", "field_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    owner_type: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[str] = mapped_column(String(36))
    field_id: Mapped[str] = mapped_column(ForeignKey("custom_data_fields.id", ondelete="CASCADE"))
    value: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrackedCall(Base):
    """The calls-in-progress identity of a live call: a promo-number call gets it when it is routed, any other
    live call when the API first annotates it (external_unique_id). Liveness is the voice call's state."""

    __tablename__ = "tracked_calls"
    __table_args__ = (
        Index("ix_tracked_calls_phones", "account_id", "calling_e164", "destination_e164"),
        Index("ix_tracked_calls_external_unique", "account_id", "external_unique_id"),
    )

    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    transaction_id: Mapped[str] = mapped_column(String(64), unique=True)
    call_record_id: Mapped[str] = mapped_column(String(64))
    external_unique_id: Mapped[str | None] = mapped_column(String(255))
    promo_number_id: Mapped[str | None] = mapped_column(String(36))
    calling_e164: Mapped[str | None] = mapped_column(String(20))
    called: Mapped[str | None] = mapped_column(String(64))  # the promo number dialled
    destination: Mapped[str | None] = mapped_column(String(255))
    destination_e164: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
