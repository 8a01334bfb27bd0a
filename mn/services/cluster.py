"""Clusters: CreateCluster, UpdateCluster, ChangeClusterState, DeleteCluster (QueryCluster is derived).

A cluster belongs to one zone and fixes the hypervisor type of its hosts. Deleting a zone
deletes its clusters (cascade Zone -> ClusterVO); deleting a cluster first deletes or refuses
on its dependents (hosts, registered by the host module; storage and L2 attachments, registered
by their modules), then removes any attachment rows still left and the cluster itself.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mn.api.registry import Msg, apis, key_of
from mn.cascade import cascade, dependent
from mn.context import ApiContext
from mn.inventory import to_inventory
from mn.models import Cluster, L2NetworkClusterRef, PrimaryStorageClusterRef, Zone
from mn.services.common import (
    add_tags,
    check_exists,
    forget_resource,
    get_or_404,
    new_resource_uuid,
    standard_handlers,
)


def _check_create(ctx: ApiContext, msg: Msg) -> None:
    new_resource_uuid(msg)
    check_exists(ctx, Zone, msg.zoneUuid)


@apis.handler("CreateCluster", check=_check_create)
def create_cluster(ctx: ApiContext, msg: Msg) -> dict:
    uuid = new_resource_uuid(msg)
    with ctx.db.tx() as s:
        get_or_404(s, Zone, msg.zoneUuid)
        c = Cluster(uuid=uuid, name=msg.name, description=msg.get("description"), zoneUuid=msg.zoneUuid,
                    hypervisorType=msg.hypervisorType, type=msg.get("type") or "zstack",
                    architecture=msg.get("architecture"))
        s.add(c)
        add_tags(s, uuid, "ClusterVO", msg)
        s.flush()
        return {"inventory": to_inventory(s, c)}


def _check(ctx: ApiContext, msg: Msg) -> None:
    check_exists(ctx, Cluster, msg.uuid)


standard_handlers(Cluster, "cluster", update_api="UpdateCluster", state_api="ChangeClusterState")


def delete_cluster(ctx: ApiContext, uuid: str, mode: str) -> None:
    """Cascade to the cluster's dependents, then delete it (a missing cluster is already deleted)."""
    cascade(ctx, Cluster, uuid, mode)
    with ctx.db.tx() as s:
        c = s.get(Cluster, uuid)
        if c is None:
            return
        s.execute(delete(PrimaryStorageClusterRef).where(PrimaryStorageClusterRef.clusterUuid == uuid))
        s.execute(delete(L2NetworkClusterRef).where(L2NetworkClusterRef.clusterUuid == uuid))
        forget_resource(s, uuid)
        s.delete(c)


@apis.handler("DeleteCluster", check=_check, sync_key=key_of("uuid", "cluster"))
def api_delete_cluster(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.ro() as s:
        get_or_404(s, Cluster, msg.uuid)
    delete_cluster(ctx, msg.uuid, msg.deleteMode)
    return {}


def _clusters_of_zone(s: Session, zone_uuid: str) -> list[str]:
    return list(s.scalars(select(Cluster.uuid).where(Cluster.zoneUuid == zone_uuid).order_by(Cluster.uuid)))


dependent(Zone, "ClusterVO", _clusters_of_zone, delete_cluster)
