"""The Infobip SIP trunk request bodies: `CallsSipTrunkRequest` (STATIC | REGISTERED) and the status change."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from callplane.core.voice import trunks as service
from callplane.core.voice.trunk_models import NumberFormat

MAX_DESTINATION_HOSTS = 10


class SipTrunkRequest(BaseModel):
    """`CallsSipTrunkRequest` (STATIC | REGISTERED) plus callplane's `username`, `password`, `transport`."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["STATIC", "REGISTERED", "PROVIDER"] = "STATIC"
    name: Annotated[str, Field(min_length=1, max_length=128)]
    location: str | None = None
    tls: bool = False
    internationalCallsAllowed: bool = False
    channelLimit: Annotated[int, Field(ge=1, le=service.MAX_CHANNEL_LIMIT)]
    billingPackage: dict[str, Any] | None = None
    codecs: list[Literal["PCMU", "PCMA", "G729"]] | None = None
    dtmf: Literal["RFC2833", "INBAND"] = "RFC2833"
    fax: Literal["NONE", "INBAND", "T38"] = "NONE"
    numberFormat: NumberFormat = NumberFormat.E164
    anonymization: Literal["NONE", "REMOTE_PARTY_ID", "ASSERTED_IDENTITY", "PREFERRED_IDENTITY"] = "NONE"
    sourceHosts: list[str] | None = None
    # each one is resolved and checked against the target policy: a bounded list keeps a request's lookups bounded
    destinationHosts: Annotated[list[str] | None, Field(max_length=MAX_DESTINATION_HOSTS)] = None
    strategy: Literal["FAILOVER", "ROUND_ROBIN"] = "FAILOVER"
    sipOptions: dict[str, Any] | None = None
    inviteAuthentication: bool = False
    # callplane: the credentials we answer the peer's digest challenges (and REGISTER) with
    username: str | None = None
    password: str | None = None
    transport: str = "UDP"


class SipTrunkStatusRequest(BaseModel):
    adminStatus: Literal["ENABLED", "DISABLED"]
