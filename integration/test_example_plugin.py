"""Plugins both ways, as an operator sees them: the example plugin (tests/plugins/example) installed
with pip, driven over RPC, REST and zstack-cli, then uninstalled, after which the MN still starts on
the same database and answers its APIs with SYS.1014; and an in-tree plugin disabled by setting.

pip works on a throwaway virtualenv that sees this checkout and the test venv's packages (a .pth
line), never on the test venv itself; the MNs are `python -m mn.server` processes of that venv with
their own embedded simulator, which loads the installed plugins too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

from integration.conftest import free_port, make_db_url, wait_ready
from mn.client import ClientError, ZStackClient

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "tests" / "plugins" / "example"
SCRIPT = "<hook><domain-xml-patch/></hook>"


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plugin-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    site = next(path.glob("lib/python3*/site-packages"))
    (site / "zz_checkout_and_test_venv.pth").write_text(f"{ROOT}\n{sysconfig.get_paths()['purelib']}\n")
    return path


def pip(venv: Path, *args: str) -> str:
    proc = subprocess.run([str(venv / "bin/python"), "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, cwd=venv)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


class Node:
    """An MN process of a venv, on one home and database, restartable."""

    def __init__(self, venv: Path, home: Path, db_url: str, **settings: str) -> None:
        self.venv, self.home, self.db_url, self.settings = venv, home, db_url, settings
        self.port, self.sim_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> ZStackClient:
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in self.settings.items()]
        log = open(self.home / "mn.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [str(self.venv / "bin/python"), "-m", "mn.server", "--home", str(self.home), "--db-url", self.db_url,
             "--host", "127.0.0.1", "--port", str(self.port), "--embedded-simulator", "true",
             "--simulator-port", str(self.sim_port), "--processes", "1", "--log-level", "WARNING", *flags],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=_env(self.home))
        wait_ready(self.url, self.proc, timeout=90)
        c = ZStackClient(self.url)
        c.login()
        return c

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def cli(self, *args: str) -> Any:
        proc = subprocess.run([str(self.venv / "bin/python"), "-m", "mn.ops.cli", "-H", "127.0.0.1", "-p",
                               str(self.port), "--json-compact", *args],
                              capture_output=True, text=True, env=_env(self.home), timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return json.loads(proc.stdout)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZSTACK_") and k != "VIRTUAL_ENV"}
    env["HOME"] = str(home / "user")
    return env


@pytest.fixture
def node(venv: Path, tmp_path: Path) -> Iterator[Node]:
    db_url, cleanup = make_db_url(tmp_path)
    n = Node(venv, tmp_path, db_url)
    yield n
    n.stop()
    with contextlib.suppress(AssertionError):  # the test may have uninstalled it already
        pip(venv, "uninstall", "--yes", "zstack-example-plugin")
    cleanup()


def _simulated_host(api: ZStackClient) -> dict[str, Any]:
    zone = api.call("CreateZone", name="plugin-zone")["inventory"]
    cluster = api.call("CreateCluster", name="plugin-cluster", zoneUuid=zone["uuid"],
                       hypervisorType="Simulator")["inventory"]
    return api.call("AddSimulatorHost", name="plugin-host", managementIp="192.168.77.10", clusterUuid=cluster["uuid"],
                    cpuCapacity=8, memoryCapacity=16 << 30)["inventory"]


def _code(exc: pytest.ExceptionInfo) -> str:
    return exc.value.code


def test_example_plugin_installed_works_everywhere_and_uninstalled_answers_1014(node: Node) -> None:
    pip(node.venv, "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet", str(EXAMPLE))
    api = node.start()
    assert "example" in ZStackClient(node.url).http.request("GET", f"{node.url}/health").json()["plugins"]
    host = _simulated_host(api)
    tag = f"hostUuid::{host['uuid']}"

    # RPC: created by its flow, checked on the simulated host by the plugin's own agent command.
    hook = api.call("CreateVmUserDefinedXmlHookScript", name="hook-1", hookScript=SCRIPT, systemTags=[tag])["inventory"]
    assert hook["libvirtVersion"] == "8.0.0-simulated" and hook["hookScript"] == SCRIPT
    assert set(hook) == {"uuid", "name", "description", "type", "hookScript", "libvirtVersion", "createDate",
                         "lastOpDate"}  # exactly the catalogue's XmlHookInventory
    with pytest.raises(ClientError) as e:  # its check: the host tag is required
        api.call("CreateVmUserDefinedXmlHookScript", name="no-host", hookScript=SCRIPT)
    assert _code(e) == "SYS.1007"
    with pytest.raises(ClientError) as e:  # the host refuses it: the flow rolls the row back
        api.call("CreateVmUserDefinedXmlHookScript", name="refused", hookScript="<fail/>", systemTags=[tag])
    assert "refuses" in e.value.error["details"]
    assert api.query("QueryVmUserDefinedXmlHookScript", "name=refused") == []

    # Its global config, with its category.
    api.call("UpdateGlobalConfig", category="example", name="xmlHook.maxLength", value="10")
    with pytest.raises(ClientError) as e:
        api.call("CreateVmUserDefinedXmlHookScript", name="long", hookScript=SCRIPT, systemTags=[tag])
    assert _code(e) == "SYS.1007" and "maxLength" in e.value.error["details"]
    api.call("UpdateGlobalConfig", category="example", name="xmlHook.maxLength", value="65536")

    # REST: the catalogue's route for the update.
    status, body = api.rest("PUT", "/vm-instances/xml-hook-script",
                            {"updateVmUserDefinedXmlHookScript": {"uuid": hook["uuid"], "description": "by REST"}})
    assert status == 200, body
    assert body["inventory"]["description"] == "by REST"
    status, body = api.rest("GET", "/vm-instances/xml-hook-script", fields={"q": "name=hook-1"})
    assert status == 200 and [h["uuid"] for h in body["inventories"]] == [hook["uuid"]]

    # zstack-cli: the query, with a condition on the plugin's own field.
    node.cli("LogInByAccount", "accountName=admin", "password=password")
    out = node.cli("QueryVmUserDefinedXmlHookScript", "libvirtVersion=8.0.0-simulated", "fields=uuid,name,description")
    assert out["inventories"] == [{"uuid": hook["uuid"], "name": "hook-1", "description": "by REST"}]
    assert node.cli("QueryVmUserDefinedXmlHookScript", "name=hook-1", "count=true")["total"] == 1

    # The cascade relation: the host's scripts go with it, or keep it.
    second = api.call("CreateVmUserDefinedXmlHookScript", name="hook-2", hookScript=SCRIPT, systemTags=[tag])["inventory"]
    api.call("ExpungeVmUserDefinedXmlHookScript", uuid=second["uuid"])
    assert api.query("QueryVmUserDefinedXmlHookScript", f"uuid={second['uuid']}") == []
    with pytest.raises(ClientError) as e:
        api.call("DeleteHost", uuid=host["uuid"], deleteMode="Enforcing")
    assert _code(e) == "SYS.1004" and "XmlHookVO" in e.value.error["details"]
    api.call("DeleteHost", uuid=host["uuid"])
    assert api.query("QueryVmUserDefinedXmlHookScript") == []

    # Uninstalled: the MN starts on the same database; the plugin's APIs answer SYS.1014, its rows stay.
    api.call("CreateVmUserDefinedXmlHookScript", name="kept", hookScript=SCRIPT,
             systemTags=[f"hostUuid::{_simulated_host_again(api)}"])
    node.stop()
    pip(node.venv, "uninstall", "--yes", "zstack-example-plugin")
    api = node.start()
    for name, params in (("CreateVmUserDefinedXmlHookScript", {"name": "x", "hookScript": SCRIPT}),
                         ("UpdateVmUserDefinedXmlHookScript", {"uuid": hook["uuid"]}),
                         ("ExpungeVmUserDefinedXmlHookScript", {"uuid": hook["uuid"]}),
                         ("QueryVmUserDefinedXmlHookScript", {})):
        with pytest.raises(ClientError) as e:
            api.call(name, **params)
        assert _code(e) == "SYS.1014", (name, e.value.error)
    status, body = api.rest("GET", "/vm-instances/xml-hook-script")
    assert status == 501 and body["error"]["code"] == "SYS.1014"
    assert api.query("QueryHost", "name=plugin-host-2")  # the rest of the MN is as it was
    eng = create_engine(node.db_url, poolclass=NullPool)
    try:
        assert {"example_xml_hook", "alembic_version_example"} <= set(inspect(eng).get_table_names())
        with eng.connect() as c:
            assert c.execute(text("SELECT name FROM example_xml_hook")).scalars().all() == ["kept"]
    finally:
        eng.dispose()


def _simulated_host_again(api: ZStackClient) -> str:
    cluster = api.query("QueryCluster", "name=plugin-cluster")[0]
    return api.call("AddSimulatorHost", name="plugin-host-2", managementIp="192.168.77.11",
                    clusterUuid=cluster["uuid"], cpuCapacity=8, memoryCapacity=16 << 30)["inventory"]["uuid"]


def test_an_in_tree_plugin_disabled_by_setting_answers_1014_and_the_rest_works(node: Node) -> None:
    node.settings["disabled_plugins"] = "eip"
    api = node.start()
    for name, params in (("CreateVip", {"name": "v", "l3NetworkUuid": "0" * 32}), ("QueryEip", {}),
                         ("QueryVip", {})):
        with pytest.raises(ClientError) as e:
            api.call(name, **params)
        assert _code(e) == "SYS.1014", (name, e.value.error)
    host = _simulated_host(api)
    assert api.query("QueryHost", f"uuid={host['uuid']}")[0]["status"] == "Connected"
    health = ZStackClient(node.url).http.request("GET", f"{node.url}/health").json()
    assert health["status"] == "ok" and "eip" not in health["plugins"] and "simulator" in health["plugins"]
