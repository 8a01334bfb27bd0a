from __future__ import annotations

import pytest

from mn.catalogue.catalog import load_catalog
from mn.catalogue.params import validate
from mn.errors import ApiError


def spec(name):
    return load_catalog().api(name)


def test_required_and_defaults():
    out = validate(spec("DeleteZone"), {"uuid": "a" * 32})
    assert out["deleteMode"] == "Permissive"
    with pytest.raises(ApiError, match="missing mandatory parameter 'uuid'"):
        validate(spec("DeleteZone"), {})


def test_types_are_checked_and_named():
    with pytest.raises(ApiError, match="'cpuNum' of CreateInstanceOffering must be an integer"):
        validate(spec("CreateInstanceOffering"), {"name": "o", "cpuNum": "two", "memorySize": 1})
    with pytest.raises(ApiError, match="must be an integer, got a boolean"):
        validate(spec("CreateInstanceOffering"), {"name": "o", "cpuNum": True, "memorySize": 1})


def test_lenient_mode_accepts_strings_from_query_strings():
    out = validate(spec("GetFreeIp"), {"limit": "5"}, lenient=True)
    assert out["limit"] == 5


def test_valid_values_and_unknown_parameters():
    with pytest.raises(ApiError, match="must be one of"):
        validate(spec("ChangeZoneState"), {"uuid": "a" * 32, "stateEvent": "explode"})
    with pytest.raises(ApiError, match="unknown parameter 'colour'"):
        validate(spec("CreateZone"), {"name": "z", "colour": "red"})


def test_max_length_and_tags():
    with pytest.raises(ApiError, match="longer than 255"):
        validate(spec("CreateZone"), {"name": "x" * 256})
    out = validate(spec("CreateZone"), {"name": "z", "systemTags": ["a::b"]})
    assert out["systemTags"] == ["a::b"]
    with pytest.raises(ApiError, match="list of strings"):
        validate(spec("CreateZone"), {"name": "z", "systemTags": [1]})


def test_list_params():
    out = validate(spec("GetCpuMemoryCapacity"), {"zoneUuids": "a,b"}, lenient=True)
    assert out["zoneUuids"] == ["a", "b"]
    with pytest.raises(ApiError, match="must be a list"):
        validate(spec("GetCpuMemoryCapacity"), {"zoneUuids": "a"})


def test_resource_uuid_and_lone_surrogates_refused_before_any_job():
    """An async API's resourceUuid is checked when the call is made (its job would fail later),
    and no string that is not valid Unicode passes, in lists, maps and tags too."""
    from mn.catalogue.catalog import load_catalog

    spec = load_catalog().api("CreateZone")
    assert validate(spec, {"name": "z", "resourceUuid": "a" * 32})["resourceUuid"] == "a" * 32
    for bad in ("a" * 33, "A" * 32, "be14a61006efb5d52d9a7b9293fb3e8*"):
        with pytest.raises(ApiError, match="resourceUuid must be 32"):
            validate(spec, {"name": "z", "resourceUuid": bad})
    with pytest.raises(ApiError, match="parameter 'name' of CreateZone is not valid Unicode"):
        validate(spec, {"name": "z\ud800"})
    with pytest.raises(ApiError, match="'userTags' of CreateZone is not valid Unicode"):
        validate(spec, {"name": "z", "userTags": ["\udfff"]})
    with pytest.raises(ApiError, match="'tagUuids' of CreateZone is not valid Unicode"):
        validate(spec, {"name": "z", "tagUuids": ["ok", "\udbff"]})


def test_nul_characters_refused_before_the_database():
    """PostgreSQL cannot store or compare a NUL in text: such a string is SYS.1007, not a 503."""
    from mn.catalogue.catalog import load_catalog

    with pytest.raises(ApiError, match="parameter 'name' of CreateZone holds a NUL"):
        validate(load_catalog().api("CreateZone"), {"name": "z\x00"})
    with pytest.raises(ApiError, match="holds a NUL"):
        validate(load_catalog().api("QueryZone"), {"conditions": [{"name": "name", "op": "=", "value": "a\x00"}]})
