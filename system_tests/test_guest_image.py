"""The tier's guest image (system_tests/image.py): built from Debian packages and cached; booted
with plain QEMU (TCG), it prints its markers, sees a hot-added virtio disk and powers off on the
ACPI power button. (Under libvirt, through the real agent: test_kvm_agent.py and test_kvm_guest.py.)"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from system_tests import image


@pytest.fixture(scope="module")
def guest_image() -> Path:
    return image.build()


def test_image_is_a_cached_qcow2(guest_image: Path, report):
    t0 = time.monotonic()
    again = image.build()
    cached = time.monotonic() - t0
    assert again == guest_image
    info = subprocess.run(["qemu-img", "info", "--output=json", str(guest_image)], capture_output=True,
                          text=True, check=True, timeout=30)
    assert '"format": "qcow2"' in info.stdout and '"backing-filename"' not in info.stdout
    report["guest image"] = f"{guest_image} ({guest_image.stat().st_size // 1024} KiB)"
    assert cached < 5, f"a cached image should come back at once, took {cached:.1f}s"


def test_boots_under_plain_qemu_sees_a_hot_disk_and_powers_off(guest_image: Path, tmp_path: Path, report):
    data = tmp_path / "data.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(data), "16M"], check=True, timeout=30)
    with image.QemuGuest(guest_image) as guest:
        boot = guest.console.wait_boot(timeout=240)
        report["guest boot (plain qemu, tcg)"] = f"{time.monotonic() - guest.started:.1f}s to {image.BOOT_MARKER}"
        guest.console.wait_line(f"{image.DISK_MARKER} vda", boot, timeout=60)
        assert "insmod:" not in guest.console.text(), f"a module failed to load:\n{guest.console.text()[-2000:]}"

        guest.hmp(f"drive_add 0 if=none,id=data,format=qcow2,file={data}")
        guest.hmp("device_add virtio-blk-pci,drive=data,id=data-disk")
        guest.console.wait_line(f"{image.DISK_MARKER} vdb", boot, timeout=60)

        t0 = time.monotonic()
        guest.hmp("system_powerdown")
        guest.console.wait_line(image.POWEROFF_MARKER, boot, timeout=60)
        assert guest.exited(timeout=60), "the guest did not power off after the ACPI power button"
        report["guest ACPI poweroff (plain qemu)"] = f"{time.monotonic() - t0:.1f}s"
