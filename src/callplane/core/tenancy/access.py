"""Which principals may put calls and signals in: the permission checks of the ingestion APIs, one place for every
surface that ingests (each surface renders the refusal in its own body)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.tenancy.errors import IngestionDisabled, WrongAccountKind
from callplane.core.tenancy.models import AccountKind, Organization, OrganizationKind
from callplane.core.tenancy.schemas import Principal
from callplane.core.tenancy.service import find_organization


def check_network(principal: Principal) -> None:
    """A network account's token (the Signal API); raises WrongAccountKind."""
    if principal.account.kind != AccountKind.NETWORK:
        raise WrongAccountKind()


def check_network_may_ingest(principal: Principal) -> None:
    """A network account with ingestion enabled (single-call ingestion); raises WrongAccountKind or
    IngestionDisabled."""
    check_network(principal)
    if not principal.account.ingestion_enabled:
        raise IngestionDisabled()


def check_partner_may_ingest(principal: Principal, partner_id: str) -> None:
    """A partner account that names itself (`partner_id` is its external id) and has ingestion enabled (batch
    ingestion); raises WrongAccountKind or IngestionDisabled."""
    if principal.account.kind != AccountKind.PARTNER or not partner_id or partner_id != principal.account.external_id:
        raise WrongAccountKind()
    if not principal.account.ingestion_enabled:
        raise IngestionDisabled()


async def partner_sub_tenant(
    *, session: AsyncSession, principal: Principal, tenant_id: str, sub_tenant_id: str
) -> Organization | None:
    """The partner's sub-tenant named by its tenant's and its own external ids, or None when there is none the
    principal may see."""
    tenant = await find_organization(
        session=session,
        account_id=principal.account.id,
        kind=OrganizationKind.TENANT,
        external_id=tenant_id,
        parent_id=None,
    )
    if tenant is None:
        return None
    sub_tenant = await find_organization(
        session=session,
        account_id=principal.account.id,
        kind=OrganizationKind.SUB_TENANT,
        external_id=sub_tenant_id,
        parent_id=tenant.id,
    )
    if sub_tenant is None or not principal.may_see_organization(sub_tenant.id):
        return None
    return sub_tenant
