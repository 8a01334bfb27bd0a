"""Install time: `install.sh -s` from nothing to a ready API on this machine (issue 5: under 3 minutes
with the Debian packages cached).

    python -m benchmarks.install [--keep]     (as root)

Builds a release (not timed), serves it over HTTP on loopback, then times the README's piped form
`curl -fsSL <url>/install.sh | bash -s -- -s` into a fresh temporary install root on free ports:
fetch, venv + ansible-core, the wheel and its dependencies (pip's cache is used as a user's would
be on a second machine of the same network), the playbook, the MN started with the demo zone. The
clock stops when the MN's /health answers. Prints each step's time and the total; then stops the MN
and removes the root (unless --keep).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_S = 180.0


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keep", action="store_true", help="leave the installation running (prints where)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("benchmarks.install: run as root (install.sh installs system-wide)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="zstack-bench-install-"))
    dist, root = work / "dist", work / "root"
    server, base = _serve(dist)
    try:
        subprocess.run([sys.executable, str(REPO / "tools" / "build_release.py"), "--dist", str(dist),
                        "--base-url", base], check=True, capture_output=True, timeout=600)
        port, sim_port = _free_port(), _free_port()
        flags = f"-s -r {root} --bin-dir {root}/bin --log-dir {root}/log -I 127.0.0.1 " \
                f"--port {port} --simulator-port {sim_port}"
        t0 = time.perf_counter()
        r = subprocess.run(["bash", "-c", f"curl -fsSL {base}/install.sh | bash -s -- {flags}"],
                           capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            print(r.stdout, r.stderr, sep="\n", file=sys.stderr)
            print(f"benchmarks.install: install.sh failed (exit {r.returncode})", file=sys.stderr)
            return 1
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as resp:
            resp.read()
        total = time.perf_counter() - t0
        steps = re.findall(r"^==> (.*)\n(?:(?!==> ).*\n)*?    done in (\d+) s", r.stdout, re.M)
        print(f"install.sh -s to a ready API on {os.cpu_count()} cores "
              f"(load {os.getloadavg()[0]:.1f}):")
        for name, seconds in steps:
            print(f"  {name[:70]:<70} {int(seconds):>4} s")
        verdict = "ok" if total < TARGET_S else "over the target"
        print(f"total: {total:.1f} s (target < {TARGET_S:.0f} s: {verdict})")
        if args.keep:
            print(f"left running: {root} (stop with {root}/bin/zstack-ctl stop)")
        return 0
    finally:
        server.shutdown()
        if not args.keep:
            ctl = root / "bin" / "zstack-ctl"
            if ctl.exists():
                subprocess.run([str(ctl), "stop"], capture_output=True, timeout=120)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
