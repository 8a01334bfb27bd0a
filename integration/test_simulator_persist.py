"""The simulated world survives a restart of the simulator when it has a state file."""

from __future__ import annotations

from integration.agent_keys import KEY_FILE, signed_client
from kvmagent import protocol as p
from mn.db.base import new_uuid
from simulator.client import SimulatorAdmin
from simulator.server import start_in_thread

GB = 1 << 30


def test_hosts_storages_images_volumes_and_vms_survive_a_restart(tmp_path):
    state_file = tmp_path / "sim.json"
    host, ps, bs, image, vm = (new_uuid() for _ in range(5))
    sim = start_in_thread(state_file=state_file, key_file=KEY_FILE)
    client = signed_client(timeout=10)
    try:
        admin = SimulatorAdmin(sim.url)
        admin.add_host(host, cpu_num=4, memory=8 * GB)
        admin.add_primary_storage(ps, 100 * GB, 100 * GB)
        admin.add_backup_storage(bs, 100 * GB, 100 * GB)
        client.send(sim.host_url(host), p.ConnectCmd(hostUuid=host))
        client.send(sim.host_url(host), p.CreateBridgeCmd(physicalInterfaceName="eth0", bridgeName="br_x",
                                                          l2NetworkUuid=new_uuid(), hostUuid=host))
        img = client.send(sim.backup_storage_url(bs), p.DownloadImageCmd(
            bsUuid=bs, imageUuid=image, url=f"http://x/i.qcow2?size={GB}"), p.DownloadImageRsp)
        vol = client.send(sim.primary_storage_url(ps), p.CreateVolumeFromImageCmd(
            psUuid=ps, volumeUuid=new_uuid(), imageUuid=image, imageInstallPath=img.installPath,
            backupStorageUuid=bs), p.VolumeRsp)
        client.send(sim.host_url(host), p.StartVmCmd(
            vmInstanceUuid=vm, vmName="vm", cpuNum=1, memory=GB, hostUuid=host,
            rootVolume=p.VolumeTO(volumeUuid="v", installPath=vol.installPath),
            nics=[p.NicTO(uuid=new_uuid(), mac="fa:00:00:00:00:01", bridgeName="br_x")]))
        before = (admin.host(host)["vms"], admin.primary_storage(ps), admin.backup_storage(bs))
    finally:
        sim.stop()
    assert state_file.exists()

    sim = start_in_thread(state_file=state_file, key_file=KEY_FILE)
    try:
        admin = SimulatorAdmin(sim.url)
        h = admin.host(host)
        assert h["vms"] == before[0] and h["bridges"] == ["br_x"]
        assert h["connected"] is False  # like a restarted agent: the MN reconnects it
        assert admin.primary_storage(ps) == before[1] and admin.backup_storage(bs) == before[2]
        # The restored indexes work: the running VM still owns its volume, the image is usable.
        assert client.send(sim.host_url(host), p.VmSyncCmd(hostUuid=host), p.VmSyncRsp).states == {vm: "Running"}
        again = client.send(sim.primary_storage_url(ps), p.CreateVolumeFromImageCmd(
            psUuid=ps, volumeUuid=new_uuid(), imageUuid=image, imageInstallPath=img.installPath,
            backupStorageUuid=bs), p.VolumeRsp)
        assert again.installPath != vol.installPath
    finally:
        sim.stop()


def test_an_unreadable_state_file_is_set_aside(tmp_path):
    state_file = tmp_path / "sim.json"
    state_file.write_text("{not json")
    sim = start_in_thread(state_file=state_file, key_file=KEY_FILE)
    try:
        assert SimulatorAdmin(sim.url).stats()["hosts"] == 0
    finally:
        sim.stop()
    assert (tmp_path / "sim.json.bad").read_text() == "{not json"
