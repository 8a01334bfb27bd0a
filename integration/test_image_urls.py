"""Hostile image URLs and storage paths are refused with ZStack's SYS.1007, over RPC and REST; loopback
and local files only by the explicit global configs (issue 13, finding 5)."""

from __future__ import annotations

import pytest

from integration.agent_keys import signed_client
from integration.envs import GB, unique
from kvmagent import protocol as p
from mn.client import ClientError

INVALID = "SYS.1007"


def _fails(fn, *args, match: str, **kw) -> dict:
    with pytest.raises(ClientError) as e:
        fn(*args, **kw)
    assert e.value.code == INVALID, e.value.error
    assert match in e.value.error["details"], e.value.error
    return e.value.error


@pytest.fixture(scope="module")
def bs(api):
    inv = api.call("AddSimulatorBackupStorage", name=unique("url-bs"), url="/sim/url-bs",
                   totalCapacity=100 * GB)["inventory"]
    return inv["uuid"]


@pytest.fixture
def gconf(api):
    changed: list[str] = []

    def set_(name: str, value: str) -> None:
        api.call("UpdateGlobalConfig", category="image", name=name, value=value)
        changed.append(name)

    yield set_
    for name in changed:
        api.call("UpdateGlobalConfig", category="image", name=name, value="")


@pytest.mark.parametrize("url, why", [
    ("file:///etc/shadow", "no directory is allowed"),
    ("/etc/shadow", "no directory is allowed"),
    ("http://169.254.169.254/latest/meta-data/iam/", "metadata"),
    ("http://[fe80::1]/a.qcow2", "link-local"),
    ("http://127.0.0.1:8080/a.qcow2", "loopback"),
    ("http://localhost/a.qcow2", "loopback"),
    ("http://0.0.0.0/a.qcow2", "unspecified"),
    ("gopher://127.0.0.1:6379/_FLUSHALL", "scheme"),
    ("ftp://example.org/a.qcow2", "scheme"),
    ("data:application/octet-stream,abc", "scheme"),
])
def test_add_image_refuses_hostile_urls(api, bs, url, why):
    name = unique("hostile")
    err = _fails(api.call, "AddImage", name=name, url=url, backupStorageUuids=[bs], format="qcow2", match=why)
    assert "parameter 'url' of AddImage is refused" in err["details"]
    assert api.query("QueryImage", f"name={name}") == []
    status, body = api.rest("POST", "/images", {"params": {"name": name, "url": url, "backupStorageUuids": [bs],
                                                           "format": "qcow2"}})
    assert 400 <= status < 500 and body["error"]["code"] == INVALID and why in body["error"]["details"]


def test_loopback_and_local_files_by_explicit_opt_in(api, bs, gconf):
    _fails(api.call, "UpdateGlobalConfig", category="image", name="allowedFileDirectories", value="images/",
           match="invalid value")
    gconf("allowedUrlHosts", "127.0.0.0/8")
    inv = api.call("AddImage", name=unique("lo"), url=f"http://127.0.0.1:8080/a.qcow2?size={GB}",
                   backupStorageUuids=[bs], format="qcow2")["inventory"]
    assert inv["status"] == "Ready"
    _fails(api.call, "AddImage", name=unique("md"), url="http://169.254.169.254/", backupStorageUuids=[bs],
           match="metadata")  # the opt-in names loopback only
    gconf("allowedFileDirectories", "/srv/images")
    inv = api.call("AddImage", name=unique("file"), url="file:///srv/images/a.qcow2", backupStorageUuids=[bs],
                   format="qcow2")["inventory"]
    assert inv["status"] == "Ready"
    for bad in ("file:///srv/images/../../etc/shadow", "/srv/imagesX/a.qcow2", "file:///etc/shadow"):
        _fails(api.call, "AddImage", name=unique("file"), url=bad, backupStorageUuids=[bs], format="qcow2",
               match="allowed directory" if ".." not in bad else "'..' components")


def test_agent_side_refuses_without_the_policy(sim, bs):
    """The simulated backup storage checks the command's own policy, as an agent does."""
    client = signed_client(timeout=10)
    for url, why in (("file:///etc/shadow", "no directory is allowed"), ("http://169.254.169.254/", "metadata"),
                     ("gopher://x/", "scheme")):
        with pytest.raises(Exception, match=why):
            client.send(f"{sim.url}/backup-storage/{bs}",
                        p.DownloadImageCmd(bsUuid=bs, imageUuid=unique("i").replace("-", ""), url=url))


@pytest.mark.parametrize("api_name, extra", [
    ("AddSimulatorBackupStorage", {}),
    ("AddSimulatorPrimaryStorage", {"totalCapacity": GB, "availableCapacity": GB}),
    ("AddLocalPrimaryStorage", {}),
])
@pytest.mark.parametrize("url", ["../../", "relative/dir", "/a/../b", "/a//b", "/a/./b", "/a/b/"])
def test_storage_paths_must_be_absolute_and_normalised(api, api_name, extra, url):
    if "PrimaryStorage" in api_name:
        extra = {**extra, "zoneUuid": api.call("CreateZone", name=unique("z"))["inventory"]["uuid"]}
    name = unique("path")
    _fails(api.call, api_name, name=name, url=url, **extra, match="absolute")
    assert api.query("QueryBackupStorage" if "Backup" in api_name else "QueryPrimaryStorage", f"name={name}") == []


def test_sftp_storage_path_refused(api):
    _fails(api.call, "AddSftpBackupStorage", name=unique("sftp"), hostname="127.0.0.1", username="root",
           password="password", url="/var/lib/../../etc", match="normalised absolute")
