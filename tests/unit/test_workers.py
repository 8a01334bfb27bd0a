"""mn/workers.py: worker identities and thread counts, worker 0's readiness check, and the SQLite
writer lock shared by processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mn.config import MNConfig
from mn.db.base import new_uuid
from mn.db.engine import WriterLock
from mn.workers import (
    AUTO_PROCESSES,
    MAX_PROCESSES,
    _healthy,
    all_worker_uuids,
    process_count,
    worker_uuid,
)


def test_worker_uuids_are_stable_distinct_and_the_first_is_the_homes() -> None:
    base = new_uuid()
    assert worker_uuid(base, 0) == base
    assert worker_uuid(base, 3) == worker_uuid(base, 3)  # a restarted worker finds its own jobs
    every = all_worker_uuids(base)
    assert len(every) == len(set(every)) == MAX_PROCESSES
    assert all(len(u) == 32 and int(u, 16) >= 0 for u in every)
    assert worker_uuid(new_uuid(), 1) != worker_uuid(base, 1)


def test_process_count(tmp_path: Path) -> None:
    assert process_count(MNConfig(home=tmp_path, processes=3)) == 3
    auto = min((os.cpu_count() or 1) + 1, AUTO_PROCESSES)  # one per CPU and one more
    assert process_count(MNConfig(home=tmp_path, processes=0)) == auto
    assert process_count(MNConfig(home=tmp_path, processes=1000)) == MAX_PROCESSES
    assert MNConfig(home=tmp_path).processes == 0  # automatic by default


def test_threads_per_process_and_bad_counts(tmp_path: Path) -> None:
    auto = MNConfig(home=tmp_path)
    assert (auto.job_threads(1), auto.api_threads(1)) == (32, 128)
    assert (auto.job_threads(2), auto.api_threads(2)) == (16, 64)
    assert (auto.job_threads(8), auto.api_threads(8)) == (16, 64)
    given = MNConfig(home=tmp_path, workers=4, http_threads=8)
    assert (given.job_threads(2), given.api_threads(2)) == (4, 8)
    for name in ("processes", "workers", "http_threads"):
        with pytest.raises(ValueError, match=name):
            MNConfig(home=tmp_path, **{name: -1})
    with pytest.raises(ValueError, match="processes"):
        MNConfig.load(None, home=tmp_path, processes="-2")


_HOLDER = """
import sys, time
from mn.db.engine import WriterLock
lock = WriterLock(sys.argv[1])
with lock:
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_the_sqlite_writer_lock_excludes_other_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "z.db")
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, path, "0.8"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        lock = WriterLock(path)
        t0 = time.monotonic()
        with lock:
            waited = time.monotonic() - t0
            with lock:  # re-entrant within this process
                pass
        assert waited > 0.4, waited
        lock.close()
        with lock:  # usable again after close()
            pass
        lock.close()
    finally:
        holder.wait(10)


def test_the_lock_file_lies_beside_the_database_file() -> None:
    from mn.db.engine import _sqlite_file

    assert _sqlite_file("sqlite:////var/lib/zstack/zstack.db") == "/var/lib/zstack/zstack.db"
    assert _sqlite_file("sqlite:///rel.db") == "rel.db"
    assert _sqlite_file("sqlite://") is None and _sqlite_file("sqlite:///:memory:") is None


def test_a_worker_is_healthy_on_its_own_answer_not_another_process_on_the_port() -> None:
    """SO_REUSEPORT: a worker of a killed MN, still stopping, may answer /health on the port."""
    answering = {"pid": -1}

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = json.dumps({"status": "ok", "pid": answering["pid"]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert not _healthy(url, proc, timeout=0.5)  # another process answered
        answering["pid"] = proc.pid
        assert _healthy(url, proc, timeout=5)
    finally:
        proc.kill()
        proc.wait()
        server.shutdown()
        server.server_close()
