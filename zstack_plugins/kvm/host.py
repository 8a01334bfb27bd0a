"""KVM hosts: AddKVMHost, UpdateKVMHost, and the agent deploy on every (re)connect.

Invariants:
- AddKVMHost is a flow: insert the host and kvm_host rows (Connecting, with the SSH login),
  check the login (SSH, and root or passwordless sudo), deploy zstack-kvmagent with Ansible
  (mn/deploy.py), then the common connect steps of mn/services/host.py. A failure at any step
  deletes the rows: nothing is left behind (the agent, once installed on the host, stays).
- The agent listens on `kvm/agent.port` at the host's managementIp; its settings (port and
  `kvm/vm.acceleration`) are part of the agent version, so changing them redeploys.
- Before every connect (add, ReconnectHost, the tracker's reconnect) the HOST_BEFORE_CONNECT hook
  asks the agent its version (/host/connect's agentVersion); only when it does not answer with
  the current one is the agent redeployed over SSH.
- The tracker reconnects hosts whose agent answers; a Disconnected KVM host whose agent does not
  is reconnected (so redeployed) every `kvm/reconnect.interval` seconds, claimed by a status CAS.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update

from kvmagent.protocol import ConnectCmd, ConnectRsp, HostFactCmd, HostFactRsp
from mn import extensions
from mn.api.registry import Msg, apis, key_of
from mn.background import periodic
from mn.connection import CONNECTING, DISCONNECTED
from mn.context import ApiContext, Services
from mn.deploy import AGENT_PORT, agent_settings, agent_url, agent_version, deploy_agent, ssh_target
from mn.errors import ApiError, invalid, wrap
from mn.flow import Flow, Step, register_flow
from mn.globalconfig import define
from mn.models import Cluster, Host
from mn.resource_types import HYPERVISORS, HypervisorType
from mn.services import host as hosts
from mn.services.common import add_tags, cas, forget_resource, get_or_404, inventory, new_resource_uuid
from mn.ssh import SshTarget, check_login
from zstack_plugins.kvm.models import KVMHost

log = logging.getLogger(__name__)

KVM = "KVM"
HYPERVISORS.register(HypervisorType(KVM))
RECONNECT_INTERVAL = define("kvm", "reconnect.interval", 300,
                            "seconds between reconnects (with a redeploy) of Disconnected KVM hosts", int,
                            lambda v: v > 0)


# ---- checks -------------------------------------------------------------------------------------

def _check_add(ctx: ApiContext, msg: Msg) -> None:
    msg["resourceUuid"] = new_resource_uuid(msg)
    if not msg.username.strip():
        raise invalid("parameter 'username' of AddKVMHost cannot be empty")
    with ctx.db.ro() as s:
        hosts.check_new_host(s, msg, msg.resourceUuid, KVM)


# ---- flow steps ---------------------------------------------------------------------------------

def _insert(ctx: ApiContext, d: dict, password: str | None) -> None:
    msg = Msg(d["msg"])
    with ctx.db.tx() as s:
        cluster: Cluster = hosts.check_new_host(s, msg, d["hostUuid"], KVM)
        s.add(KVMHost(uuid=d["hostUuid"], name=msg.name, description=msg.get("description"),
                      zoneUuid=cluster.zoneUuid, clusterUuid=cluster.uuid, managementIp=msg.managementIp,
                      hypervisorType=KVM, state="Enabled", status=CONNECTING, agentUrl=d["agentUrl"],
                      username=msg.username, password=ctx.svc.secret_box().seal(password) or None,
                      sshPort=msg.get("sshPort") or 22))
        add_tags(s, d["hostUuid"], "HostVO", msg)


def _delete(ctx: ApiContext, d: dict) -> None:
    with ctx.db.tx() as s:
        h = s.get(Host, d["hostUuid"])
        if h is not None:
            forget_resource(s, h.uuid)
            s.delete(h)  # kvm_host goes with it (ON DELETE CASCADE)


def _target(ctx: ApiContext, host_uuid: str) -> SshTarget:
    with ctx.db.ro() as s:
        h = get_or_404(s, KVMHost, host_uuid)
        return ssh_target(ctx.svc, h, h.managementIp)


def _check_ssh(ctx: ApiContext, d: dict) -> None:
    check_login(_target(ctx, d["hostUuid"]))


def deploy(ctx: ApiContext, host_uuid: str, force: bool = False) -> None:
    """Deploy (or skip, when current) the agent on a KVM host; record its version and URL."""
    settings = agent_settings(ctx.gconf)
    with ctx.db.ro() as s:
        h = get_or_404(s, KVMHost, host_uuid)
        target, url = ssh_target(ctx.svc, h, h.managementIp), agent_url(h.managementIp, settings.port)
    deploy_agent(target, settings, ctx.config.home, ctx.agents.key_for(url), agent_url=url, force=force)
    with ctx.db.tx() as s:
        s.execute(update(Host).where(Host.uuid == host_uuid).values(agentUrl=url))
        s.execute(update(KVMHost).where(KVMHost.uuid == host_uuid).values(agentVersion=agent_version(settings)))


def _deploy(ctx: ApiContext, d: dict) -> None:
    deploy(ctx, d["hostUuid"])


def _os_facts(ctx: ApiContext, d: dict) -> None:
    f: HostFactRsp = ctx.agents.send(d["agentUrl"], HostFactCmd(hostUuid=d["hostUuid"]), HostFactRsp)
    with ctx.db.tx() as s:
        s.execute(update(KVMHost).where(KVMHost.uuid == d["hostUuid"]).values(
            osDistribution=f.osDistribution, osRelease=f.osVersion, osVersion=f.osVersion))


def _connect_steps() -> list[Step]:
    steps = list(hosts.CONNECT_STEPS)
    at = next(i for i, st in enumerate(steps) if st.name == "facts") + 1
    return [*steps[:at], Step("os-facts", _os_facts), *steps[at:]]


@register_flow("add-kvm-host")
def add_kvm_host_flow(password: str | None = None) -> Flow:
    """The password is bound to the insert step, never put in the (journaled) flow data; it is
    stored sealed (mn.secretbox); an empty one means key-based SSH only (nothing stored)."""
    return Flow("add-kvm-host", [
        Step("insert-host", lambda ctx, d: _insert(ctx, d, password), _delete),
        Step("check-ssh", _check_ssh),
        Step("deploy-agent", _deploy),
        *_connect_steps(),
    ])


# ---- the hook: redeploy before connecting when the agent is not current ---------------------------

def ensure_agent(ctx: ApiContext, host_uuid: str) -> None:
    """HOST_BEFORE_CONNECT: a KVM host whose agent does not report the current version is redeployed."""
    with ctx.db.ro() as s:
        h = s.get(KVMHost, host_uuid)
        if h is None:
            return
        url = h.agentUrl
    expected = agent_version(agent_settings(ctx.gconf))
    try:
        rsp: ConnectRsp = ctx.agents.send(url, ConnectCmd(hostUuid=host_uuid), ConnectRsp, timeout=30)
        if rsp.agentVersion == expected:
            return
        log.info("host %s runs agent version %s, not %s: redeploying", host_uuid, rsp.agentVersion, expected)
    except ApiError as exc:
        log.info("the agent of host %s does not answer (%s): redeploying", host_uuid, exc.details)
    deploy(ctx, host_uuid)


extensions.HOST_BEFORE_CONNECT.register(ensure_agent)


@periodic("kvm-host-recover", lambda svc: float(svc.gconf.get(RECONNECT_INTERVAL)))
def recover_disconnected(svc: Services) -> None:
    """Reconnect each Disconnected KVM host this MN can claim; a failure leaves it Disconnected."""
    with svc.db.ro() as s:
        uuids = list(s.scalars(select(Host.uuid).where(Host.hypervisorType == KVM, Host.status == DISCONNECTED)
                               .order_by(Host.uuid)))
    for uuid in uuids:
        with svc.db.tx() as s:
            if not cas(s, Host, uuid, [DISCONNECTED], CONNECTING, field="status"):
                continue
        try:
            hosts.reconnect_host(ApiContext(svc), uuid, claimed=True)
            log.info("Disconnected KVM host %s is reconnected", uuid)
        except Exception as exc:  # noqa: BLE001
            log.warning("reconnecting Disconnected KVM host %s failed: %s", uuid, exc)


# ---- APIs ---------------------------------------------------------------------------------------

@apis.handler("AddKVMHost", check=_check_add, sync_key=lambda msg: f"host-ip-{msg.managementIp}")
def add_kvm_host(ctx: ApiContext, msg: Msg) -> dict:
    uuid = new_resource_uuid(msg)
    port = int(ctx.gconf.get(AGENT_PORT))
    fields = {k: v for k, v in msg.items() if k != "password"}  # the flow data is journaled
    data = {"hostUuid": uuid, "agentUrl": agent_url(msg.managementIp, port), "msg": fields}
    try:
        ctx.run_flow(add_kvm_host_flow(msg.password), data)
    except Exception as exc:  # noqa: BLE001
        err = wrap(exc)
        raise ApiError(err.code, f"unable to add KVM host {msg.name} (managementIp {msg.managementIp}): "
                                 f"{err.details}", cause=err.cause, http_status=err.http_status) from None
    return {"inventory": inventory(ctx, KVMHost, uuid)}


def _check_update(ctx: ApiContext, msg: Msg) -> None:
    with ctx.db.ro() as s:
        if s.get(KVMHost, msg.uuid) is None:
            get_or_404(s, Host, msg.uuid)
            raise invalid(f"host[uuid:{msg.uuid}] is not a KVM host")
    if msg.get("username") is not None and not msg.username.strip():
        raise invalid("parameter 'username' of UpdateKVMHost cannot be empty")


@apis.handler("UpdateKVMHost", check=_check_update, sync_key=key_of("uuid", "host"))
def update_kvm_host(ctx: ApiContext, msg: Msg) -> dict:
    """Name, description, managementIp (unique; the agent URL follows) and the SSH login."""
    with ctx.db.tx() as s:
        h = get_or_404(s, KVMHost, msg.uuid)
        ip = msg.get("managementIp")
        if ip is not None and ip != h.managementIp:
            other = hosts.ip_in_use(s, ip, except_uuid=h.uuid)
            if other is not None:
                raise invalid(f"managementIp {ip} is already used by host[uuid:{other}]")
            h.managementIp = ip
            h.agentUrl = agent_url(ip, int(ctx.gconf.get(AGENT_PORT)))
        for f in ("name", "description", "username", "sshPort"):
            if msg.get(f) is not None:
                setattr(h, f, msg[f])
        if msg.get("password") is not None:  # "": key-based login from now on, no password kept
            h.password = ctx.svc.secret_box().seal(msg.password) or None
    return {"inventory": inventory(ctx, KVMHost, msg.uuid)}
