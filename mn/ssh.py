"""SSH from the management node to hosts: the credential check before a deploy, and one-shot commands.

Runs the OpenSSH client (with sshpass for a password, given through the environment, never on a
command line) with host-key checking off, as ZStack does for hosts it is given. Every failure is
an ApiError that names the host, the port and the user, and says what failed: the TCP
connection, the login, or the command.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from mn.errors import OPERATION_ERROR, ApiError

CONNECT_TIMEOUT = 10
# sshpass exit codes: 5 = the password was refused, 6 = the host key is unknown (not with our options).
SSHPASS_BAD_PASSWORD = 5


@dataclass(frozen=True)
class SshTarget:
    host: str
    port: int
    username: str
    password: str | None = field(default=None, repr=False)  # never in a log line
    key_file: Path | None = None    # the MN's private key, tried before the password

    def __str__(self) -> str:
        return f"{self.username}@{self.host}:{self.port}"


def ssh_options(key_file: Path | None = None) -> list[str]:
    opts = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", f"ConnectTimeout={CONNECT_TIMEOUT}", "-o", "NumberOfPasswordPrompts=1"]
    if key_file is not None:
        opts += ["-o", "IdentitiesOnly=yes", "-i", str(key_file)]
    else:
        opts += ["-o", "PubkeyAuthentication=no"]
    return opts


def tcp_reachable(host: str, port: int, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """None if a TCP connection to host:port opens, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def run(target: SshTarget, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `command` on the target; raise on a refused login or an unreachable host (not on rc != 0)."""
    why = tcp_reachable(target.host, target.port)
    if why is not None:
        raise ApiError(OPERATION_ERROR, f"cannot reach SSH on {target.host}:{target.port}: {why}")
    argv = ["ssh", *ssh_options(target.key_file if not target.password else None), "-p", str(target.port),
            f"{target.username}@{target.host}", command]
    env = dict(os.environ)
    if target.password:
        if shutil.which("sshpass") is None:
            raise ApiError(OPERATION_ERROR, "sshpass is not installed on the management node; it is needed "
                                            "to log in to hosts with a password (apt-get install sshpass)")
        argv = ["sshpass", "-e", *argv]
        env["SSHPASS"] = target.password
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ApiError(OPERATION_ERROR, f"SSH to {target} did not finish `{command}` within {timeout:.0f} s") \
            from None
    if target.password and r.returncode == SSHPASS_BAD_PASSWORD:
        raise ApiError(OPERATION_ERROR, f"SSH login to {target} failed: wrong username or password")
    if r.returncode == 255 and "Permission denied" in r.stderr:
        raise ApiError(OPERATION_ERROR, f"SSH login to {target} failed: wrong username or "
                                        f"{'password' if target.password else 'key'} ({r.stderr.strip()})")
    if r.returncode == 255:
        raise ApiError(OPERATION_ERROR, f"SSH login to {target} failed: {r.stderr.strip() or 'ssh exited 255'}")
    return r


def check_login(target: SshTarget, need_root: bool = True) -> None:
    """The target accepts the login and, unless the user is root, has passwordless sudo."""
    r = run(target, "id -u && (test \"$(id -u)\" = 0 || sudo -n true)", timeout=CONNECT_TIMEOUT + 20)
    if r.returncode != 0:
        if need_root:
            raise ApiError(OPERATION_ERROR, f"user {target.username} on {target.host} is neither root nor "
                                            f"allowed passwordless sudo, which deploying the agent needs: "
                                            f"{r.stderr.strip()}")
        raise ApiError(OPERATION_ERROR, f"SSH check on {target} failed: {r.stderr.strip()}")


def mn_key_pair(home: Path) -> tuple[Path, str]:
    """The MN's own SSH key pair (ed25519, made once in `<home>/ssh`): (private key path, public key)."""
    d = Path(home) / "ssh"
    key = d / "id_ed25519"
    with _KEY_LOCK:
        if not key.exists():
            _make_key_pair(d, key)
    return key, key.with_suffix(".pub").read_text().strip()


_KEY_LOCK = threading.Lock()


def _make_key_pair(d: Path, key: Path) -> None:
    """ssh-keygen into a temp name, then both files renamed into place (private key last)."""
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    tmp = d / f"id_ed25519.{os.getpid()}"
    for f in (tmp, tmp.with_suffix(tmp.suffix + ".pub")):
        f.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "zstack-management-node",
                    "-f", str(tmp)], check=True, capture_output=True, timeout=60)
    os.replace(tmp.with_suffix(tmp.suffix + ".pub"), key.with_suffix(".pub"))
    os.replace(tmp, key)
