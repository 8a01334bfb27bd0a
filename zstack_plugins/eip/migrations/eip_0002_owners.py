"""owner records of VIPs and EIPs made before tenancy: the admin account's (core revision 0008)

Revision ID: eip_0002
Revises: eip_0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "eip_0002"
down_revision = "eip_0001"
branch_labels = None
depends_on = None

ADMIN_UUID = "36c27e8ff05c4780bf6d2fa65700f22e"
OWNED_TABLES = {"vip": "VipVO", "eip": "EipVO"}


def upgrade() -> None:
    refs = sa.table("account_resource_ref", *(sa.column(c) for c in (
        "resourceUuid", "accountUuid", "resourceType", "concreteResourceType", "createDate", "lastOpDate")))
    account = sa.table("account", sa.column("uuid"))
    admin_exists = sa.exists(sa.select(sa.literal(1)).select_from(account).where(account.c.uuid == ADMIN_UUID))
    for table, rtype in OWNED_TABLES.items():
        src = sa.table(table, sa.column("uuid"))
        mine = sa.select(refs.c.resourceUuid).where(refs.c.resourceUuid == src.c.uuid)
        rows = sa.select(src.c.uuid, sa.literal(ADMIN_UUID), sa.literal(rtype), sa.literal(rtype),
                         sa.func.now(), sa.func.now()).where(admin_exists, ~sa.exists(mine))
        op.execute(refs.insert().from_select(list(refs.c.keys()), rows))


def downgrade() -> None:
    refs = sa.table("account_resource_ref", sa.column("resourceType"))
    op.execute(refs.delete().where(refs.c.resourceType.in_(list(OWNED_TABLES.values()))))
