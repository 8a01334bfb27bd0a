"""zstack-ctl start, run, stop and restart: the MN as a daemon of one home, and the demo zone.

`start` spawns `python -m mn.ctl run` in its own session with its output in the home's log, writes
the pid file, and returns once /health answers (from this home's MN, when mn.uuid says which);
it fails when the daemon exits first or the timeout passes. It saves the host, port, db_url and embedded_simulator it used, so later
commands find the same MN. start, stop and restart hold the ctl lock; `start --foreground` does
not, so that `stop` can run while it serves.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mn import __version__
from mn.ops.ctl.probe import get_health, port_in_use
from mn.ops.ctl.process import (
    ctl_lock,
    is_mn_process,
    read_pid,
    remove_pid,
    running_pid,
    wait_gone,
    write_pid,
)
from mn.ops.ctl.settings import (
    CtlError,
    Paths,
    client_url,
    load_config,
    mask_url,
    normalise_value,
    paths_of,
    persist,
)

if TYPE_CHECKING:
    from mn.ops.ctl.parser import Commands

log = logging.getLogger("mn.ctl")

PERSISTED = ("host", "port", "db_url", "embedded_simulator")  # written by start


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


def _log_tail(path: Path, offset: int, lines: int = 25) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def start_daemon(paths: Paths, args: argparse.Namespace, python: str = sys.executable) -> int:
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
        persist(paths, effective)
        return _run(paths, overrides)
    host = url.split("//", 1)[1].rsplit(":", 1)[0]
    if port_in_use(host, config.port):
        raise CtlError(f"port {config.port} on {config.host} is already in use by another process; "
                       f"choose another with --port")
    if config.embedded_simulator and config.simulator_port and port_in_use(host, config.simulator_port):
        raise CtlError(f"the embedded simulator's port {config.simulator_port} is already in use; "
                       f"choose another with 'zstack-ctl configure simulator_port=N'")
    persist(paths, effective)
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


def stop_daemon(paths: Paths, timeout: float) -> int:
    """SIGTERM this home's MN, SIGKILL after `timeout` s; a missing or stale pid file is not an error."""
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
    if not wait_gone(pid, timeout):
        print(f"it did not stop within {timeout:g} s: sending SIGKILL", flush=True)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not wait_gone(pid, 10.0):
            raise CtlError(f"the management node (pid {pid}) survived SIGKILL")
    remove_pid(paths.pid, pid)
    print("management node stopped")
    return 0


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
    paths = paths_of(args)
    if args.foreground:
        return start_daemon(paths, args)  # no lock held while serving: `stop` must be able to run
    with ctl_lock(paths):
        return start_daemon(paths, args)


def cmd_run(args: argparse.Namespace) -> int:
    return _run(paths_of(args), _overrides(args))


def cmd_stop(args: argparse.Namespace) -> int:
    paths = paths_of(args)
    with ctl_lock(paths):
        return stop_daemon(paths, args.timeout)


def cmd_restart(args: argparse.Namespace) -> int:
    paths = paths_of(args)
    with ctl_lock(paths):
        stop_daemon(paths, args.stop_timeout)
        return start_daemon(paths, args)


def register(commands: Commands) -> None:
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--host", help="address to listen on (saved as host)")
    server.add_argument("--port", type=int, help="API port (saved as port)")
    server.add_argument("--db-url", help="SQLAlchemy database URL (saved as db_url)")
    server.add_argument("--simulator", action=argparse.BooleanOptionalAction, default=None,
                        help="run the host simulator inside the MN (saved as embedded_simulator)")
    p = commands.add("start", cmd_start, "start the management node as a daemon", [server])
    p.add_argument("--foreground", action="store_true", help="serve in this process instead of a daemon")
    p.add_argument("--demo", action=argparse.BooleanOptionalAction, default=True,
                   help="with --simulator, make a demo zone ready to create VMs (default: on)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for /health (default 120)")
    commands.add("run", cmd_run, "serve in the foreground until SIGTERM/SIGINT (used by start)", [server])
    p = commands.add("stop", cmd_stop, "stop the management node", [])
    p.add_argument("--timeout", type=float, default=30.0, help="seconds before SIGKILL (default 30)")
    p = commands.add("restart", cmd_restart, "stop, then start the management node", [server])
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for /health (default 120)")
    p.add_argument("--stop-timeout", type=float, default=30.0, help="seconds before SIGKILL (default 30)")
    p.set_defaults(foreground=False)
