from __future__ import annotations

from mn.catalogue.catalog import load_catalog


def test_every_rest_path_is_a_path():
    for spec in load_catalog().apis.values():
        if spec.rest is None:
            continue
        for p in (spec.rest.path, *spec.rest.optionalPaths):
            assert p == "null" or p.startswith("/"), (spec.name, p)


def test_lookup_by_name_and_message_class():
    cat = load_catalog()
    spec = cat.api("CreateVmInstance")
    assert cat.api("org.zstack.header.vm.APICreateVmInstanceMsg") is spec
    assert cat.response_class(spec) == "org.zstack.header.vm.APICreateVmInstanceEvent"
    assert cat.api("QueryDiskOffering").rest.optionalPaths == ("/disk-offerings/{uuid}",)
