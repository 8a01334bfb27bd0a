"""zstack-ctl: run and manage the management node on this machine, without systemd.

Files under the MN home (MNConfig.home: --home, else $ZSTACK_HOME, else ~/.zstack):

    zstack.properties             settings as key=value lines (MNConfig field names)
    mn.pid                        pid of the running MN process (`zstack-ctl run`)
    logs/management-server.log    the daemon's stdout and stderr
    .ctl.lock                     serialises start/stop/restart (and upgrade, rollback, restore_db)
    backups/                      upgrade and database backups on a development install (an installed
                                  layout keeps them in R/backups: mn.upgrade, docs/operations.md)

Settings: defaults < zstack.properties < ZSTACK_* environment < command-line flags; `start` writes
the host, port, db_url and embedded_simulator it used to zstack.properties, so later commands
(status, stop, a plain start) find the same MN.
Exit codes: 0 success (status: running), 1 failure (status: not running), 2 usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import fcntl
import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mn import __version__
from mn.config import MNConfig, default_home

log = logging.getLogger("mn.ctl")

PROPERTIES = "zstack.properties"
PID_FILE = "mn.pid"
LOG_FILE = "logs/management-server.log"
# Every MNConfig field but `home`, which is where the properties file itself lives.
CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(MNConfig) if f.name != "home"}
PERSISTED = ("host", "port", "db_url", "embedded_simulator")  # written by start
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


class CtlError(Exception):
    """A failure reported to the user as one clear message and a non-zero exit code."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


@dataclasses.dataclass(frozen=True)
class Paths:
    """Where one MN home keeps its files."""

    home: Path

    @property
    def properties(self) -> Path:
        return self.home / PROPERTIES

    @property
    def pid(self) -> Path:
        return self.home / PID_FILE

    @property
    def log(self) -> Path:
        return self.home / LOG_FILE

    @property
    def lock(self) -> Path:
        return self.home / ".ctl.lock"

    @property
    def mn_uuid(self) -> Path:
        return self.home / "mn.uuid"


# ---- properties ---------------------------------------------------------------------------------


def read_properties(path: Path) -> dict[str, str]:
    """key=value lines of a properties file, in file order; blank lines and # comments skipped."""
    out: dict[str, str] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, v = (x.strip() for x in line.split("=", 1))
        out[k] = v
    return out


def write_properties(path: Path, updates: dict[str, str | None]) -> None:
    """Set (or, for None, delete) keys in place, keeping comments and order; atomic replace."""
    lines = path.read_text().splitlines() if path.exists() else []
    pending = dict(updates)
    out: list[str] = []
    for line in lines:
        stripped = line.strip()
        key = stripped.split("=", 1)[0].strip() if "=" in stripped and not stripped.startswith("#") else None
        if key is not None and key in pending:
            value = pending.pop(key)
            if value is not None:
                out.append(f"{key}={value}")
            continue
        out.append(line)
    out.extend(f"{k}={v}" for k, v in pending.items() if v is not None)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it may hold a DB password
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{x}\n" for x in out))
    os.replace(tmp, path)


def _field_type(key: str) -> str:
    t = CONFIG_FIELDS[key].type
    return t if isinstance(t, str) else t.__name__


def check_key(key: str) -> None:
    """CtlError (usage) unless `key` is a setting: an MNConfig field other than home."""
    if key == "home":
        raise CtlError("'home' is not a setting: it is the directory holding zstack.properties "
                       "(choose it with --home or ZSTACK_HOME)", 2)
    if key not in CONFIG_FIELDS:
        close = difflib.get_close_matches(key, CONFIG_FIELDS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise CtlError(f"unknown setting '{key}'{hint}; valid settings: {', '.join(sorted(CONFIG_FIELDS))}", 2)


def normalise_value(key: str, value: object) -> str:
    """The properties-file spelling of a setting; CtlError when the key or the value is invalid."""
    check_key(key)
    t = _field_type(key)
    if isinstance(value, bool):
        value = "true" if value else "false"
    text = str(value).strip()
    try:
        if t == "int":
            return str(int(text))
        if t == "float":
            return str(float(text))
    except ValueError:
        raise CtlError(f"setting '{key}' must be {'an integer' if t == 'int' else 'a number'}, "
                       f"got {text!r}", 2) from None
    if t == "bool":
        if text.lower() in _TRUE:
            return "true"
        if text.lower() in _FALSE:
            return "false"
        raise CtlError(f"setting '{key}' must be true or false, got {text!r}", 2)
    if key == "log_level" and logging.getLevelName(text.upper()) == f"Level {text.upper()}":
        raise CtlError(f"setting 'log_level' must be one of DEBUG, INFO, WARNING, ERROR, got {text!r}", 2)
    return text


def load_config(paths: Paths, **overrides: object) -> MNConfig:
    """The effective settings of this home: file < environment < overrides."""
    try:
        return MNConfig.load(paths.properties, home=paths.home, **overrides)
    except (TypeError, ValueError) as exc:
        raise CtlError(f"invalid settings in {paths.properties} or ZSTACK_* environment: {exc}") from None


def mask_url(url: str) -> str:
    """A database URL with its password replaced by ***."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def client_url(config: MNConfig) -> str:
    """The URL a local client uses to reach an MN listening on config.host:config.port."""
    host = config.host or "127.0.0.1"
    if host == "0.0.0.0":
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.port}"


# ---- pid file and processes ---------------------------------------------------------------------


def read_pid(path: Path) -> int | None:
    """The pid in a pid file, or None when the file is missing or does not hold a pid."""
    try:
        text = path.read_text().strip()
    except (FileNotFoundError, IsADirectoryError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def write_pid(path: Path, pid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{pid}\n")
    os.replace(tmp, path)


def remove_pid(path: Path, pid: int | None = None) -> None:
    """Remove the pid file; with `pid`, only when it still names that process."""
    if pid is not None and read_pid(path) != pid:
        return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def pid_alive(pid: int) -> bool:
    """True when the process exists and is not a zombie (an exited, unreaped daemon)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def is_mn_process(pid: int) -> bool:
    """True when `pid` is alive and, where /proc tells, runs zstack-ctl (not a recycled pid)."""
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"mn.ctl" in cmdline or b"zstack-ctl" in cmdline


def running_pid(paths: Paths) -> int | None:
    """The pid of this home's running MN, or None."""
    pid = read_pid(paths.pid)
    return pid if pid is not None and is_mn_process(pid) else None


@contextlib.contextmanager
def ctl_lock(paths: Paths) -> Iterator[None]:
    """Serialise state-changing commands on one home (an flock, released when the process dies)."""
    paths.home.mkdir(parents=True, exist_ok=True)
    with open(paths.lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another zstack-ctl command on {paths.home} ...", file=sys.stderr)
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.settimeout(0.5)
        return s.connect_ex((host.strip("[]"), port)) == 0


# ---- talking to the MN --------------------------------------------------------------------------

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get_health(url: str, timeout: float = 2.0) -> dict[str, Any]:
    """GET <url>/health; raises OSError/ValueError when the MN does not answer it well."""
    with _NO_PROXY.open(f"{url}/health", timeout=timeout) as r:
        body = json.loads(r.read())
    if not isinstance(body, dict) or body.get("status") != "ok":
        raise ValueError(f"unexpected /health answer: {body!r}")
    return body


def get_version(url: str) -> str | None:
    """The MN's version via the public API (GetVersion), or None when it cannot tell."""
    try:
        from mn.client import ZStackClient

        reply = ZStackClient(url, timeout=5.0, maxsize=1).call("GetVersion")
        return str(reply.get("version")) if reply.get("version") else None
    except Exception:  # noqa: BLE001 (status must report, not fail, when the API cannot)
        return None


def _log_tail(path: Path, offset: int, lines: int = 25) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# ---- commands -----------------------------------------------------------------------------------


def _paths(args: argparse.Namespace) -> Paths:
    home = getattr(args, "home", None)
    return Paths(Path(home or default_home()).expanduser().resolve())


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    """The settings given as flags (host, port, db_url, embedded_simulator)."""
    given = {"host": getattr(args, "host", None), "port": getattr(args, "port", None),
             "db_url": getattr(args, "db_url", None), "embedded_simulator": getattr(args, "simulator", None)}
    return {k: v for k, v in given.items() if v is not None}


def _flags_of(overrides: dict[str, object]) -> list[str]:
    """The `run` flags that carry `overrides` to the daemon (they beat ZSTACK_* there too)."""
    out: list[str] = []
    for k, v in overrides.items():
        if k == "embedded_simulator":
            out.append("--simulator" if v else "--no-simulator")
        else:
            out += [f"--{k.replace('_', '-')}", str(v)]
    return out


def _persist(paths: Paths, overrides: dict[str, object]) -> None:
    if overrides:
        write_properties(paths.properties, {k: normalise_value(k, v) for k, v in overrides.items()})


def _start(paths: Paths, args: argparse.Namespace, python: str = sys.executable) -> int:
    """Start the daemon with `python` (the interpreter of the venv whose code it runs)."""
    overrides = _overrides(args)
    for k, v in overrides.items():
        normalise_value(k, v)
    config = load_config(paths, **overrides)
    url = client_url(config)
    pid = running_pid(paths)
    if pid is not None:
        raise CtlError(f"the management node is already running (pid {pid}, {url}); "
                       f"use 'zstack-ctl stop' or 'zstack-ctl restart'")
    if paths.pid.exists():
        stale = read_pid(paths.pid)
        why = f"pid {stale} is not running" if stale is not None else "it holds no pid"
        print(f"removing the stale pid file {paths.pid} ({why})")
        remove_pid(paths.pid)
    if config.port == 0:
        raise CtlError("a daemon needs a fixed port: give --port N (port 0 is for tests)", 2)
    # The effective values (flags, env or file), so status/stop find this MN whatever the env.
    effective = {k: getattr(config, k) for k in PERSISTED}
    if args.foreground:
        _persist(paths, effective)
        return _run(paths, overrides)
    host = url.split("//", 1)[1].rsplit(":", 1)[0]
    if _port_in_use(host, config.port):
        raise CtlError(f"port {config.port} on {config.host} is already in use by another process; "
                       f"choose another with --port")
    if config.embedded_simulator and config.simulator_port and _port_in_use(host, config.simulator_port):
        raise CtlError(f"the embedded simulator's port {config.simulator_port} is already in use; "
                       f"choose another with 'zstack-ctl configure simulator_port=N'")
    _persist(paths, effective)
    paths.log.parent.mkdir(parents=True, exist_ok=True)
    with open(paths.log, "ab") as logf:
        offset = logf.tell()
        logf.write(f"---- zstack-ctl start {time.strftime('%Y-%m-%d %H:%M:%S')} ----\n".encode())
        logf.flush()
        cmd = [python, "-m", "mn.ctl", "run", "--home", str(paths.home), *_flags_of(overrides)]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                cwd=paths.home, start_new_session=True)
    write_pid(paths.pid, proc.pid)
    print(f"starting the management node (pid {proc.pid}) ...", flush=True)
    deadline = time.monotonic() + args.timeout
    while True:
        rc = proc.poll()
        if rc is not None:
            remove_pid(paths.pid, proc.pid)
            tail = _log_tail(paths.log, offset)
            raise CtlError(f"the management node exited with code {rc} while starting; see {paths.log}"
                           + (f"\n---- last lines of the log ----\n{tail}" if tail else ""))
        try:
            health = get_health(url, timeout=1.0)
            mine = paths.mn_uuid.read_text().strip() if paths.mn_uuid.exists() else None
            if mine is None or health.get("managementNodeUuid") == mine:
                break
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise CtlError(f"the management node (pid {proc.pid}) did not answer {url}/health within "
                           f"{args.timeout:g} s; see {paths.log} (it may still be starting: "
                           f"'zstack-ctl status', or 'zstack-ctl stop' to give up)")
        time.sleep(0.2)
    print(f"management node started: {url} (pid {proc.pid})")
    if config.embedded_simulator:
        print("embedded simulator: on" + (f" (port {config.simulator_port})" if config.simulator_port else ""))
    print(f"log: {paths.log}")
    if config.embedded_simulator and getattr(args, "demo", True):
        _seed_demo(url)
    return 0


def _seed_demo(url: str) -> None:
    """Make (or find) the demo zone through the public API and print the next command to try."""
    from mn.client import ClientError, ZStackClient
    from mn.ops import demo

    api = ZStackClient(url)
    try:
        api.login()
        d = demo.seed(api)
    except ClientError as exc:
        print(f"demo zone not prepared: {exc} (log in and build one yourself, or start with --no-demo)")
        return
    print("demo zone ready: 2 simulated hosts, primary and backup storage, an image, a flat network, "
          "an offering")
    print("try:  zstack-cli LogInByAccount accountName=admin password=password")
    print(f"      zstack-cli {demo.next_command(d)}")


def _stop(paths: Paths, timeout: float) -> int:
    pid = read_pid(paths.pid)
    if pid is None:
        if paths.pid.exists():
            print(f"removing the unreadable pid file {paths.pid}")
            remove_pid(paths.pid)
        print(f"the management node is not running (no pid file in {paths.home})")
        return 0
    if not is_mn_process(pid):
        remove_pid(paths.pid, pid)
        print(f"the management node is not running; removed the stale pid file (pid {pid})")
        return 0
    print(f"stopping the management node (pid {pid}) ...", flush=True)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, timeout):
        print(f"it did not stop within {timeout:g} s: sending SIGKILL", flush=True)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not _wait_gone(pid, 10.0):
            raise CtlError(f"the management node (pid {pid}) survived SIGKILL")
    remove_pid(paths.pid, pid)
    print("management node stopped")
    return 0


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _run(paths: Paths, overrides: dict[str, object]) -> int:
    """Serve in this process (pid file, logging to stderr) until SIGTERM/SIGINT, then stop cleanly."""
    config = load_config(paths, **overrides)
    level = logging.getLevelName(config.log_level.upper())
    logging.basicConfig(level=level if isinstance(level, int) else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s [%(threadName)s] %(name)s: %(message)s")
    other = running_pid(paths)
    if other is not None and other != os.getpid():
        raise CtlError(f"the management node is already running (pid {other})")
    write_pid(paths.pid, os.getpid())
    log.info("starting the management node %s (home %s, database %s)", __version__, paths.home,
             mask_url(config.db_url))
    try:
        from mn.server import serve_forever

        serve_forever(config)  # until SIGTERM/SIGINT, then a clean stop (tasks, jobs, database)
    except Exception:
        log.exception("the management node failed")
        return 1
    finally:
        remove_pid(paths.pid, os.getpid())
    log.info("management node stopped")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    paths = _paths(args)
    if args.foreground:
        return _start(paths, args)  # no lock held while serving: `stop` must be able to run
    with ctl_lock(paths):
        return _start(paths, args)


def cmd_run(args: argparse.Namespace) -> int:
    return _run(_paths(args), _overrides(args))


def cmd_stop(args: argparse.Namespace) -> int:
    paths = _paths(args)
    with ctl_lock(paths):
        return _stop(paths, args.timeout)


def cmd_restart(args: argparse.Namespace) -> int:
    paths = _paths(args)
    with ctl_lock(paths):
        _stop(paths, args.stop_timeout)
        return _start(paths, args)


def cmd_status(args: argparse.Namespace) -> int:
    paths = _paths(args)
    config = load_config(paths)
    url = client_url(config)
    pid = read_pid(paths.pid)
    alive = pid is not None and is_mn_process(pid)
    health: dict[str, Any] | None = None
    problem = ""
    if alive:
        try:
            health = get_health(url, timeout=3.0)
        except (OSError, ValueError) as exc:
            problem = f"pid {pid} is alive but {url}/health does not answer ({exc})"
    state = "Running" if health else ("Unhealthy" if alive else "Stopped")
    rows = [("status", state)]
    if not alive and pid is not None:
        rows.append(("note", f"stale pid file {paths.pid} (pid {pid} is not running)"))
    if problem:
        rows.append(("problem", problem))
    rows += [("url", url), ("pid", str(pid) if alive else "-")]
    if health:
        rows.append(("version", get_version(url) or str(health.get("version"))))
        rows.append(("mn uuid", str(health.get("managementNodeUuid"))))
        if health.get("processes", 1) > 1:
            rows.append(("processes", f"{health['processes']} sharing the port (this answer: process "
                                      f"{health.get('process')})"))
    rows += [("database", mask_url(config.db_url)),
             ("simulator", ("embedded" if config.embedded_simulator else "off")
              + (f", {config.simulator_url}" if config.simulator_url else "")),
             ("home", str(paths.home)), ("log", str(paths.log))]
    print("\n".join(f"{k + ':':<11}{v}" for k, v in rows))
    return 0 if health else 1


def cmd_version(args: argparse.Namespace) -> int:
    print(f"zstack-ctl {__version__}")
    paths = _paths(args)
    print(f"database: {_db_revision(load_config(paths).db_url)}")
    if running_pid(paths) is not None:
        url = client_url(load_config(paths))
        try:
            version = get_version(url) or str(get_health(url).get("version"))
        except (OSError, ValueError):
            version = "not answering"
        print(f"management node at {url}: {version}")
    return 0


def _db_revision(url: str) -> str:
    """'<url> at revision R (head H)', or why the revision cannot be read."""
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        return f"{mask_url(url)}: no database yet ('zstack-ctl deploydb' or 'start' creates it)"
    try:
        from mn.db.migrate import current_revision, head_revision

        revision, head = current_revision(url), head_revision()
    except Exception as exc:  # noqa: BLE001 (version reports, never fails)
        return f"{mask_url(url)}: not readable ({type(exc).__name__}: {str(exc).splitlines()[0]})"
    note = "up to date" if revision == head else "run 'zstack-ctl upgrade_db'" if revision else "no schema"
    return f"{mask_url(url)} at revision {revision or 'none'} (this code's head: {head}; {note})"


def cmd_show_configuration(args: argparse.Namespace) -> int:
    paths = _paths(args)
    if args.all:
        config = load_config(paths)
        for name in CONFIG_FIELDS:
            print(f"{name}={normalise_value(name, getattr(config, name))}")
        return 0
    props = read_properties(paths.properties)
    print(f"# {paths.properties}" + ("" if paths.properties.exists() else " (absent: defaults apply)"))
    for k, v in props.items():
        print(f"{k}={v}")
    return 0


def cmd_configure(args: argparse.Namespace) -> int:
    paths = _paths(args)
    updates: dict[str, str | None] = {}
    for item in args.settings:
        key, eq, value = item.partition("=")
        if not eq:
            raise CtlError(f"expected key=value, got {item!r} (key= removes a setting)", 2)
        key = key.strip()
        check_key(key)
        updates[key] = normalise_value(key, value) if value.strip() else None
    write_properties(paths.properties, updates)
    for k, v in updates.items():
        print(f"{k}={v}" if v is not None else f"{k} removed (default applies)")
    if running_pid(paths) is not None:
        print("the management node is running: 'zstack-ctl restart' applies the new settings")
    return 0


def cmd_deploydb(args: argparse.Namespace) -> int:
    paths = _paths(args)
    if args.db_url:
        normalise_value("db_url", args.db_url)
    config = load_config(paths, **({"db_url": args.db_url} if args.db_url else {}))
    url = config.db_url
    paths.home.mkdir(parents=True, exist_ok=True)
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    print(f"migrating {mask_url(url)} ...", flush=True)
    try:
        from mn.db.migrate import current_revision, upgrade

        upgrade(url)
        revision = current_revision(url)
    except Exception as exc:
        raise CtlError(f"deploydb failed on {mask_url(url)}: {type(exc).__name__}: {exc}") from None
    if args.db_url:
        _persist(paths, {"db_url": args.db_url})
        print(f"db_url saved in {paths.properties}")
    print(f"database ready at revision {revision}")
    return 0


# ---- upgrades, backups, diagnostics (mn.upgrade, mn.backup, mn.release, mn.collect_log) ---------


def _venv(args: argparse.Namespace) -> Path:
    """The venv whose code is upgraded: --venv, else $ZSTACK_VENV, else the one running this."""
    given = getattr(args, "venv", None) or os.environ.get("ZSTACK_VENV")
    if given:
        venv = Path(given).expanduser().resolve()
        if not (venv / "bin" / "python").exists():
            raise CtlError(f"{venv} is not a virtualenv (no bin/python)", 2)
        return venv
    if sys.prefix == sys.base_prefix:
        raise CtlError("zstack-ctl does not run from a virtualenv: give the MN's with --venv DIR", 2)
    return Path(sys.prefix)


def _backups(args: argparse.Namespace, paths: Paths) -> Path:
    """--backup-dir, else R/backups of an installed layout, else <home>/backups."""
    from mn.ops.release import install_root

    if getattr(args, "backup_dir", None):
        return Path(args.backup_dir).expanduser().resolve()
    venv = getattr(args, "venv", None) or os.environ.get("ZSTACK_VENV") or sys.prefix
    root = install_root(Path(venv).expanduser().resolve())
    return root / "backups" if root else paths.home / "backups"


def _node(args: argparse.Namespace, paths: Paths, venv: Path | None = None) -> Any:
    """The upgrade.Node of this home: how an upgrade stops, starts and asks the MN."""
    import mn.client  # noqa: F401 (imported now: an upgrade of this very venv replaces the files)
    from mn.ops import release, upgrade

    venv = venv or _venv(args)
    python = str(release.venv_python(venv))
    start_args = argparse.Namespace(foreground=False, timeout=getattr(args, "timeout", 120.0), demo=False,
                                    host=None, port=None, db_url=None, simulator=None)
    root = release.install_root(venv)
    return upgrade.Node(
        home=paths.home, venv=venv, db_url=load_config(paths).db_url, backups=_backups(args, paths),
        is_running=lambda: running_pid(paths) is not None,
        stop=lambda: _stop(paths, 30.0), start=lambda: _start(paths, start_args, python=python),
        running_version=lambda: get_version(client_url(load_config(paths))),
        releases=root / "releases" if root else None, say=lambda m: print(m, flush=True))


def cmd_upgrade(args: argparse.Namespace) -> int:
    import tempfile

    from mn.ops import release, upgrade

    paths = _paths(args)
    target = Path(args.target).expanduser().resolve()
    if not target.is_file():
        raise CtlError(f"no such file: {target}", 2)
    is_wheel = target.name.endswith(".whl")
    if not is_wheel and not target.name.endswith((".tar.gz", ".tgz")):
        raise CtlError(f"{target.name}: expected a release tarball (zstack-<version>.tar.gz) or a wheel "
                       f"(zstack-<version>-py3-none-any.whl)", 2)
    with ctl_lock(paths), tempfile.TemporaryDirectory(prefix="zstack-upgrade-") as tmp:
        node = _node(args, paths)
        try:
            if is_wheel:
                wheel = target
            else:
                unpack_to = Path(tmp) if args.dry_run else (node.releases or paths.home / "releases")
                wheel = release.unpack_release(target, unpack_to)
            plan = upgrade.plan_upgrade(node, wheel)
        except (release.ReleaseError, upgrade.UpgradeError) as exc:
            raise CtlError(str(exc)) from None
        print(plan.describe(), flush=True)
        if args.dry_run:
            print("dry run: nothing changed")
            return 0
        try:
            upgrade.run_upgrade(node, plan)
        except upgrade.UpgradeError as exc:
            raise CtlError(str(exc)) from None
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from mn.ops import upgrade

    paths = _paths(args)
    with ctl_lock(paths):
        node = _node(args, paths)
        try:
            directory = Path(args.backup).expanduser().resolve() if args.backup else upgrade.last_upgrade(node.backups)
            manifest = upgrade.read_manifest(directory)
            print(f"rolling back to {directory} (version {manifest['version']}, database revision "
                  f"{manifest['revision']}, taken {manifest['created']})", flush=True)
            upgrade.rollback(node, directory)
        except upgrade.UpgradeError as exc:
            raise CtlError(str(exc)) from None
    return 0


def cmd_upgrade_db(args: argparse.Namespace) -> int:
    from mn.db.migrate import MIGRATIONS, current_revision
    from mn.db.migrate import upgrade as migrate
    from mn.ops import backup, release, upgrade

    paths = _paths(args)
    url = load_config(paths).db_url
    try:
        backup.check_reachable(url)
        revision = current_revision(url)
        migrations = release.migrations_in(MIGRATIONS / "versions")
        todo = release.pending(migrations, revision)
    except (backup.BackupError, release.ReleaseError) as exc:
        raise CtlError(str(exc)) from None
    print(f"database {mask_url(url)}: revision {revision or 'none (empty)'}; "
          f"this code's head: {release.head_of(migrations)}")
    for m in todo:
        print(f"  pending {m.revision}  {m.title}")
    if not todo:
        print("the database is up to date: nothing to migrate")
        return 0
    if args.dry_run:
        print(f"dry run: {len(todo)} migration(s) pending, nothing changed")
        return 0
    with ctl_lock(paths):
        pid = running_pid(paths)
        if pid is not None:
            raise CtlError(f"the management node is running (pid {pid}): stop it first ('zstack-ctl stop'); "
                           f"'zstack-ctl upgrade' does stop, migrate and start in one go")
        saved = None
        if revision is not None:  # an empty database has nothing to lose
            try:
                backup.check_tools(url)
                saved = upgrade.take_backup(_node(args, paths, venv=Path(sys.prefix)), "upgrade_db",
                                            with_code=False)
            except (backup.BackupError, release.ReleaseError) as exc:
                raise CtlError(f"backup failed, nothing migrated: {exc}") from None
            print(f"backup: {saved}")
        print(f"migrating to {release.head_of(migrations)} ...", flush=True)
        try:
            migrate(url)
        except Exception as exc:  # noqa: BLE001 (any migration error: restore, then report)
            why = f"{type(exc).__name__}: {exc}"
            if saved is None:
                raise CtlError(f"the migration failed: {why}") from None
            backup.restore(url, saved / upgrade.read_manifest(saved)["database"])
            raise CtlError(f"the migration failed: {why}\nthe database was restored from {saved} "
                           f"(revision {revision})") from None
    print(f"database at revision {current_revision(url)}")
    return 0


def cmd_dump_db(args: argparse.Namespace) -> int:
    from mn.db.migrate import current_revision
    from mn.ops import backup

    paths = _paths(args)
    url = load_config(paths).db_url
    try:
        suffix = backup.SUFFIX[backup.dialect_of(url)]
        dest = Path(args.file).expanduser().resolve() if args.file else \
            _backups(args, paths) / f"db-{time.strftime('%Y%m%d-%H%M%S')}{suffix}"
        backup.check_tools(url)
        backup.check_reachable(url)
        t0 = time.monotonic()
        backup.dump(url, dest)
    except backup.BackupError as exc:
        raise CtlError(str(exc)) from None
    print(f"dumped {mask_url(url)} (revision {current_revision(url)}) to {dest} "
          f"({dest.stat().st_size} bytes, {time.monotonic() - t0:.1f} s)")
    return 0


def cmd_restore_db(args: argparse.Namespace) -> int:
    from mn.db.migrate import current_revision
    from mn.ops import backup, upgrade

    paths = _paths(args)
    url = load_config(paths).db_url
    src = Path(args.file).expanduser().resolve()
    if not src.is_file():
        raise CtlError(f"no such file: {src}", 2)
    with ctl_lock(paths):
        pid = running_pid(paths)
        if pid is not None:
            raise CtlError(f"the management node is running (pid {pid}): stop it before restoring its "
                           f"database ('zstack-ctl stop')")
        try:
            if backup.file_kind(src) != backup.dialect_of(url):
                raise backup.BackupError(f"{src} is a {backup.file_kind(src)} dump; the configured "
                                         f"database {mask_url(url)} is {backup.dialect_of(url)}")
            backup.check_tools(url)
            if args.backup and current_revision(url) is not None:
                saved = upgrade.take_backup(_node(args, paths, venv=Path(sys.prefix)), "before-restore",
                                            with_code=False)
                print(f"the current database is saved in {saved}")
            backup.restore(url, src)
        except backup.BackupError as exc:
            raise CtlError(str(exc)) from None
    print(f"restored {mask_url(url)} from {src}: revision {current_revision(url)}")
    return 0


def cmd_collect_log(args: argparse.Namespace) -> int:
    from mn.ops import collect_log

    paths = _paths(args)
    status = io.StringIO()
    with contextlib.redirect_stdout(status):
        try:
            cmd_status(args)
            cmd_version(args)
        except CtlError as exc:
            print(f"status failed: {exc}")
    out = Path(args.output).expanduser().resolve() if args.output else Path.cwd()
    path = collect_log.collect(paths.home, load_config(paths), status.getvalue(), out, _backups(args, paths),
                               log_bytes=args.max_log_mb * 1024 * 1024)
    print(path)
    return 0


# ---- argument parsing ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zstack-ctl", description="Manage the ZStack management node on "
                                     "this machine.")
    parser.add_argument("--home", help="MN home directory (default: $ZSTACK_HOME or ~/.zstack)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", default=argparse.SUPPRESS, help="MN home directory")
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--host", help="address to listen on (saved as host)")
    server.add_argument("--port", type=int, help="API port (saved as port)")
    server.add_argument("--db-url", help="SQLAlchemy database URL (saved as db_url)")
    server.add_argument("--simulator", action=argparse.BooleanOptionalAction, default=None,
                        help="run the host simulator inside the MN (saved as embedded_simulator)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, func: Any, help_: str, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, parents=[common, *parents])
        p.set_defaults(func=func)
        return p

    p = add("start", cmd_start, "start the management node as a daemon", [server])
    p.add_argument("--foreground", action="store_true", help="serve in this process instead of a daemon")
    p.add_argument("--demo", action=argparse.BooleanOptionalAction, default=True,
                   help="with --simulator, make a demo zone ready to create VMs (default: on)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for /health (default 120)")
    add("run", cmd_run, "serve in the foreground until SIGTERM/SIGINT (used by start)", [server])
    p = add("stop", cmd_stop, "stop the management node", [])
    p.add_argument("--timeout", type=float, default=30.0, help="seconds before SIGKILL (default 30)")
    p = add("restart", cmd_restart, "stop, then start the management node", [server])
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for /health (default 120)")
    p.add_argument("--stop-timeout", type=float, default=30.0, help="seconds before SIGKILL (default 30)")
    p.set_defaults(foreground=False)
    add("status", cmd_status, "show whether the management node runs (exit 0) or not (exit 1)", [])
    add("version", cmd_version, "show the version", [])
    p = add("show_configuration", cmd_show_configuration, "print zstack.properties", [])
    p.add_argument("--all", action="store_true", help="print every effective setting (file + ZSTACK_* env)")
    p = add("configure", cmd_configure, "set settings in zstack.properties (key= removes one)", [])
    p.add_argument("settings", nargs="+", metavar="key=value")
    p = add("deploydb", cmd_deploydb, "create or upgrade the database schema", [])
    p.add_argument("--db-url", help="database URL (saved as db_url); default: the configured one")
    code = argparse.ArgumentParser(add_help=False)
    code.add_argument("--venv", help="the virtualenv of the MN's code (default: $ZSTACK_VENV, else the one "
                      "running zstack-ctl)")
    code.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the MN to start")
    backups = argparse.ArgumentParser(add_help=False)
    backups.add_argument("--backup-dir", help="where backups go (default: R/backups of an installed layout, "
                         "else <home>/backups)")
    p = add("upgrade", cmd_upgrade, "upgrade to a release tarball or wheel: stop, back up, install, migrate, "
            "start, check; on any failure restore the previous version and database", [code, backups])
    p.add_argument("target", metavar="RELEASE", help="zstack-<version>.tar.gz or zstack-<version>-py3-none-any.whl")
    p.add_argument("--dry-run", action="store_true", help="only check and print the plan")
    p = add("rollback", cmd_rollback, "return to the backup of the last upgrade (code and database)",
            [code, backups])
    p.add_argument("backup", nargs="?", help="a backup directory (default: the last upgrade's)")
    p = add("upgrade_db", cmd_upgrade_db, "migrate the database to this code's schema: dry run, backup, "
            "migrate (restored from the backup if a migration fails)", [backups])
    p.add_argument("--dry-run", action="store_true", help="only show the pending migrations")
    p = add("dump_db", cmd_dump_db, "dump the database to a file (default: in the backup directory)", [backups])
    p.add_argument("file", nargs="?", help="the dump file")
    p = add("restore_db", cmd_restore_db, "replace the database by a dump (the MN must be stopped)", [backups])
    p.add_argument("file", help="a dump made by dump_db or an upgrade backup")
    p.add_argument("--backup", action=argparse.BooleanOptionalAction, default=True,
                   help="dump the current database first (default: on)")
    p = add("collect_log", cmd_collect_log, "make a tarball of logs, config (passwords masked), versions, "
            "status and migration state for a bug report", [])
    p.add_argument("--output", "-o", help="directory (or .tar.gz path) for the tarball (default: here)")
    p.add_argument("--max-log-mb", type=int, default=20, help="keep at most the last N MiB of each log")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args)
    except CtlError as exc:
        print(f"zstack-ctl {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
