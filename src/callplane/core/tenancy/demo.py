"""A ready-to-use demo organization for the README quick start."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.tenancy import service as tenancy
from callplane.core.tenancy.models import Account, AccountKind, Campaign, CampaignKind, OrganizationKind
from callplane.core.tenancy.service import find_organization


async def create_demo(*, session: AsyncSession) -> dict[str, Any]:
    """Create (or reuse) the demo network and partner, and issue fresh tokens for both."""
    network = await session.scalar(
        select(Account).where(Account.kind == AccountKind.NETWORK, Account.external_id == "demo-network")
    )
    if network is None:
        network = await tenancy.create_account(
            session=session,
            kind=AccountKind.NETWORK,
            name="Demo Network",
            external_id="demo-network",
            default_language_code="en-US",
            language_codes=["en-US", "en-GB", "es-ES", "fr-FR"],
            time_zone="America/Los_Angeles",
        )
        advertiser = await tenancy.create_organization(
            session=session,
            account_id=network.id,
            kind=OrganizationKind.ADVERTISER,
            external_id="demo-advertiser",
            name="Demo Advertiser",
        )
        await tenancy.create_campaign(
            session=session,
            account_id=network.id,
            organization_id=advertiser.id,
            external_id="86",
            name="Demo External Campaign",
            kind=CampaignKind.EXTERNAL_ONLY,
            transcription_enabled=True,
        )
        await tenancy.create_signal_definition(
            session=session,
            account_id=network.id,
            name="Sale",
            description="A sale happened on the call",
            phrases={"agent": ["your order is confirmed"], "caller": ["i'll take it", "i will buy"]},
        )
        await tenancy.create_custom_data_field(
            session=session, account_id=network.id, api_name="account_type", display_name="Account Type"
        )
    campaign = await session.scalar(select(Campaign).where(Campaign.account_id == network.id))
    assert campaign is not None
    _, network_token = await tenancy.issue_token(session=session, account_id=network.id, name="demo")

    partner = await session.scalar(
        select(Account).where(Account.kind == AccountKind.PARTNER, Account.external_id == "123")
    )
    if partner is None:
        partner = await tenancy.create_account(
            session=session, kind=AccountKind.PARTNER, name="Demo Partner", external_id="123"
        )
        tenant = await tenancy.create_organization(
            session=session, account_id=partner.id, kind=OrganizationKind.TENANT, external_id="tenant1"
        )
        await tenancy.create_organization(
            session=session,
            account_id=partner.id,
            kind=OrganizationKind.SUB_TENANT,
            external_id="subtenant1",
            parent_id=tenant.id,
        )
    partner_tenant = await find_organization(
        session=session,
        account_id=partner.id,
        kind=OrganizationKind.TENANT,
        external_id="tenant1",
        parent_id=None,
    )
    assert partner_tenant is not None
    _, partner_token = await tenancy.issue_token(session=session, account_id=partner.id, name="demo")
    return {
        "invoca": {
            "network_account_id": network.id,
            "oauth_token": network_token,
            "advertiser_campaign_id_from_network": campaign.external_id,
            "signal": "Sale",
            "custom_data_field": "account_type",
        },
        "batch": {
            "partner_account_id": partner.id,
            "token": partner_token,
            "headers": {
                "Authorization": f"Bearer {partner_token}",
                "x-partner-id": "123",
                "x-tenant-id": "tenant1",
                "x-sub-tenant-id": "subtenant1",
            },
        },
        "native": {"token": network_token},
        # The Calls API (/calls/1) takes the same API token as `Authorization: App <key>`.
        "voice": {"api_key": network_token, "headers": {"Authorization": f"App {network_token}"}},
    }
