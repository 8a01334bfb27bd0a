"""A tiny bootable guest image for the system tier, built from the Debian packages on this machine.

The disk is an unpartitioned FAT filesystem ("superfloppy", which SeaBIOS boots) made with
`mkfs.vfat`, filled with `mcopy` and made bootable with `syslinux --install` on the file itself (no
loop device, no mount). It holds the host's kernel (`linux-image-amd64`) and an initramfs of
`busybox-static`, the virtio/ACPI-button modules and an `/init` that, on the serial console:

- prints `ZSTACK-GUEST-BOOTED <boot id>` once it runs (kernel `console=ttyS0`), the boot id being
  new at every boot, so a test tells a reboot from an old log whether the log is truncated or not;
- prints `ZSTACK-DISK <name>` for every virtio disk it sees, hot-attached ones included;
- prints `ZSTACK-NET <ip>` if DHCP on eth0 answers (best effort, retried in the background);
- prints `ZSTACK-POWEROFF` and powers off at an ACPI power-button press (graceful stop).

The result is converted to qcow2 with `qemu-img` and cached under `cache_dir()/<key>/`, where the
key hashes every input (kernel, modules, busybox, syslinux, this module's source), so a rebuild
happens only when one changes (and then replaces the older image). Building takes about a second.
CLI: `python -m system_tests.image [--boot]`.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

MARKER_PREFIX = "ZSTACK-"
BOOT_MARKER = "ZSTACK-GUEST-BOOTED"
DISK_MARKER = "ZSTACK-DISK"
NET_MARKER = "ZSTACK-NET"
POWEROFF_MARKER = "ZSTACK-POWEROFF"
IMAGE_NAME = "zstack-test-guest.qcow2"
T = TypeVar("T")
DISK_MIB = 48
SYSLINUX_MODULES = Path("/usr/lib/syslinux/modules/bios")
# Loaded in this order (dependencies first); all are modules in Debian's kernel.
MODULES = (
    "drivers/virtio/virtio_ring",
    "drivers/virtio/virtio",
    "drivers/virtio/virtio_pci_legacy_dev",
    "drivers/virtio/virtio_pci_modern_dev",
    "drivers/virtio/virtio_pci",
    "drivers/block/virtio_blk",
    "net/core/failover",
    "drivers/net/net_failover",
    "drivers/net/virtio_net",
    "drivers/acpi/button",
    "drivers/input/evdev",
)

INIT = f"""#!/bin/sh
# The guest's whole userland: markers on the serial console, disks as they come, poweroff on ACPI.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec >/dev/console 2>&1
for m in $(cat /etc/modules); do insmod "/lib/modules/$m.ko"; done
for ev in /sys/class/input/event*; do
    if [ "$(cat "$ev/device/name" 2>/dev/null)" = "Power Button" ]; then
        dev=/dev/input/${{ev##*/}}
        (head -c 24 "$dev" >/dev/null; echo "{POWEROFF_MARKER}"; sync; poweroff -f) &
        # the button is heard only once the device is open: wait for it before saying we are up
        for _ in $(seq 50); do ls -l /proc/[0-9]*/fd/ 2>/dev/null | grep -q "$dev" && break; sleep 0.1; done
    fi
done
echo "{BOOT_MARKER} $(cat /proc/sys/kernel/random/boot_id)"
(
    ip link set lo up
    while ! [ -e /sys/class/net/eth0 ]; do sleep 1; done
    ip link set eth0 up
    until udhcpc -q -n -t 3 -T 2 -i eth0 -s /bin/dhcp-event >/dev/null 2>&1; do sleep 5; done
) &
seen=" "
while true; do
    for d in /sys/block/vd*; do
        [ -e "$d" ] || continue
        n=${{d##*/}}
        case "$seen" in *" $n "*) ;; *) echo "{DISK_MARKER} $n"; seen="$seen$n ";; esac
    done
    for n in $seen; do
        [ -e "/sys/block/$n" ] || {{ echo "{DISK_MARKER}-GONE $n"; seen=$(echo "$seen" | sed "s/ $n / /"); }}
    done
    sleep 1
done
"""

DHCP_EVENT = f"""#!/bin/sh
# udhcpc's event script: configure eth0 and say which address it got.
case "$1" in
    bound|renew)
        ip addr flush dev "$interface"
        ip addr add "$ip/${{mask:-24}}" dev "$interface"
        [ -n "$router" ] && ip route replace default via "${{router%% *}}" dev "$interface"
        echo "{NET_MARKER} $ip" >/dev/console
        ;;
esac
exit 0
"""

SYSLINUX_CFG = """DEFAULT zstack
PROMPT 0
TIMEOUT 0
LABEL zstack
    KERNEL vmlinuz
    INITRD initrd.gz
    APPEND console=ttyS0,115200 loglevel=4 panic=10
"""


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")
    if not path:
        raise RuntimeError(f"'{name}' is not installed: run .ci/run (it installs the guest image's packages)")
    return path


def _run(*cmd: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {(r.stderr or r.stdout).strip()}")


def kernel() -> Path:
    """The newest installed kernel (`linux-image-amd64` puts it at /boot/vmlinuz-<release>)."""
    found = sorted(Path("/boot").glob("vmlinuz-*"))
    if not found:
        raise RuntimeError("no /boot/vmlinuz-*: install linux-image-amd64 (.ci/run does)")
    return found[-1]


def _module_files(release: str) -> list[tuple[str, Path]]:
    base = Path("/lib/modules") / release / "kernel"
    out = []
    for m in MODULES:
        path = base / f"{m}.ko"
        if not path.exists():
            raise RuntimeError(f"kernel module {path} is missing (linux-image-{release})")
        out.append((Path(m).name, path))
    return out


def _inputs() -> dict[str, bytes | Path]:
    """Every file that goes into the image, by its name in the image (the cache key hashes them)."""
    vmlinuz = kernel()
    release = vmlinuz.name.removeprefix("vmlinuz-")
    files: dict[str, bytes | Path] = {
        "vmlinuz": vmlinuz,
        "busybox": Path(_tool("busybox")).resolve(),
        "syslinux": Path(_tool("syslinux")).resolve(),  # it writes ldlinux.sys into the boot sector
        "ldlinux.c32": SYSLINUX_MODULES / "ldlinux.c32",
        "init": INIT.encode(),
        "dhcp-event": DHCP_EVENT.encode(),
        "syslinux.cfg": SYSLINUX_CFG.encode(),
        "recipe": Path(__file__).read_bytes(),  # this builder: a change to it rebuilds
    }
    for name, path in _module_files(release):
        files[f"modules/{name}"] = path
    return files


def _key(files: dict[str, bytes | Path]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        data = files[name]
        h.update(name.encode() + b"\0")
        h.update(hashlib.sha256(data if isinstance(data, bytes) else data.read_bytes()).digest())
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    """Where built images are kept: $ZSTACK_TEST_IMAGE_CACHE or /var/tmp/zstack-test-images."""
    return Path(os.environ.get("ZSTACK_TEST_IMAGE_CACHE", "/var/tmp/zstack-test-images"))


def _initramfs(files: dict[str, bytes | Path]) -> bytes:
    """A gzip'd newc cpio: /init, busybox with its applet links, the modules, the DHCP script."""
    busybox = files["busybox"]
    assert isinstance(busybox, Path)
    listed = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True, timeout=30)
    applets = listed.stdout.split()
    modules = sorted(n.removeprefix("modules/") for n in files if n.startswith("modules/"))
    order = [Path(m).name for m in MODULES]
    with tempfile.TemporaryDirectory(prefix="zstack-initramfs-") as tmp:
        root = Path(tmp)
        for d in ("bin", "dev", "proc", "sys", "etc", "lib/modules", "tmp", "run"):
            (root / d).mkdir(parents=True)
        shutil.copy(busybox, root / "bin/busybox")
        for a in applets:
            if a != "busybox":
                (root / "bin" / a).symlink_to("busybox")
        for name in modules:
            src = files[f"modules/{name}"]
            assert isinstance(src, Path)
            shutil.copy(src, root / "lib/modules" / f"{name}.ko")
        (root / "etc/modules").write_text("\n".join(order) + "\n")
        for name, dest in (("init", "init"), ("dhcp-event", "bin/dhcp-event")):
            data = files[name]
            assert isinstance(data, bytes)
            (root / dest).write_bytes(data)
            (root / dest).chmod(0o755)
        listing = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
        cpio = _cpio(root, listing)
    return gzip.compress(cpio, compresslevel=6, mtime=0)


def _cpio(root: Path, listing: list[str]) -> bytes:
    r = subprocess.run(
        [_tool("cpio"), "--quiet", "-o", "-H", "newc", "--owner=0:0"],
        input=("\n".join(listing) + "\n").encode(), capture_output=True, cwd=root, timeout=60,
    )
    if r.returncode != 0:
        raise RuntimeError(f"cpio failed: {r.stderr.decode().strip()}")
    return r.stdout


def build(dest_dir: Path | None = None) -> Path:
    """The qcow2 guest image, built if the cache has none for the current inputs; returns its path.

    Safe to call concurrently: the image is built in a temporary directory and renamed into place.
    """
    files = _inputs()
    final = (dest_dir or cache_dir()) / _key(files)
    image = final / IMAGE_NAME
    if image.exists():
        return image
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    try:
        raw = work / "disk.raw"
        _run(_tool("mkfs.vfat"), "-C", "-n", "ZSTACKTEST", str(raw), str(DISK_MIB * 1024))
        (work / "initrd.gz").write_bytes(_initramfs(files))
        (work / "syslinux.cfg").write_text(SYSLINUX_CFG)
        vmlinuz = files["vmlinuz"]
        assert isinstance(vmlinuz, Path)
        contents = {"vmlinuz": vmlinuz, "initrd.gz": work / "initrd.gz", "syslinux.cfg": work / "syslinux.cfg"}
        for name, src in contents.items():
            _mcopy(raw, src, name)
        _run(_tool("syslinux"), "--install", str(raw))
        _run(_tool("qemu-img"), "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(work / IMAGE_NAME))
        (work / IMAGE_NAME).chmod(0o644)
        raw.unlink()
        for name in ("initrd.gz", "syslinux.cfg"):
            (work / name).unlink()
        try:
            work.rename(final)
        except OSError:
            if not image.exists():  # not a concurrent builder that won the race
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    final.chmod(0o755)
    for old in final.parent.iterdir():  # images of older inputs are never used again
        if old != final and (old / IMAGE_NAME).exists():
            shutil.rmtree(old, ignore_errors=True)
    return image


def _mcopy(raw: Path, src: Path, name: str) -> None:
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    r = subprocess.run(
        [_tool("mcopy"), "-o", "-i", str(raw), str(src), f"::{name}"], capture_output=True, text=True,
        env=env, timeout=60,
    )
    if r.returncode != 0:
        raise RuntimeError(f"mcopy {src} into {raw} failed: {r.stderr.strip()}")


class Console:
    """A guest's serial console log file, read for the image's markers.

    Boots are told apart by their boot id, so it works whether the log is truncated at each start
    or appended to; `seen` holds the boot ids already returned by `wait_boot`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: set[str] = set()

    def text(self) -> str:
        try:
            return self.path.read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def _wait(self, found: Callable[[str], T | None], what: str, timeout: float) -> T:
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            result = found(text)
            if result is not None:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {what} on the console ({self.path}) within {timeout:.0f}s; "
                    f"it ends with:\n{text[-2500:]}"
                )
            time.sleep(0.5)

    @staticmethod
    def _lines(text: str, after_boot: str | None = None) -> list[str]:
        """The console's lines, each from its marker on (firmware may leave escapes before one)."""
        lines = [ln[ln.find(MARKER_PREFIX):].strip() if MARKER_PREFIX in ln else ln.strip()
                 for ln in text.splitlines()]
        if after_boot is not None:
            start = f"{BOOT_MARKER} {after_boot}"
            lines = lines[lines.index(start) + 1:] if start in lines else []
        return lines

    def wait_boot(self, timeout: float = 180) -> str:
        """Wait for a boot not seen before; returns its boot id."""

        def new_boot(text: str) -> str | None:
            for ln in self._lines(text):
                parts = ln.split()
                if len(parts) == 2 and parts[0] == BOOT_MARKER and parts[1] not in self.seen:
                    return parts[1]
            return None

        boot = self._wait(new_boot, f"new '{BOOT_MARKER}'", timeout)
        self.seen.add(boot)
        return boot

    def wait_line(self, line: str, boot: str, timeout: float = 60) -> None:
        """Wait for `line` printed during boot `boot`."""
        self._wait(lambda text: True if line in self._lines(text, boot) else None, f"'{line}'", timeout)

    def has_line(self, line: str, boot: str) -> bool:
        return line in self._lines(self.text(), boot)


class QemuGuest:
    """The image booted with plain QEMU (TCG, never KVM) on a throwaway overlay, its serial console
    in a file (`console`) and QEMU's human monitor on a unix socket (`hmp`). A context manager: the
    VM is killed and its files removed on exit."""

    def __init__(self, image: Path, memory_mib: int = 256) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="zstack-qemu-guest-"))
        self.console = Console(self.dir / "console.log")
        self.monitor = self.dir / "monitor.sock"
        overlay = self.dir / "root.qcow2"
        _run(_tool("qemu-img"), "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image), str(overlay))
        self.proc = subprocess.Popen(
            [_tool("qemu-system-x86_64"), "-accel", "tcg", "-m", str(memory_mib), "-display", "none",
             "-nodefaults", "-no-reboot", "-serial", f"file:{self.console.path}",
             "-monitor", f"unix:{self.monitor},server=on,wait=off",
             "-drive", f"file={overlay},if=virtio,format=qcow2"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.started = time.monotonic()

    def __enter__(self) -> QemuGuest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def hmp(self, command: str, timeout: float = 30) -> str:
        """Run one monitor command; returns what the monitor printed."""
        deadline = time.monotonic() + timeout
        while not self.monitor.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                said = self.proc.stdout.read().decode() if self.proc.poll() is not None and self.proc.stdout else ""
                raise RuntimeError(f"QEMU's monitor {self.monitor} did not appear: {said}")
            time.sleep(0.1)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.monitor))
            out = b""
            while not out.endswith(b"(qemu) "):
                out += sock.recv(4096)
            sock.sendall(command.encode() + b"\n")
            out = b""
            while not out.endswith(b"(qemu) "):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                out += chunk
        return out.decode(errors="replace")

    def exited(self, timeout: float) -> bool:
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m system_tests.image", description=__doc__.splitlines()[0])
    p.add_argument("--boot", action="store_true", help="also boot it under plain QEMU (TCG) to the marker")
    p.add_argument("--cache-dir", type=Path, help=f"instead of {cache_dir()}")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    image = build(args.cache_dir)
    print(f"{image} ({image.stat().st_size // 1024} KiB, {time.monotonic() - t0:.1f}s)")
    if args.boot:
        with QemuGuest(image) as guest:
            guest.console.wait_boot(timeout=300)
            print(f"booted under QEMU/TCG: '{BOOT_MARKER}' after {time.monotonic() - guest.started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
