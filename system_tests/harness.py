"""What the system tier needs running on this machine, started if absent (no systemd needed).

Each function is idempotent and returns once the service answers: libvirt (virtlogd + libvirtd),
sshd on port 22, and a dedicated login (`zstack-test`, with a password and passwordless sudo)
that the tests give to AddKVMHost / AddSftpBackupStorage as a user would give theirs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

TEST_USER = "zstack-test"
TEST_PASSWORD = "zstack-test-password"
LIBVIRT_URI = "qemu:///system"


def _sbin(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")
    if not path:
        raise RuntimeError(f"'{name}' is not installed: run .ci/run (it installs the system tier's packages)")
    return path


def _wait(check, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f}s")


def _virsh_ok() -> bool:
    r = subprocess.run([_sbin("virsh"), "-c", LIBVIRT_URI, "version"], capture_output=True, timeout=30)
    return r.returncode == 0


def ensure_libvirt() -> str:
    """virtlogd and libvirtd running; returns the libvirt URI."""
    if _virsh_ok():
        return LIBVIRT_URI
    if subprocess.run(["pgrep", "-x", "virtlogd"], capture_output=True).returncode != 0:
        subprocess.run([_sbin("virtlogd"), "-d"], check=True, timeout=30)
    if subprocess.run(["pgrep", "-x", "libvirtd"], capture_output=True).returncode != 0:
        subprocess.run([_sbin("libvirtd"), "-d"], check=True, timeout=30)
    _wait(_virsh_ok, "libvirtd")
    return LIBVIRT_URI


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def ensure_sshd(port: int = 22) -> int:
    """sshd listening on `port` (host keys generated if missing); returns the port."""
    if _port_open(port):
        return port
    subprocess.run(["ssh-keygen", "-A"], check=True, capture_output=True, timeout=60)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    subprocess.run([_sbin("sshd"), "-p", str(port), "-o", "PasswordAuthentication=yes"], check=True, timeout=30)
    _wait(lambda: _port_open(port), f"sshd on port {port}")
    return port


def ensure_test_login(user: str = TEST_USER, password: str = TEST_PASSWORD) -> tuple[str, str]:
    """A login with a password and passwordless sudo; returns (user, password)."""
    if subprocess.run(["id", user], capture_output=True).returncode != 0:
        subprocess.run([_sbin("useradd"), "-m", "-s", "/bin/bash", user], check=True, timeout=30)
    subprocess.run([_sbin("chpasswd")], input=f"{user}:{password}\n", text=True, check=True, timeout=30)
    sudoers = Path(f"/etc/sudoers.d/{user}")
    if not sudoers.exists():
        sudoers.write_text(f"{user} ALL=(ALL) NOPASSWD: ALL\n")
        os.chmod(sudoers, 0o440)
    return user, password


# ---- a real agent process, and an SSH key for the test login (added for the agent conformance run) ----

REPO = Path(__file__).resolve().parent.parent
AGENT_PYTHON = "/usr/bin/python3"  # Debian's own, as on a deployed host: stdlib + python3-libvirt


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AgentProcess(NamedTuple):
    url: str
    console_dir: Path  # <vmUuid>.log: each VM's serial console
    pid: int
    log: Path


def agent_plugins() -> str:
    """The plugins an agent from this checkout loads, as a deploy names them (Debian's Python, which
    runs it, sees no entry points)."""
    from mn.deploy import agent_plugins as plugins

    return ",".join(ref for ref, _ in plugins())


@contextlib.contextmanager
def agent_process(workdir: Path, acceleration: str = "tcg") -> Iterator[AgentProcess]:
    """A `zstack-kvmagent` from this checkout on a free loopback port, stopped on exit. State,
    console logs and the agent's log (`agent.log`) live in `workdir` (a restart reuses them)."""
    from integration.agent_keys import write_agent_key

    port = free_port()
    state, console, log_file = workdir / "state", workdir / "console", workdir / "agent.log"
    state.mkdir(parents=True, exist_ok=True)
    key = write_agent_key(f"http://127.0.0.1:{port}", workdir / "agent.key")  # the test run's MN key derives it
    env = {**os.environ, "PYTHONPATH": str(REPO), "ZSTACK_AGENT_CONFIG": str(workdir / "none.properties"),
           "ZSTACK_AGENT_CONSOLE_LOG_DIR": str(console), "ZSTACK_AGENT_PLUGINS": agent_plugins(),
           "ZSTACK_AGENT_KEY_FILE": str(key)}
    with open(log_file, "ab") as out:
        proc = subprocess.Popen([AGENT_PYTHON, "-m", "kvmagent.server", "--host", "127.0.0.1", "--port", str(port),
                                 "--acceleration", acceleration, "--state-dir", str(state)],
                                env=env, stdout=out, stderr=out)
    try:
        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"the agent exited ({proc.returncode}): {log_file.read_text()[-2000:]}")
            return _port_open(port)

        _wait(up, "zstack-kvmagent")
        yield AgentProcess(f"http://127.0.0.1:{port}", console, proc.pid, log_file)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


@contextlib.contextmanager
def authorized_key(user: str, workdir: Path) -> Iterator[str]:
    """A new ed25519 key authorized for `user` while the block runs; yields the private key text.
    Only this key's line is removed afterwards (other keys of the login are left alone)."""
    key = workdir / "id_ed25519"
    comment = f"zstack-test-{os.getpid()}-{time.time_ns()}"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)], check=True,
                   timeout=30)
    home = Path(os.path.expanduser(f"~{user}"))
    ssh_dir, auth = home / ".ssh", home / ".ssh" / "authorized_keys"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    with open(auth, "a") as f:
        f.write(Path(f"{key}.pub").read_text())
    for path in (ssh_dir, auth):
        shutil.chown(path, user, user)
    auth.chmod(0o600)
    try:
        yield key.read_text()
    finally:
        lines = auth.read_text().splitlines(keepends=True)
        auth.write_text("".join(x for x in lines if comment not in x))


class SecondHost(NamedTuple):
    url: str  # its agent
    ip: str  # where its libvirtd listens on TCP (the destination of a migration)
    netns: str  # `ip netns exec <netns> ...` runs commands on it (its links and bridges)


@contextlib.contextmanager
def second_libvirt_host(workdir: Path, acceleration: str = "tcg") -> Iterator[SecondHost]:
    """A second KVM host on this machine, for live migration: a network namespace (a veth pair to it)
    and a mount namespace with its own /run and libvirt directories, running its own virtlogd,
    libvirtd (listening on TCP, no auth, no cgroups) and agent. It sees this machine's files, so
    storage under /var/tmp is shared storage between the two hosts. Everything is killed and removed
    on exit."""
    tag = os.urandom(3).hex()
    netns, here, there = f"zs{tag}", f"zsm{tag}", f"zsm{tag}p"
    subnet = 100 + int(tag[:2], 16) % 100
    ip_here, ip_there = f"10.251.{subnet}.1", f"10.251.{subnet}.2"
    root = workdir / "host2"
    from integration.agent_keys import write_agent_key

    for d in ("lib/qemu", "log/qemu", "cache", "state", "console"):
        (root / d).mkdir(parents=True, exist_ok=True)
    write_agent_key(f"http://{ip_there}:7070", root / "agent.key")
    (root / "libvirtd.conf").write_text(f'listen_tls = 0\nlisten_tcp = 1\nauth_tcp = "none"\nlisten_addr = "{ip_there}"\n')
    (root / "qemu.conf").write_text(Path("/etc/libvirt/qemu.conf").read_text() + "\ncgroup_controllers = [ ]\n")
    (root / "run.sh").write_text(f"""set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/libvirt /run/lock
mount --bind {root}/lib /var/lib/libvirt
mount --bind {root}/log /var/log/libvirt
mount --bind {root}/cache /var/cache/libvirt
mount --bind {root}/qemu.conf /etc/libvirt/qemu.conf
virtlogd -d
libvirtd -d --listen -f {root}/libvirtd.conf
export PYTHONPATH={REPO} ZSTACK_AGENT_CONFIG={root}/none.properties ZSTACK_AGENT_CONSOLE_LOG_DIR={root}/console
export ZSTACK_AGENT_PLUGINS={agent_plugins()} ZSTACK_AGENT_KEY_FILE={root}/agent.key
exec {AGENT_PYTHON} -m kvmagent.server --host {ip_there} --port 7070 --acceleration {acceleration} \\
    --state-dir {root}/state >>{root}/agent.log 2>&1
""")
    ip = _sbin("ip")
    try:
        subprocess.run([ip, "netns", "add", netns], check=True, timeout=30)
        subprocess.run([ip, "link", "add", here, "type", "veth", "peer", "name", there], check=True, timeout=30)
        subprocess.run([ip, "link", "set", there, "netns", netns], check=True, timeout=30)
        subprocess.run([ip, "addr", "add", f"{ip_here}/24", "dev", here], check=True, timeout=30)
        subprocess.run([ip, "link", "set", here, "up"], check=True, timeout=30)
        for cmd in (["addr", "add", f"{ip_there}/24", "dev", there], ["link", "set", there, "up"],
                    ["link", "set", "lo", "up"]):
            subprocess.run([ip, "netns", "exec", netns, ip, *cmd], check=True, timeout=30)
        with open(root / "run.log", "ab") as out:
            subprocess.Popen([ip, "netns", "exec", netns, "unshare", "--mount", "--propagation", "private", "sh",
                              str(root / "run.sh")], stdout=out, stderr=out, start_new_session=True)
        _wait(lambda: _port_open(7070, ip_there) and _port_open(16509, ip_there), "the second libvirt host", 60)
        yield SecondHost(f"http://{ip_there}:7070", ip_there, netns)
    finally:
        pids = subprocess.run([ip, "netns", "pids", netns], capture_output=True, text=True).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), 9)
        subprocess.run([ip, "netns", "del", netns], capture_output=True, timeout=30)
        subprocess.run([ip, "link", "del", here], capture_output=True, timeout=30)


def images_group_of(images: Path, user: str = TEST_USER) -> None:
    """Make `<bs>/images` 0750 in the login's group: images are 0640 in that directory's group
    (the SFTP agent's IMAGE_MODE), so the (non-root) login the hosts fetch with reads them."""
    import pwd

    images.mkdir(mode=0o750, parents=True, exist_ok=True)
    os.chown(images, 0, pwd.getpwnam(user).pw_gid)
