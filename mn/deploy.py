"""Deploy zstack-kvmagent on a host with Ansible: installer/kvmhost.yml and its role `kvmhost`.

The MN runs `ansible-playbook` from its own virtualenv. For each deploy it writes, in a private
temp directory, an inventory of the one host, the extra vars (the password among them, in a 0600
file, never on a command line) and a tar.gz of the `kvmagent` package this MN runs. Invariants:
- The agent's version is a hash of its code, of the role and of the settings passed to the role,
  so a change of any redeploys and restarts the agent, and the same version is a no-op: the MN
  first reads the installed VERSION over SSH and skips Ansible when it matches and the agent
  answers (a KVM host's connect asks the agent itself, without SSH: mn/services/kvm_host.py).
- A failed playbook becomes one ApiError naming the task that failed and the task's own message.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from kvmagent.auth import key_id
from mn.context import Services
from mn.errors import OPERATION_ERROR, TIMEOUT, ApiError
from mn.globalconfig import GlobalConfigStore, define
from mn.ssh import SshTarget, mn_key_pair
from mn.ssh import run as ssh_run
from zstack_plugins import Plugin

log = logging.getLogger(__name__)

PLAYBOOK = "kvmhost.yml"
INSTALLER_ENV = "ZSTACK_INSTALLER_DIR"
INSTALL_DIR = "/opt/zstack/kvmagent"
DEPLOY_TIMEOUT = 1800.0   # a first deploy installs QEMU and libvirt
_TASK = re.compile(r"^TASK \[(?:[\w.-]+ : )?(?P<name>.*)\] \**$")
# "fatal: [h]: FAILED! => {...}", "fatal: [h]: UNREACHABLE! => {...}", "failed: [h] (item=x) => {...}"
_FAILED = re.compile(r"^(?:fatal|failed): \[[^\]]+\](?: \(item=(?P<item>.*?)\))?:? ?"
                     r"(?:(?P<kind>FAILED|UNREACHABLE)! )?=> (?P<json>\{.*\})\s*$")
_RECAP = re.compile(r"^\S+\s*: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


@dataclass(frozen=True)
class AgentSettings:
    """What the role configures on the host; part of the agent version."""

    port: int = 7070
    acceleration: str = "auto"   # kvm, tcg, or auto (kvm when the host has /dev/kvm)
    libvirt: bool = True         # False on an SFTP backup-storage host
    plugins: str = ""            # the agent's plugins: comma-separated `module:attribute` references
    listen: str = ""             # the address the agent listens on; "": the host's management address

    def as_vars(self) -> dict[str, object]:
        return {"kvmhost_port": self.port, "kvmhost_acceleration": self.acceleration,
                "kvmhost_libvirt": self.libvirt, "kvmhost_install_dir": INSTALL_DIR,
                "kvmhost_plugins": self.plugins, "kvmhost_listen_override": self.listen}


# The agent's settings on every machine it is deployed to (KVM hosts, SFTP backup-storage hosts);
# in category "kvm", as ZStack names them.
AGENT_PORT = define("kvm", "agent.port", 7070, "the TCP port zstack-kvmagent listens on (KVM and SFTP hosts)",
                    int, lambda v: 0 < v < 65536)
ACCELERATION = define("kvm", "vm.acceleration", "auto",
                      "guest acceleration: kvm, tcg (emulation), or auto (kvm where /dev/kvm exists)",
                      valid_values=("auto", "kvm", "tcg"))
LISTEN_ADDRESS = define("kvm", "agent.listenAddress", "",
                        "the address zstack-kvmagent listens on; empty: the host's management address "
                        "(0.0.0.0 listens on every address)", str)


def agent_settings(gconf: GlobalConfigStore, libvirt: bool = True) -> AgentSettings:
    """The settings a deploy gives the agent now (global configs kvm/agent.port, kvm/vm.acceleration)."""
    return AgentSettings(port=int(gconf.get(AGENT_PORT)), acceleration=str(gconf.get(ACCELERATION)),
                         libvirt=libvirt, plugins=",".join(ref for ref, _ in agent_plugins()),
                         listen=str(gconf.get(LISTEN_ADDRESS) or ""))


def agent_url(ip: str, port: int) -> str:
    """Where the MN reaches an agent deployed on `ip`."""
    return f"http://{ip}:{port}"


def ssh_target(svc: Services, row: object, host: str) -> SshTarget:
    """The SSH login of a row holding sshPort, username and a sealed password (a KVM host, an SFTP
    storage): the password opened (mn.secretbox); without one, key-based login with the MN's key,
    which the operator authorized on the target beforehand."""
    password = svc.secret_box().open(getattr(row, "password", None)) or None
    key_file = None if password else mn_key_pair(svc.config.home)[0]
    return SshTarget(host, int(getattr(row, "sshPort", None) or 22), getattr(row, "username"),  # noqa: B009
                     password, key_file)


@dataclass
class DeployResult:
    skipped: bool          # the agent was current: Ansible did not run
    changed: int           # tasks that changed something
    seconds: float
    output: str = ""


def installer_dir() -> Path:
    """Where kvmhost.yml is: $ZSTACK_INSTALLER_DIR, the source tree, or <venv>/share/zstack/installer."""
    import mn

    env = os.environ.get(INSTALLER_ENV)
    candidates = [Path(env)] if env else []
    candidates += [Path(mn.__file__).resolve().parents[1] / "installer",
                   Path(sys.prefix) / "share" / "zstack" / "installer"]
    for c in candidates:
        if (c / PLAYBOOK).is_file():
            return c
    raise ApiError(OPERATION_ERROR, f"cannot find the Ansible installer ({PLAYBOOK}) in "
                                    f"{[str(c) for c in candidates]}; set {INSTALLER_ENV}")


def ansible_playbook() -> str:
    """ansible-playbook of this MN's virtualenv (else the one on PATH); ApiError naming the
    `installer` extra when there is none (ansible-core is not a dependency of the MN itself)."""
    own = Path(sys.executable).parent / "ansible-playbook"
    found = str(own) if own.exists() else shutil.which("ansible-playbook")
    if not found:
        raise ApiError(OPERATION_ERROR, f"ansible-playbook is not installed in the management node's "
                                        f"virtualenv ({Path(sys.executable).parent.parent}): deploying an "
                                        f"agent needs Ansible, in the zstack[installer] extra: pip install "
                                        f"'zstack[installer]' into it (install.sh installs it)")
    return found


def agent_source() -> Path:
    """The `kvmagent` package this MN runs: the core of what is deployed to hosts."""
    import kvmagent

    return Path(kvmagent.__file__).resolve().parent


def _code_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo"))


def _module_files(module: str, whole: bool = True) -> list[tuple[str, Path]]:
    """(archive path, file) of a module (a package: all its files, or with `whole` False only its
    __init__.py) and of its parent packages' __init__.py."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ApiError(OPERATION_ERROR, f"the agent module {module} of a plugin is not installed")
    origin = Path(spec.origin).resolve()
    parts = module.split(".")
    if spec.submodule_search_locations:  # a package: every file of it
        root = origin.parent
        out = [("/".join(parts) + "/" + str(f.relative_to(root)), f) for f in (_code_files(root) if whole else [origin])]
        parents = parts[:-1]
        top = root.parent
    else:
        out = [("/".join(parts[:-1] + [origin.name]), origin)]
        parents = parts[:-1]
        top = origin.parent
    for i in range(len(parents), 0, -1):  # zstack_plugins/eip/__init__.py, zstack_plugins/__init__.py
        init = top / "__init__.py"
        if init.is_file():
            out.append(("/".join(parents[:i]) + "/__init__.py", init))
        top = top.parent
    return out


def agent_plugins() -> list[tuple[str, Plugin]]:
    """(entry-point reference, plugin) of the enabled plugins that run on hosts (protocol or kvmagent)."""
    from mn import plugins

    refs = plugins.references()
    return [(refs[p.name], p) for p in plugins.enabled() if p.modules("kvmagent")]


def agent_files() -> list[tuple[str, Path]]:
    """(path in the archive, file) of what runs on a host, sorted: the kvmagent package (no caches)
    and, of every enabled plugin that runs on hosts, its protocol and kvmagent modules with their
    packages' __init__.py files (where its Plugin object is)."""
    src = agent_source()
    files = {f"kvmagent/{f.relative_to(src)}": f for f in _code_files(src)}
    for ref, plugin in agent_plugins():
        files.update(_module_files(ref.partition(":")[0], whole=False))  # where the Plugin is
        for module in plugin.modules("kvmagent"):
            files.update(_module_files(module))
    return sorted(files.items())


@functools.lru_cache(maxsize=1)
def agent_snapshot() -> tuple[str, bytes]:
    """(sha256 of the files' archive paths and contents, their tar.gz), taken once per process: what
    this MN deploys is the agent it started with, even if the files change under it."""
    h = hashlib.sha256()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, path in agent_files():
            data = path.read_bytes()
            h.update(name.encode() + b"\0" + data + b"\0")
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return h.hexdigest(), buf.getvalue()


@functools.lru_cache(maxsize=1)
def role_digest() -> str:
    """sha256 of the playbook and the kvmhost role (a changed role redeploys), once per process."""
    installer = installer_dir()
    h = hashlib.sha256()
    for f in [installer / PLAYBOOK, *sorted(p for p in (installer / "roles" / "kvmhost").rglob("*") if p.is_file())]:
        h.update(str(f.relative_to(installer)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def agent_version(settings: AgentSettings) -> str:
    """sha256 of the agent's code (agent_snapshot), of the role that installs it and of the agent's
    settings (the same for a KVM host and an SFTP backup-storage host, so one machine can be both
    without redeploys)."""
    h = hashlib.sha256(agent_snapshot()[0].encode() + role_digest().encode())
    agent_side = {k: v for k, v in settings.as_vars().items() if k != "kvmhost_libvirt"}  # not the agent's
    h.update(json.dumps(agent_side, sort_keys=True).encode())
    return h.hexdigest()


def write_archive(dest: Path) -> Path:
    """The snapshot's tar.gz (what the role unpacks into INSTALL_DIR: `kvmagent/...` and the plugins')."""
    dest.write_bytes(agent_snapshot()[1])
    return dest


def archive_packages() -> list[str]:
    """The top-level packages in the archive (the role replaces each of them)."""
    return sorted({name.split("/", 1)[0] for name, _ in agent_files()})


def inventory(target: SshTarget) -> dict:
    """The one-host inventory (YAML's JSON subset); credentials other than the key file are vars."""
    host: dict[str, object] = {"ansible_host": target.host, "ansible_port": target.port,
                               "ansible_user": target.username,
                               "ansible_python_interpreter": "/usr/bin/python3"}
    if target.key_file is not None:
        host["ansible_ssh_private_key_file"] = str(target.key_file)
    return {"all": {"hosts": {"target": host}}}


def extra_vars(target: SshTarget, settings: AgentSettings, version: str, archive: Path,
               public_key: str, agent_key: bytes) -> dict[str, object]:
    """The role's variables; the agent's key among them (so they go in a 0600 file, never argv)."""
    out: dict[str, object] = {**settings.as_vars(), "kvmhost_agent_version": version,
                              "kvmhost_agent_packages": archive_packages(),
                              "kvmhost_agent_archive": str(archive), "kvmhost_mn_public_key": public_key,
                              "kvmhost_become": target.username != "root",
                              "kvmhost_listen_address": settings.listen or target.host,
                              "kvmhost_agent_key": agent_key.hex(), "kvmhost_agent_key_id": key_id(agent_key)}
    if target.password:
        out["ansible_password"] = target.password
    return out


def ansible_env(home: Path, installer: Path, tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "ANSIBLE_HOME": str(Path(home) / "ansible"),
        "ANSIBLE_LOCAL_TEMP": str(tmp / "local"),
        "ANSIBLE_ROLES_PATH": str(installer / "roles"),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_SSH_ARGS": "-C -o ControlMaster=auto -o ControlPersist=15s "
                            "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
        "ANSIBLE_TIMEOUT": "20",
    })
    return env


def _message(result: dict) -> str:
    """The useful part of a failed task's result."""
    msg = str(result.get("msg") or "").strip()
    extra = [str(result.get(k) or "").strip() for k in ("stderr", "module_stderr")]
    extra = [e for e in extra if e and e not in msg]
    if msg.startswith(("non-zero return code", "MODULE FAILURE")) or not msg:
        msg = "; ".join([msg, *extra]) if msg else "; ".join(extra)
    return msg or json.dumps(result)[:500]


def parse_failure(output: str) -> tuple[str | None, str | None]:
    """(task, message) of the last failure in ansible-playbook's default output, or (None, None).

    A failure inside a block with a rescue is superseded by the rescue's own failure, which comes
    later; a failure followed by `...ignoring` is not one.
    """
    task: str | None = None
    found: tuple[str | None, str | None] = (None, None)
    lines = output.splitlines()
    for i, line in enumerate(lines):
        m = _TASK.match(line.strip())
        if m:
            task = m.group("name")
            continue
        f = _FAILED.match(line.strip())
        if not f:
            continue
        if i + 1 < len(lines) and lines[i + 1].strip() == "...ignoring":
            continue
        try:
            result = json.loads(f.group("json"))
        except ValueError:
            result = {"msg": f.group("json")}
        msg = _message(result)
        if f.group("kind") == "UNREACHABLE":
            msg = f"host unreachable: {msg}"
        if f.group("item"):
            msg = f"(item {f.group('item')}) {msg}"
        found = (task, msg)
    return found


def changed_count(output: str) -> int:
    for line in output.splitlines():
        m = _RECAP.match(line.strip())
        if m:
            return int(m.group(2))
    return 0


def agent_answers(agent_url: str, timeout: float = 5, agent_key: bytes | None = None) -> bool:
    """GET <agent>/health answers 200 (and, given `agent_key`, reports that key's fingerprint)."""
    try:
        with urllib.request.urlopen(agent_url.rstrip("/") + "/health", timeout=timeout) as r:
            if r.status != 200:
                return False
            if agent_key is None:
                return True
            body = json.loads(r.read() or b"{}")
            return isinstance(body, dict) and body.get("keyId") == key_id(agent_key)
    except (OSError, ValueError):
        return False


def installed_version(target: SshTarget, public_key: str = "") -> str | None:
    """The VERSION the last deploy wrote on the host (None if none, or if `public_key`, the MN's, is
    not in the login's authorized_keys: hosts fetch images with it); raises if SSH fails."""
    need_key = f"grep -qxF {shlex.quote(public_key)} ~/.ssh/authorized_keys && " if public_key else ""
    r = ssh_run(target, f"{need_key}cat {shlex.quote(INSTALL_DIR)}/VERSION 2>/dev/null || true", timeout=30)
    return r.stdout.strip() or None


def deploy_agent(target: SshTarget, settings: AgentSettings, home: Path, agent_key: bytes,
                 agent_url: str | None = None, force: bool = False,
                 timeout: float = DEPLOY_TIMEOUT) -> DeployResult:
    """Make the host run the current agent with these settings and `agent_key` (its key of the
    agent protocol, kvmagent/auth.py); a no-op when it already does.

    `agent_url` is where the MN reaches the agent: with it (and not `force`), a matching VERSION
    on the host and an answering agent holding this key skip Ansible. Raises ApiError naming the
    failed task.
    """
    with _host_lock(target.host):
        return _deploy(target, settings, home, agent_key, agent_url, force, timeout)


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _host_lock(host: str) -> threading.Lock:
    """One deploy at a time per host in this MN (a KVM host may also be an SFTP storage host)."""
    with _locks_guard:
        return _locks.setdefault(host, threading.Lock())


def _deploy(target: SshTarget, settings: AgentSettings, home: Path, agent_key: bytes, agent_url: str | None,
            force: bool, timeout: float) -> DeployResult:
    started = time.monotonic()
    version = agent_version(settings)
    key_file, public_key = mn_key_pair(home)
    if not force and agent_url and agent_answers(agent_url, agent_key=agent_key) \
            and installed_version(target, public_key) == version:
        return DeployResult(skipped=True, changed=0, seconds=time.monotonic() - started)
    installer = installer_dir()
    with tempfile.TemporaryDirectory(prefix="zstack-deploy-") as d:
        tmp = Path(d)
        os.chmod(tmp, 0o700)
        archive = write_archive(tmp / "kvmagent.tar.gz")
        (tmp / "inventory.yml").write_text(json.dumps(inventory(SshTarget(
            target.host, target.port, target.username, target.password, key_file))))
        vars_file = tmp / "vars.json"
        vars_file.touch(mode=0o600)
        vars_file.write_text(json.dumps(extra_vars(target, settings, version, archive, public_key, agent_key)))
        argv = [ansible_playbook(), "-i", str(tmp / "inventory.yml"), "-e", f"@{vars_file}",
                str(installer / PLAYBOOK)]
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=tmp,
                               env=ansible_env(home, installer, tmp), stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ApiError(TIMEOUT, f"deploying the agent on {target} did not finish within {timeout:.0f} s") \
                from None
    output = r.stdout + (("\n" + r.stderr) if r.stderr else "")
    seconds = time.monotonic() - started
    if r.returncode != 0:
        task, msg = parse_failure(r.stdout)
        log.warning("deploying the agent on %s failed (rc %d):\n%s", target, r.returncode, output[-4000:])
        if task is None:
            tail = " ".join(output.strip().splitlines()[-5:])[-1000:]
            raise ApiError(OPERATION_ERROR, f"deploying the agent on {target} failed (ansible-playbook exited "
                                            f"{r.returncode}): {tail}")
        raise ApiError(OPERATION_ERROR, f"deploying the agent on {target} failed at task '{task}': {msg}")
    log.info("deployed the agent on %s in %.1f s (%d changes)", target, seconds, changed_count(r.stdout))
    return DeployResult(skipped=False, changed=changed_count(r.stdout), seconds=seconds, output=output)
