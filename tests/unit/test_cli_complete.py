"""zstack-cli's Tab completion, derived from the API catalogue and the query compiler's tables."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mn.catalogue.catalog import load_catalog
from mn.ops.cli import Shell, complete, describe
from mn.query import TARGETS

CAT = load_catalog()


def test_api_names_and_builtins():
    names = complete(CAT, [], "QueryVmIn")
    assert "QueryVmInstance" in names and all(n.startswith("QueryVmIn") for n in names)
    assert complete(CAT, [], "hel") == ["help"]
    assert complete(CAT, [], "NoSuch") == []


def test_top_level_of_a_query_fields_expansions_tags_and_parameters():
    options = set(complete(CAT, ["QueryVmInstance"], ""))
    assert {"name=", "state=", "hostUuid=", "memorySize="} <= options            # queryable fields
    assert {"vmNics.", "allVolumes.", "zone.", "host.", "rootVolume."} <= options  # expansions
    assert {"__systemTag__=", "__userTag__="} <= options                         # tag pseudo-fields
    assert {"fields=", "start=", "limit=", "count=", "replyWithCount=", "sortBy=", "sortDirection=",
            "groupBy=", "filterName="} <= options                               # query parameters
    assert "vmNics=" not in options and "conditions=" not in options            # lists are expansions


def test_prefixes_narrow_the_choices():
    assert complete(CAT, ["QueryVmInstance"], "vmN") == ["vmNics."]
    assert complete(CAT, ["QueryVmInstance"], "__u") == ["__userTag__="]
    assert complete(CAT, ["QueryHost"], "vmI") == ["vmInstance."]


def test_used_query_parameters_are_not_offered_again_but_conditions_are():
    options = complete(CAT, ["QueryZone", "limit=10", "name=a"], "")
    assert "limit=" not in options and "name=" in options


def test_one_level_down_the_expanded_inventory():
    options = complete(CAT, ["QueryVmInstance"], "vmNics.")
    assert {"vmNics.ip=", "vmNics.mac=", "vmNics.l3NetworkUuid=", "vmNics.l3Network.",
            "vmNics.vmInstance.", "vmNics.__systemTag__=", "vmNics.__userTag__="} <= set(options)
    assert all(o.startswith("vmNics.") for o in options)
    assert "vmNics.usedIps=" not in options  # a list field


def test_two_and_more_levels_down():
    options = set(complete(CAT, ["QueryVmInstance"], "vmNics.l3Network."))
    assert {"vmNics.l3Network.name=", "vmNics.l3Network.l2NetworkUuid=", "vmNics.l3Network.zone.",
            "vmNics.l3Network.l2Network.", "vmNics.l3Network.__userTag__="} <= options
    assert complete(CAT, ["QueryVmInstance"], "vmNics.l3Network.l2Network.zone.na") == [
        "vmNics.l3Network.l2Network.zone.name="]
    assert "vmInstance.allVolumes.size=" in complete(CAT, ["QueryHost"], "vmInstance.allVolumes.s")


def test_expansions_without_a_table_on_this_mn_are_not_offered():
    options = complete(CAT, ["QueryVmInstance"], "vmNics.")
    for exp in CAT.inventories["VmNicInventory"].expanded:
        offered = f"vmNics.{exp['field']}." in options
        assert offered == (exp["inventory"] in TARGETS), exp  # every VmNic key is a column here
    assert ("vmCdRoms." in complete(CAT, ["QueryVmInstance"], "")) == ("VmCdRomInventory" in TARGETS)
    if "EipInventory" not in TARGETS:  # the README's example of a missing network service
        assert "vmNics.eip." not in options and complete(CAT, ["QueryVmInstance"], "vmNics.eip.") == []
    assert complete(CAT, ["QueryVmInstance"], "nosuch.") == []


def test_every_offered_expansion_leads_somewhere_queryable():
    for option in complete(CAT, ["QueryVmInstance"], ""):
        if option.endswith("."):
            assert complete(CAT, ["QueryVmInstance"], option), option


@pytest.mark.parametrize(("words", "text", "expected"), [
    (["ChangeClusterState", "uuid=x"], "stateEvent=", ["stateEvent=disable", "stateEvent=enable"]),
    (["ChangeClusterState"], "stateEvent=e", ["stateEvent=enable"]),
    (["CreateCluster"], "hypervisorType=Si", ["hypervisorType=Simulator"]),
    (["QueryZone"], "sortDirection=", ["sortDirection=asc", "sortDirection=desc"]),
    (["CreateZone"], "name=", []),
    (["QueryZone"], "name=", []),
])
def test_values_from_valid_values(words, text, expected):
    assert complete(CAT, words, text) == expected


def test_sort_by_and_fields_complete_field_names():
    assert "sortBy=name" in complete(CAT, ["QueryZone"], "sortBy=")
    assert complete(CAT, ["QueryZone"], "fields=uuid,na") == ["fields=uuid,name"]
    assert "fields=__userTag__" not in complete(CAT, ["QueryZone"], "fields=")


def test_the_shell_hooks_complete_whole_tokens():
    shell = Shell(SimpleNamespace(catalog=CAT, account=None))  # type: ignore[arg-type]
    line = "QueryVmInstance name=a vmNics.l3Network.zo"
    assert shell.completedefault("vmNics.l3Network.zo", line, line.rindex(" ") + 1, len(line)) == [
        "vmNics.l3Network.zone.", "vmNics.l3Network.zoneUuid="]
    assert "QueryVmInstance" in shell.completenames("QueryVm")


def test_help_of_a_query_names_the_expansions_this_mn_can_follow():
    text = describe(CAT.api("QueryVmInstance"), CAT)
    assert "through expansions: zone, cluster, host" in text and "vmCdRoms," not in text.split("through")[1]
