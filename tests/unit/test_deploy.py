"""mn/deploy.py without a host: inventory and vars generation, the agent version and archive, the
failure parsing of ansible-playbook's output, the MN's key pair, and the playbook's syntax."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from kvmagent.auth import key_id
from mn.deploy import (
    INSTALL_DIR,
    AgentSettings,
    agent_files,
    agent_plugins,
    agent_version,
    ansible_env,
    ansible_playbook,
    changed_count,
    extra_vars,
    installer_dir,
    inventory,
    parse_failure,
    write_archive,
)
from mn.errors import ApiError
from mn.ssh import SshTarget, mn_key_pair


def test_inventory_has_the_login_but_never_the_password(tmp_path):
    t = SshTarget("10.0.0.5", 2222, "admin", "s3cret", tmp_path / "key")
    inv = inventory(t)
    host = inv["all"]["hosts"]["target"]
    assert host == {"ansible_host": "10.0.0.5", "ansible_port": 2222, "ansible_user": "admin",
                    "ansible_python_interpreter": "/usr/bin/python3",
                    "ansible_ssh_private_key_file": str(tmp_path / "key")}
    assert "s3cret" not in json.dumps(inv)


def test_extra_vars_carry_settings_version_password_key_and_become(tmp_path):
    s = AgentSettings(port=7171, acceleration="tcg", libvirt=False)
    key = bytes(range(32))
    v = extra_vars(SshTarget("h", 22, "admin", "pw"), s, "abc", tmp_path / "a.tgz", "ssh-ed25519 AAAA mn", key)
    assert v == {"kvmhost_port": 7171, "kvmhost_acceleration": "tcg", "kvmhost_libvirt": False,
                 "kvmhost_install_dir": INSTALL_DIR, "kvmhost_plugins": "", "kvmhost_agent_version": "abc",
                 "kvmhost_listen_override": "", "kvmhost_listen_address": "h",
                 "kvmhost_agent_key": key.hex(), "kvmhost_agent_key_id": key_id(key),
                 "kvmhost_agent_packages": ["kvmagent", "zstack_plugins"],
                 "kvmhost_agent_archive": str(tmp_path / "a.tgz"), "kvmhost_mn_public_key": "ssh-ed25519 AAAA mn",
                 "kvmhost_become": True, "ansible_password": "pw"}
    root = extra_vars(SshTarget("h", 22, "root"), AgentSettings(listen="0.0.0.0"), "abc", tmp_path / "a.tgz", "", key)
    assert root["kvmhost_become"] is False and "ansible_password" not in root
    assert root["kvmhost_listen_address"] == "0.0.0.0"  # the explicit override (kvm/agent.listenAddress)


def test_agent_version_follows_the_listen_override():
    assert agent_version(AgentSettings(listen="0.0.0.0")) != agent_version(AgentSettings())


def test_agent_settings_name_the_plugins_that_run_on_hosts():
    refs = [ref for ref, _ in agent_plugins()]
    assert {"zstack_plugins.eip:PLUGIN", "zstack_plugins.local_storage:PLUGIN", "zstack_plugins.sftp:PLUGIN"} <= set(refs)
    assert "zstack_plugins.simulator:PLUGIN" not in refs and "zstack_plugins.kvm:PLUGIN" not in refs


def test_agent_version_follows_code_and_agent_settings_only():
    base = agent_version(AgentSettings())
    assert base == agent_version(AgentSettings()) and len(base) == 64
    assert agent_version(AgentSettings(port=7171)) != base
    assert agent_version(AgentSettings(acceleration="tcg")) != base
    assert agent_version(AgentSettings(libvirt=False)) == base  # one machine can be KVM host and SFTP BS


def test_archive_holds_the_package_without_caches(tmp_path):
    with tarfile.open(write_archive(tmp_path / "a.tgz")) as tar:
        names = tar.getnames()
    assert names == [name for name, _ in agent_files()]
    assert "kvmagent/server.py" in names and "kvmagent/protocol.py" in names
    # the plugins that run on hosts come with their agent modules, never their MN side
    assert {"zstack_plugins/__init__.py", "zstack_plugins/eip/__init__.py", "zstack_plugins/eip/agent.py",
            "zstack_plugins/eip/protocol.py", "zstack_plugins/local_storage/agent.py",
            "zstack_plugins/sftp/agent.py"} <= set(names)
    assert not [n for n in names if n.endswith(("/eip.py", "/vip.py", "/models.py", "/backup_storage.py"))]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_ansible_env_points_at_the_roles_and_disables_host_key_checking(tmp_path):
    env = ansible_env(tmp_path / "home", installer_dir(), tmp_path)
    assert env["ANSIBLE_ROLES_PATH"] == str(installer_dir() / "roles")
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "False" and env["ANSIBLE_NOCOLOR"] == "1"
    assert (Path(env["ANSIBLE_ROLES_PATH"]) / "kvmhost" / "tasks" / "main.yml").is_file()


FAILED_RUN = """
PLAY [Deploy the ZStack KVM agent] *********************************************

TASK [kvmhost : Read the installed agent version] ******************************
ok: [target]

TASK [kvmhost : Install the missing packages] **********************************
fatal: [target]: FAILED! => {"changed": false, "msg": "No package matching 'qemu-foo' is available"}

PLAY RECAP *********************************************************************
target                     : ok=5    changed=2    unreachable=0    failed=1    skipped=3    rescued=0    ignored=0
"""

RESCUED_RUN = """
TASK [kvmhost : Poll the agent's /health] **************************************
FAILED - RETRYING: [target]: Poll the agent's /health (60 retries left).
fatal: [target]: FAILED! => {"attempts": 60, "changed": false, "msg": "Status code was -1 and not [200]"}

TASK [kvmhost : Read the end of the agent's log] *******************************
ok: [target]

TASK [kvmhost : Fail with the agent's log] *************************************
fatal: [target]: FAILED! => {"changed": false, "msg": "zstack-kvmagent did not answer on port 7070 within 60 s"}
"""

COMMAND_RUN = """
TASK [kvmhost : Probe] *********************************************************
fatal: [target]: FAILED! => {"changed": false, "msg": "x"}
...ignoring

TASK [kvmhost : Wait for libvirtd to answer] ***********************************
failed: [target] (item=libvirtd) => {"changed": true, "cmd": ["virsh"], "msg": "non-zero return code", "rc": 1, "stderr": "error: failed to connect to the hypervisor"}
"""

UNREACHABLE_RUN = """
TASK [kvmhost : Create the login's ~/.ssh] *************************************
fatal: [target]: UNREACHABLE! => {"changed": false, "msg": "Failed to connect to the host via ssh: Connection refused", "unreachable": true}
"""


def test_parse_failure_names_the_task_and_its_message():
    assert parse_failure(FAILED_RUN) == ("Install the missing packages", "No package matching 'qemu-foo' is available")
    assert changed_count(FAILED_RUN) == 2


def test_parse_failure_takes_the_rescue_failure_over_the_rescued_one():
    task, msg = parse_failure(RESCUED_RUN)
    assert task == "Fail with the agent's log" and msg.startswith("zstack-kvmagent did not answer on port 7070")


def test_parse_failure_skips_ignored_failures_and_adds_stderr_and_item():
    task, msg = parse_failure(COMMAND_RUN)
    assert task == "Wait for libvirtd to answer"
    assert msg == "(item libvirtd) non-zero return code; error: failed to connect to the hypervisor"


def test_parse_failure_reports_an_unreachable_host():
    task, msg = parse_failure(UNREACHABLE_RUN)
    assert task == "Create the login's ~/.ssh"
    assert msg == "host unreachable: Failed to connect to the host via ssh: Connection refused"
    assert parse_failure("PLAY RECAP\n") == (None, None)


def test_mn_key_pair_is_made_once_and_private(tmp_path):
    key, pub = mn_key_pair(tmp_path)
    assert pub.startswith("ssh-ed25519 ") and pub.endswith("zstack-management-node")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert mn_key_pair(tmp_path) == (key, pub)
    assert key.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")


def test_the_playbook_passes_ansible_syntax_check(tmp_path):
    installer = installer_dir()
    inv = tmp_path / "inv.yml"
    inv.write_text(json.dumps({"all": {"hosts": {"target": {}}}}))
    r = subprocess.run([ansible_playbook(), "--syntax-check", "-i", str(inv), str(installer / "kvmhost.yml")],
                       capture_output=True, text=True, timeout=120,
                       env=ansible_env(tmp_path / "home", installer, tmp_path), stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().startswith("playbook:")


def test_without_ansible_the_error_names_the_installer_extra(tmp_path, monkeypatch):
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ApiError) as err:
        ansible_playbook()
    assert "pip install 'zstack[installer]'" in err.value.details and str(tmp_path / "venv") in err.value.details
