"""Pure helpers of the image, tag and global-config services."""

from __future__ import annotations

import pytest

from mn.api.registry import Msg
from mn.errors import ApiError
from mn.globalconfig import DEFS
from mn.models import Host, L2Network, VmInstance, Zone
from mn.services import globalconfig_api, image, tag


@pytest.mark.parametrize(("url", "media", "fmt"), [
    ("http://x/a.qcow2", None, "qcow2"),
    ("http://x/a", None, "qcow2"),
    ("http://x/cd.ISO?size=10", None, "iso"),
    ("http://x/disk.raw#frag", None, "raw"),
    ("/local/path/disk.img", None, "raw"),
    ("http://x/anything", "ISO", "iso"),
])
def test_default_format(url, media, fmt):
    assert image.default_format(url, media) == fmt


def test_image_fields_follow_zstack_defaults():
    f = image.image_fields(Msg(name="n", url="http://x/cd.iso"))
    assert (f["format"], f["mediaType"], f["platform"], f["architecture"], f["virtio"], f["type"]) == \
        ("iso", "ISO", "Linux", "x86_64", True, "zstack")
    f = image.image_fields(Msg(name="n", url="http://x/a.qcow2", mediaType="DataVolumeTemplate", virtio=False,
                               architecture="aarch64"))
    assert (f["format"], f["mediaType"], f["virtio"], f["architecture"]) == \
        ("qcow2", "DataVolumeTemplate", False, "aarch64")


def test_image_deletion_policy_is_declared():
    d = DEFS[("image", "deletionPolicy")]
    assert d.default == "Delay" and set(d.valid_values) == {"Direct", "Delay", "Never"}


def test_resource_types_map_vo_names_to_models():
    assert tag.model_of("ZoneVO") is Zone
    assert tag.model_of("VmInstanceVO") is VmInstance
    assert tag.model_of("KVMHostVO") is Host and tag.model_of("L2VlanNetworkVO") is L2Network
    assert "SystemTagVO" not in tag.resource_types() and "SessionVO" not in tag.resource_types()
    with pytest.raises(ApiError) as e:
        tag.model_of("ZoneInventory")
    assert "ZoneVO" in e.value.details


@pytest.mark.parametrize("t", ["k::v", "staticIp::l3::10.0.0.1", "hostname::web-1"])
def test_system_tags_of_the_form_key_value(t):
    tag.check_system_tag(t)


@pytest.mark.parametrize("t", ["plain", "::v", "k::", " ::v", "k:v"])
def test_system_tags_not_of_the_form_key_value(t):
    with pytest.raises(ApiError):
        tag.check_system_tag(t)


def test_config_def_lookup_errors_list_valid_names():
    assert globalconfig_api.config_def("vm", "deletionPolicy") is DEFS[("vm", "deletionPolicy")]
    with pytest.raises(ApiError) as e:
        globalconfig_api.config_def("vm", "nope")
    assert "deletionPolicy" in e.value.details and "expungePeriod" in e.value.details
    with pytest.raises(ApiError) as e:
        globalconfig_api.config_def("nope", "x")
    assert "vm" in e.value.details and "image" in e.value.details


def test_config_bounds_of_a_positive_number():
    assert globalconfig_api._bounds(DEFS[("vm", "expungePeriod")])["numberGreaterThan"] == 0
    assert globalconfig_api._bounds(DEFS[("vm", "deletionPolicy")])["numberGreaterThan"] is None
