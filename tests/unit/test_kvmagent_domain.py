"""The domain XML the agent gives libvirt, and what it reads back from a live domain's XML."""

from __future__ import annotations

import pytest

from kvmagent import domain
from kvmagent import protocol as p
from kvmagent.config import AgentConfig
from kvmagent.registry import AgentError
from kvmagent.vm import destination_xml, state_name

VM = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
MiB = 2**20


def config(acceleration: str = "tcg") -> AgentConfig:
    return AgentConfig(acceleration=acceleration, console_log_dir="/var/log/zs-console", state_dir="/tmp/x")


def start_cmd(**kw: object) -> p.StartVmCmd:
    base: dict[str, object] = dict(
        vmInstanceUuid=VM, vmName="web <1>", cpuNum=2, memory=512 * MiB, hostUuid="h1",
        rootVolume=p.VolumeTO(volumeUuid="r" * 32, installPath="/ps/root.qcow2"),
        dataVolumes=[p.VolumeTO(volumeUuid="d" * 32, installPath="/ps/data.qcow2", deviceId=3, format="raw")],
        nics=[p.NicTO(uuid="n2" * 16, mac="FA:16:3E:00:00:02", bridgeName="br_b", deviceId=1),
              p.NicTO(uuid="n1" * 16, mac="fa:16:3e:00:00:01", bridgeName="br_a", deviceId=0)],
        consolePassword="s3cret")
    base.update(kw)
    return p.StartVmCmd(**base)  # type: ignore[arg-type]


def test_domain_xml_from_start_cmd() -> None:
    root = domain.parse(domain.build(start_cmd(), config()))
    assert root.get("type") == "qemu"  # tcg
    assert root.findtext("name") == VM and root.findtext("uuid") == "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    assert root.findtext("title") == "web <1>"
    assert root.findtext("memory") == str(512 * 1024) and root.find("memory").get("unit") == "KiB"
    assert root.findtext("vcpu") == "2" and root.find("cpu") is None
    assert root.findtext("on_poweroff") == "destroy" and root.find("features/acpi") is not None
    assert domain.meta_of(root) == domain.VmMeta(VM, "web <1>", "h1")
    disks = domain.disks_of(root)
    assert disks == [domain.Disk("r" * 32, "/ps/root.qcow2", "vda"), domain.Disk("d" * 32, "/ps/data.qcow2", "vdd")]
    assert [d.find("driver").get("type") for d in root.findall("devices/disk")] == ["qcow2", "raw"]
    assert [d.find("target").get("bus") for d in root.findall("devices/disk")] == ["virtio", "virtio"]
    nics = domain.nics_of(root)  # in deviceId order, MACs as given (read back lower-case)
    assert nics == [domain.Nic("n1" * 16, "fa:16:3e:00:00:01", "br_a"), domain.Nic("n2" * 16, "fa:16:3e:00:00:02", "br_b")]
    log = root.find("devices/serial/log")
    assert log.get("file") == f"/var/log/zs-console/{VM}.log" and log.get("append") == "off"
    g = root.find("devices/graphics")
    assert (g.get("type"), g.get("autoport"), g.get("passwd")) == ("vnc", "yes", "s3cret")
    assert domain.vnc_port(root) is None  # autoport: known once running
    assert domain.memory_bytes(root) == 512 * MiB


def test_kvm_acceleration_passes_the_host_cpu() -> None:
    root = domain.parse(domain.build(start_cmd(consolePassword=None), config("kvm")))
    assert root.get("type") == "kvm" and root.find("cpu").get("mode") == "host-passthrough"
    assert root.find("devices/graphics").get("passwd") is None


def test_a_non_uuid_vm_name_gets_no_libvirt_uuid() -> None:
    root = domain.parse(domain.build(start_cmd(vmInstanceUuid="vm-1"), config()))
    assert root.findtext("name") == "vm-1" and root.find("uuid") is None


def test_memory_is_rounded_up_to_a_kib() -> None:
    root = domain.parse(domain.build(start_cmd(memory=1025), config()))
    assert root.findtext("memory") == "2"


@pytest.mark.parametrize(("kw", "fragment"), [
    ({"cpuNum": 0}, "cpuNum must be a positive integer"),
    ({"memory": -1}, "memory must be a positive integer"),
    ({"cpuNum": True}, "cpuNum"),
    ({"bootDev": "floppy"}, "bootDev"),
    ({"nics": [p.NicTO(uuid="a", mac="fa:16:3e:00:00:01", bridgeName="b"),
               p.NicTO(uuid="b", mac="fa:16:3e:00:00:01", bridgeName="b")]}, "same uuid or MAC"),
    ({"dataVolumes": [p.VolumeTO(volumeUuid="r" * 32, installPath="/ps/x.qcow2")]}, "same volume twice"),
    ({"rootVolume": p.VolumeTO(volumeUuid="r", installPath="relative.qcow2")}, "absolute path"),
    ({"rootVolume": p.VolumeTO(volumeUuid="r", installPath="/a", format="vmdk")}, "format 'vmdk'"),
    ({"rootVolume": p.VolumeTO(volumeUuid="r", installPath="/a", deviceType="ceph")}, "deviceType"),
    ({"nics": [p.NicTO(uuid="a", mac="fa:16:3e:00:00:01", bridgeName="b", driverType="ne2k")]}, "driverType"),
])
def test_bad_start_commands_are_refused_clearly(kw: dict[str, object], fragment: str) -> None:
    with pytest.raises(AgentError) as info:
        domain.build(start_cmd(**kw), config())
    assert fragment in str(info.value)


def test_disk_slots() -> None:
    assert domain.dev_name(0) == "vda" and domain.dev_name(25) == "vdz"
    assert domain.free_dev({"vda"}, 3) == "vdd"
    assert domain.free_dev({"vda", "vdd"}, 3) == "vdb"  # taken: the first free one
    assert domain.free_dev({"vda"}, 0) == "vdb"  # slot 0 is the root volume's
    with pytest.raises(AgentError, match="no free virtio disk slot"):
        domain.free_dev({domain.dev_name(i) for i in range(26)})
    with pytest.raises(AgentError, match="out of range"):
        domain.dev_name(26)


def test_block_volumes_use_a_device_source() -> None:
    e = domain.disk_element(p.VolumeTO(volumeUuid="v", installPath="/dev/vg/lv", deviceType="block"), "vdb")
    assert e.get("type") == "block" and e.find("source").get("dev") == "/dev/vg/lv"
    assert e.find("alias").get("name") == "ua-vol-v" and e.findtext("serial") == "v"


def test_live_xml_is_read_back() -> None:
    live = f"""<domain type='qemu' id='3'><name>{VM}</name>
      <metadata><zs:vm xmlns:zs="{domain.META_NS}" uuid="{VM}" name="n" hostUuid="h9"/></metadata>
      <memory unit='KiB'>262144</memory>
      <devices>
        <disk type='file' device='disk'><source file='/a.qcow2'/><target dev='vda' bus='virtio'/>
          <alias name='ua-vol-abc'/></disk>
        <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><alias name='ide0-1-0'/></disk>
        <interface type='bridge'><mac address='FA:16:3E:AA:BB:CC'/><source bridge='br0'/>
          <alias name='ua-nic-n1'/></interface>
        <graphics type='vnc' port='5907' autoport='yes'/>
      </devices></domain>"""
    root = domain.parse(live)
    assert domain.meta_of(root) == domain.VmMeta(VM, "n", "h9")
    assert domain.disks_of(root) == [domain.Disk("abc", "/a.qcow2", "vda"), domain.Disk(None, None, "hdc")]
    assert domain.nics_of(root) == [domain.Nic("n1", "fa:16:3e:aa:bb:cc", "br0")]
    assert domain.vnc_port(root) == 5907 and domain.memory_bytes(root) == 256 * MiB
    moved = domain.parse(destination_xml(live, "h2"))
    assert domain.meta_of(moved) == domain.VmMeta(VM, "n", "h2")


def test_a_domain_without_our_metadata_is_not_ours() -> None:
    assert domain.meta_of(domain.parse("<domain><name>x</name><metadata/></domain>")) is None
    assert domain.meta_of(domain.parse("<domain><name>x</name></domain>")) is None


def test_libvirt_states_map_to_vm_states() -> None:
    assert [state_name(s) for s in range(8)] == [
        p.VM_UNKNOWN, p.VM_RUNNING, p.VM_RUNNING, p.VM_PAUSED, p.VM_RUNNING, p.VM_STOPPED, p.VM_UNKNOWN, p.VM_PAUSED]
