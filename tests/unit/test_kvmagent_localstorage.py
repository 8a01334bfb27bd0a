"""Pure helpers of the local storage agent (zstack_plugins.local_storage.agent), kvmagent.storage and kvmagent.shell (paths, parsing, the remembered storage
directories), and the simulator's side of the volume snapshot command."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kvmagent import protocol as p
from kvmagent.registry import AgentError
from kvmagent.shell import inside, run
from kvmagent.storage import (
    BACKUP,
    PRIMARY,
    check_uuid,
    known_url,
    parse_image_info,
    partial,
    prepare_dir,
    remember,
    storage_dir,
)
from simulator.dispatch import PRIMARY as SIM_PRIMARY
from simulator.dispatch import run_command
from simulator.state import SimState
from zstack_plugins.local_storage.agent import cache_path, snapshot_path, volume_dir, volume_path
from zstack_plugins.sftp.agent import SFTP, ssh_address

GiB = 2**30

# `qemu-img info --output=json` of a qcow2 overlay (qemu-img 7.2, trimmed).
OVERLAY_INFO = """{
    "backing-filename-format": "qcow2", "virtual-size": 1073741824, "filename": "/tmp/o.qcow2",
    "cluster-size": 65536, "format": "qcow2", "actual-size": 200704,
    "format-specific": {"type": "qcow2", "data": {"compat": "1.1", "corrupt": false}},
    "full-backing-filename": "/tmp/b.qcow2", "backing-filename": "/tmp/b.qcow2", "dirty-flag": false
}"""
RAW_INFO = '{"virtual-size": 67108864, "filename": "x.raw", "format": "raw", "actual-size": 4096, "dirty-flag": false}'


def test_layout() -> None:
    assert volume_path("/ps", "v1", root=True) == Path("/ps/rootVolumes/vol-v1/v1.qcow2")
    assert volume_path("/ps", "v1", root=False) == Path("/ps/dataVolumes/vol-v1/v1.qcow2")
    assert snapshot_path("/ps/rootVolumes/vol-v1/v1.qcow2", "s1") == Path("/ps/rootVolumes/vol-v1/snapshots/s1.qcow2")
    assert cache_path("/ps", "i1", "raw") == Path("/ps/imagecache/i1.raw")


def test_parse_image_info() -> None:
    info = parse_image_info(OVERLAY_INFO)
    assert (info.format, info.virtual_size, info.actual_size, info.backing) == ("qcow2", GiB, 200704, "/tmp/b.qcow2")
    raw = parse_image_info(RAW_INFO)
    assert (raw.format, raw.virtual_size, raw.backing) == ("raw", 64 * 2**20, None)


@pytest.mark.parametrize("value", ["0a1b2c3d", "6f1e2d3c-aaaa-bbbb-cccc-0123456789ab"])
def test_uuids_safe_as_file_names(value: str) -> None:
    assert check_uuid(value, "volumeUuid") == value


@pytest.mark.parametrize("value", ["", "../x", "a/b", ".hidden", "-rf", "a b", None, 7, "x" * 65])
def test_unsafe_uuids_refused(value: object) -> None:
    with pytest.raises(AgentError, match="invalid volumeUuid"):
        check_uuid(value, "volumeUuid")


def test_ssh_address() -> None:
    assert ssh_address("u", "10.0.0.2") == "u@10.0.0.2"
    assert ssh_address("u", "fd00::2") == "u@fd00::2"  # ssh takes IPv6 unbracketed


def test_volume_dir_accepts_volumes_of_this_storage_only(tmp_path: Path) -> None:
    vol = volume_path(tmp_path, "v1", root=False)
    assert volume_dir(tmp_path, vol) == vol.parent.resolve()
    assert volume_dir(tmp_path, vol.with_suffix(".raw")) == vol.parent.resolve()
    for bad in (cache_path(tmp_path, "i1", "qcow2"), snapshot_path(vol, "s1"), vol.with_name("v2.qcow2"),
                tmp_path / "dataVolumes" / "x.qcow2"):
        with pytest.raises(AgentError, match="not a volume"):
            volume_dir(tmp_path, bad)
    for outside in ("/etc/passwd", f"{tmp_path}/../x/dataVolumes/vol-v1/v1.qcow2", str(tmp_path)):
        with pytest.raises(AgentError, match="not inside"):
            volume_dir(tmp_path, outside)


def test_inside_resolves_dot_dots(tmp_path: Path) -> None:
    assert inside(tmp_path, tmp_path / "a" / ".." / "b", "x") == (tmp_path / "b").resolve()
    with pytest.raises(AgentError, match="not inside"):
        inside(tmp_path / "a", tmp_path / "a" / ".." / "b", "x")


def test_storage_directories_are_remembered(tmp_path: Path) -> None:
    agent: Any = SimpleNamespace(config=SimpleNamespace(state_path=tmp_path / "state"))
    with pytest.raises(AgentError, match="primary storage ps1 is not initialized.*InitPrimaryStorageCmd"):
        storage_dir(agent, PRIMARY, "ps1")
    remember(agent, PRIMARY, "ps1", "/data/ps1")
    remember(agent, BACKUP, "bs1", "/data/bs1")
    assert storage_dir(agent, PRIMARY, "ps1") == Path("/data/ps1")
    assert storage_dir(agent, PRIMARY, "ps1", "/other") == Path("/other")  # a command's url wins
    assert known_url(agent, BACKUP, "bs1") == "/data/bs1" and known_url(agent, BACKUP, "ps1") is None
    with pytest.raises(AgentError, match="backup storage bs2 is not initialized.*ConnectBackupStorageCmd"):
        storage_dir(agent, BACKUP, "bs2")


def test_prepare_dir(tmp_path: Path) -> None:
    root = prepare_dir(str(tmp_path / "ps"), "ps", ("a", "b"))
    assert sorted(x.name for x in root.iterdir()) == ["a", "b"]
    with pytest.raises(AgentError, match="absolute"):
        prepare_dir("relative/dir", "ps", ())
    (tmp_path / "file").write_text("x")
    with pytest.raises(AgentError, match="cannot create"):
        prepare_dir(str(tmp_path / "file" / "sub"), "ps", ())


def test_partial_never_leaves_a_half_written_file(tmp_path: Path) -> None:
    final = tmp_path / "img.qcow2"
    with pytest.raises(RuntimeError), partial(final) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("fetch died")
    assert list(tmp_path.iterdir()) == []
    with partial(final) as tmp:
        tmp.write_bytes(b"whole")
        tmp.rename(final)
    assert [x.name for x in tmp_path.iterdir()] == ["img.qcow2"]


def test_run_reports_the_tool_output() -> None:
    assert run(["echo", "hi"], "saying hi") == "hi\n"
    with pytest.raises(AgentError, match=r"listing: `ls /no/such` failed \(exit 2\): .*No such file"):
        run(["ls", "/no/such"], "listing")
    with pytest.raises(AgentError, match="not-a-tool is not installed"):
        run(["not-a-tool"], "x")


# ---- the simulator implements the snapshot command with the same contract --------------------------

def sim(state: SimState, cmd: Any) -> dict[str, Any]:
    return run_command(state, SIM_PRIMARY, "ps1", cmd.PATH, p.to_wire(cmd))


def test_simulator_snapshot() -> None:
    state = SimState()
    state.put_primary_storage("ps1", total=100 * GiB)
    vol = sim(state, p.CreateEmptyVolumeCmd(psUuid="ps1", volumeUuid="v1", size=GiB))["installPath"]
    snap = p.CreateVolumeSnapshotCmd(psUuid="ps1", volumeUuid="v1", installPath=vol, snapshotUuid="s1")
    r = sim(state, snap)
    assert r["success"] and r["volumeInstallPath"] == vol and r["size"] == GiB
    assert r["installPath"] == "/sim/ps/ps1/snapshots/v1/s1.qcow2"
    assert "already exists" in sim(state, snap)["error"]
    missing = p.CreateVolumeSnapshotCmd(psUuid="ps1", volumeUuid="v2", installPath="/sim/ps/ps1/v2.qcow2",
                                        snapshotUuid="s2")
    assert "not found" in sim(state, missing)["error"]
    state.claim_volumes("vm1", [vol])
    busy = p.CreateVolumeSnapshotCmd(psUuid="ps1", volumeUuid="v1", installPath=vol, snapshotUuid="s3")
    assert "in use by VM vm1" in sim(state, busy)["error"]
    state.release_volumes("vm1", [vol])
    assert sim(state, p.DeleteVolumeCmd(psUuid="ps1", installPath=vol))["success"]
    assert state.primary_storage("ps1").volumes == {}  # its snapshots went with it
    assert state.primary_storage("ps1").available == 100 * GiB


def test_simulator_accepts_the_sftp_fields() -> None:
    state = SimState()
    state.put_primary_storage("ps1", total=100 * GiB)
    cmd = p.CreateVolumeFromImageCmd(psUuid="ps1", volumeUuid="v1", imageUuid="i1", imageInstallPath="/nowhere",
                                     backupStorageUuid="bs1", backupStorageType=SFTP,
                                     backupStorageHostname="10.0.0.9", backupStorageUsername="root", sshKey="KEY")
    state.put_backup_storage("bs1", total=GiB)
    assert "not found" in sim(state, cmd)["error"]  # validated, then judged like any other image
