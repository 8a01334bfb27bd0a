"""zstack-ctl without a running MN: properties, settings, pid files, stale and live processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from mn.config import MNConfig
from mn.ops import ctl
from mn.ops.ctl import CtlError, Paths, daemon, process, settings


def test_properties_round_trip_keeps_comments_and_order(tmp_path):
    path = tmp_path / "zstack.properties"
    path.write_text("# my MN\nport=8080\n\nhost = 0.0.0.0\nlog_level=INFO\n")
    settings.write_properties(path, {"port": "9000", "log_level": None, "db_url": "sqlite:////x.db"})
    assert path.read_text() == "# my MN\nport=9000\n\nhost = 0.0.0.0\ndb_url=sqlite:////x.db\n"
    assert settings.read_properties(path) == {"port": "9000", "host": "0.0.0.0", "db_url": "sqlite:////x.db"}
    assert MNConfig.load(path).port == 9000


def test_read_properties_of_a_missing_file_is_empty(tmp_path):
    assert settings.read_properties(tmp_path / "nope") == {}


def test_values_are_validated_and_normalised():
    assert settings.normalise_value("port", " 8081 ") == "8081"
    assert settings.normalise_value("embedded_simulator", True) == "true"
    assert settings.normalise_value("embedded_simulator", "Yes") == "true"
    assert settings.normalise_value("agent_timeout", "5") == "5.0"
    assert settings.normalise_value("log_level", "debug") == "debug"
    for key, value, message in [("port", "eighty", "must be an integer"),
                                ("embedded_simulator", "perhaps", "true or false"),
                                ("log_level", "LOUD", "log_level"),
                                ("prot", "1", "did you mean port"),
                                ("home", "/x", "not a setting")]:
        with pytest.raises(CtlError, match=message) as exc:
            settings.normalise_value(key, value)
        assert exc.value.code == 2


def test_configure_and_show_configuration(tmp_path, capsys):
    home = str(tmp_path)
    assert ctl.main(["--home", home, "configure", "port=9001", "embedded_simulator=1"]) == 0
    assert settings.read_properties(tmp_path / "zstack.properties") == {"port": "9001", "embedded_simulator": "true"}
    assert ctl.main(["configure", "--home", home, "port="]) == 0
    assert settings.read_properties(tmp_path / "zstack.properties") == {"embedded_simulator": "true"}
    assert ctl.main(["--home", home, "configure", "nosuch=1"]) == 2
    assert ctl.main(["--home", home, "configure", "port"]) == 2
    capsys.readouterr()
    assert ctl.main(["--home", home, "show_configuration"]) == 0
    assert "embedded_simulator=true" in capsys.readouterr().out
    assert ctl.main(["--home", home, "show_configuration", "--all"]) == 0
    out = capsys.readouterr().out
    assert "port=8080" in out and f"db_url=sqlite:///{tmp_path}/zstack.db" in out


def test_flags_beat_the_file_and_travel_to_the_daemon(tmp_path):
    paths = Paths(tmp_path)
    settings.write_properties(paths.properties, {"port": "9000", "host": "0.0.0.0"})
    config = settings.load_config(paths, port=9100)
    assert (config.port, config.host, config.home) == (9100, "0.0.0.0", tmp_path)
    assert settings.client_url(config) == "http://127.0.0.1:9100"
    assert daemon._flags_of({"port": 1, "db_url": "x", "embedded_simulator": False}) == [
        "--port", "1", "--db-url", "x", "--no-simulator"]


def test_a_broken_properties_file_is_a_clear_error(tmp_path):
    (tmp_path / "zstack.properties").write_text("port=abc\n")
    with pytest.raises(CtlError, match="invalid settings"):
        settings.load_config(Paths(tmp_path))


def test_mask_url_hides_the_password():
    assert settings.mask_url("postgresql://zs:s3cret@db:5432/zstack") == "postgresql://zs:***@db:5432/zstack"
    assert settings.mask_url("sqlite:////a/b.db") == "sqlite:////a/b.db"


def test_pid_files(tmp_path):
    path = tmp_path / "mn.pid"
    assert process.read_pid(path) is None
    process.write_pid(path, 1234)
    assert process.read_pid(path) == 1234
    process.remove_pid(path, 999)  # names another process: kept
    assert path.exists()
    process.remove_pid(path, 1234)
    assert not path.exists()
    path.write_text("garbage\n")
    assert process.read_pid(path) is None


def test_dead_and_zombie_processes_are_not_alive():
    assert process.pid_alive(os.getpid())
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while process.pid_alive(proc.pid):  # exited but not reaped: a zombie
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.wait()
    assert not process.pid_alive(proc.pid)


def _fake_mn() -> subprocess.Popen:
    """A process whose command line names mn.ctl, as a daemon's does."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "mn.ctl", "run"])


def test_stale_pid_file_is_handled_by_stop_and_status(tmp_path, capsys):
    paths = Paths(tmp_path)
    other = subprocess.Popen(["sleep", "60"])
    try:
        process.write_pid(paths.pid, other.pid)  # alive, but not an MN: a recycled pid
        assert process.running_pid(paths) is None
    finally:
        other.kill()
        other.wait()
    assert ctl.main(["--home", str(tmp_path), "status"]) == 1
    assert "stale pid file" in capsys.readouterr().out
    assert ctl.main(["--home", str(tmp_path), "stop"]) == 0
    assert "stale pid file" in capsys.readouterr().out
    assert not paths.pid.exists()
    assert ctl.main(["--home", str(tmp_path), "stop"]) == 0
    assert "not running" in capsys.readouterr().out


def test_start_refuses_while_running_and_stop_terminates(tmp_path, capsys):
    paths = Paths(tmp_path)
    with socket.socket() as s:  # a port nothing answers on (not 8080, where a real MN may run)
        s.bind(("127.0.0.1", 0))
        (tmp_path / "zstack.properties").write_text(f"port={s.getsockname()[1]}\n")
    proc = _fake_mn()
    try:
        process.write_pid(paths.pid, proc.pid)
        assert process.running_pid(paths) == proc.pid
        assert ctl.main(["--home", str(tmp_path), "start", "--port", "1"]) == 1
        assert "already running" in capsys.readouterr().err
        assert ctl.main(["--home", str(tmp_path), "status"]) == 1  # alive, but no /health
        assert "Unhealthy" in capsys.readouterr().out
        assert ctl.main(["--home", str(tmp_path), "stop", "--timeout", "10"]) == 0
        assert proc.wait(timeout=10) == -15
        assert not paths.pid.exists()
    finally:
        proc.kill()
        proc.wait()


def test_a_daemon_needs_a_fixed_port(tmp_path, capsys):
    assert ctl.main(["--home", str(tmp_path), "start", "--port", "0"]) == 2
    assert "fixed port" in capsys.readouterr().err


def test_deploydb_migrates_and_saves_the_url(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'other.db'}"
    assert ctl.main(["--home", str(tmp_path), "deploydb", "--db-url", url]) == 0
    assert "database ready at revision" in capsys.readouterr().out
    assert settings.read_properties(tmp_path / "zstack.properties")["db_url"] == url
    assert ctl.main(["--home", str(tmp_path), "deploydb", "--db-url", "nosuchdialect://x"]) == 1
    assert "deploydb failed" in capsys.readouterr().err


def test_usage():
    assert ctl.main([]) == 2
    with pytest.raises(SystemExit) as exc:
        ctl.main(["frobnicate"])
    assert exc.value.code == 2
