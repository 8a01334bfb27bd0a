"""zstack-cli's pure parts: typing arguments by the catalogue, query conditions, completion."""

from __future__ import annotations

import hashlib

import pytest

from mn.catalogue.catalog import ParamSpec, load_catalog
from mn.catalogue.conditions import parse_condition
from mn.errors import ApiError
from mn.ops.cli import SessionStore, UsageError, complete, describe, parse_command, parse_value

CAT = load_catalog()


def test_scalars_are_typed_by_the_parameter_type():
    assert parse_value(ParamSpec("cpuNum", "int"), "cpuNum", "4") == 4
    assert parse_value(ParamSpec("memorySize", "long"), "memorySize", "-2147483649") == -2147483649
    assert parse_value(ParamSpec("ratio", "double"), "ratio", "1.5") == 1.5
    assert parse_value(ParamSpec("isDefault", "boolean"), "isDefault", "TRUE") is True
    assert parse_value(ParamSpec("isDefault", "boolean"), "isDefault", "false") is False
    assert parse_value(ParamSpec("name", "string"), "name", "042") == "042"


def test_values_that_do_not_fit_stay_strings_for_the_mn_to_reject():
    assert parse_value(ParamSpec("cpuNum", "int"), "cpuNum", "four") == "four"
    assert parse_value(ParamSpec("isDefault", "boolean"), "isDefault", "maybe") == "maybe"


def test_lists_split_on_commas_and_type_their_elements():
    p = ParamSpec("dataDiskSizes", "list", elementType="long")
    assert parse_value(p, p.name, "1024,2048") == [1024, 2048]
    assert parse_value(ParamSpec("l3NetworkUuids", "list"), "l3NetworkUuids", "a,b,,c") == ["a", "b", "c"]
    assert parse_value(ParamSpec("l3NetworkUuids", "list"), "l3NetworkUuids", "") == []
    assert parse_value(ParamSpec("l3NetworkUuids", "list"), "l3NetworkUuids", '["a,1", "b"]') == ["a,1", "b"]


def test_maps_and_objects_take_json():
    assert parse_value(ParamSpec("clientInfo", "map"), "clientInfo", '{"a": 1}') == {"a": 1}
    with pytest.raises(UsageError, match="clientInfo"):
        parse_value(ParamSpec("clientInfo", "map"), "clientInfo", "a:1")
    with pytest.raises(UsageError, match="not valid JSON"):
        parse_value(ParamSpec("clientInfo", "map"), "clientInfo", "{a")
    assert parse_value(ParamSpec("o", "object"), "o", '[{"x": 1}]') == [{"x": 1}]
    assert parse_value(ParamSpec("o", "object"), "o", "plain") == "plain"


def test_system_tags_are_comma_separated():
    assert parse_value(None, "systemTags", "a::b,c::d") == ["a::b", "c::d"]
    assert parse_value(None, "userTags", "web") == ["web"]


def test_a_create_command_gets_typed_parameters():
    cmd = parse_command(CAT, ["CreateZone", "name=z 1", "isDefault=true", "tagUuids=t1,t2",
                              "systemTags=k::v", "description="])
    assert cmd.spec.name == "CreateZone"
    assert cmd.params == {"name": "z 1", "isDefault": True, "tagUuids": ["t1", "t2"],
                          "systemTags": ["k::v"], "description": ""}


def test_the_message_class_name_is_accepted_too():
    assert parse_command(CAT, ["org.zstack.header.zone.APICreateZoneMsg", "name=z"]).spec.name == "CreateZone"


def test_login_password_is_sent_as_sha512_hex():
    cmd = parse_command(CAT, ["LogInByAccount", "accountName=admin", "password=password"])
    assert cmd.params["password"] == hashlib.sha512(b"password").hexdigest()
    assert cmd.params["accountName"] == "admin"


def test_query_arguments_split_into_conditions_and_query_parameters():
    cmd = parse_command(CAT, ["QueryZone", "name=z1", "state!=Disabled", "uuid?=a,b", "name~=z%",
                              "description is null", "count=true", "limit=10", "start=5", "sortBy=name",
                              "sortDirection=desc", "fields=uuid,name", "replyWithCount=true"])
    assert cmd.params["conditions"] == [
        {"name": "name", "op": "=", "value": "z1"},
        {"name": "state", "op": "!=", "value": "Disabled"},
        {"name": "uuid", "op": "in", "value": "a,b"},
        {"name": "name", "op": "like", "value": "z%"},
        {"name": "description", "op": "is null", "value": None},
    ]
    assert {k: v for k, v in cmd.params.items() if k != "conditions"} == {
        "count": True, "limit": 10, "start": 5, "sortBy": "name", "sortDirection": "desc",
        "fields": ["uuid", "name"], "replyWithCount": True}


def test_a_query_without_arguments_has_no_conditions():
    assert parse_command(CAT, ["QueryZone"]).params == {"conditions": []}


@pytest.mark.parametrize(("text", "expected"), [
    ("cpuNum>=2", {"name": "cpuNum", "op": ">=", "value": "2"}),
    ("cpuNum<2", {"name": "cpuNum", "op": "<", "value": "2"}),
    ("uuid!?=a,b", {"name": "uuid", "op": "not in", "value": "a,b"}),
    ("name!~=z%", {"name": "name", "op": "not like", "value": "z%"}),
    ("name=a=b", {"name": "name", "op": "=", "value": "a=b"}),
    ("name=null", {"name": "name", "op": "is null", "value": None}),
    ("name!=null", {"name": "name", "op": "is not null", "value": None}),
    ("vmNics.l3Network.name=l3", {"name": "vmNics.l3Network.name", "op": "=", "value": "l3"}),
    ("description is not null", {"name": "description", "op": "is not null", "value": None}),
])
def test_condition_operators(text, expected):
    assert parse_condition(text) == expected


def test_a_condition_without_operator_is_an_invalid_argument():
    with pytest.raises(ApiError) as exc:
        parse_condition("justaname")
    assert exc.value.code == "SYS.1007"


@pytest.mark.parametrize(("tokens", "message"), [
    ([], "no API name"),
    (["CreateZon", "name=x"], "did you mean CreateZone"),
    (["CreateZone", "name"], "expected key=value"),
    (["CreateZone", "=x"], "expected key=value"),
    (["QueryZone", "oops"], "cannot parse the query condition"),
])
def test_usage_errors(tokens, message):
    with pytest.raises(UsageError, match=message):
        parse_command(CAT, tokens)


def test_completion_of_api_names_and_parameters():
    assert "CreateZone" in complete(CAT, [], "CreateZ")
    assert all(n.startswith("Query") for n in complete(CAT, [], "Query"))
    assert complete(CAT, [], "ex") == ["exit"]
    assert complete(CAT, ["CreateZone"], "na") == ["name="]
    assert "systemTags=" in complete(CAT, ["CreateZone"], "")
    assert "name=" not in complete(CAT, ["CreateZone", "name=z"], "")
    assert complete(CAT, ["CreateZone"], "name=") == []
    assert complete(CAT, ["NoSuchApi"], "") == []


def test_completion_of_query_fields_parameters_and_expansions():
    options = complete(CAT, ["QueryZone"], "")
    assert {"name=", "uuid=", "limit=", "count=", "fields=", "cluster."} <= set(options)
    assert "conditions=" not in options


def test_describe_lists_parameters():
    text = describe(CAT.api("CreateZone"))
    assert "name (required): string" in text and "tagUuids: list" in text


def test_session_store_keeps_one_session_per_mn(tmp_path):
    store = SessionStore(tmp_path / "cli" / "session")
    assert store.get("h:1") is None
    store.save("h:1", "s1", "admin")
    store.save("h:2", "s2", "alice")
    assert store.get("h:1") == {"uuid": "s1", "account": "admin"}
    assert (tmp_path / "cli" / "session").stat().st_mode & 0o777 == 0o600
    store.drop("h:1")
    assert store.get("h:1") is None and store.get("h:2")["account"] == "alice"
    (tmp_path / "cli" / "session").write_text("not json")
    assert store.get("h:2") is None


# ---- query syntax as ZStack's CLI -------------------------------------------------------------


def _conds(*tokens: str) -> list[dict]:
    return parse_command(CAT, ["QueryVmInstance", *tokens]).params["conditions"]


def test_readme_query_through_an_eip_and_a_zone_parses_into_two_conditions():
    cmd = parse_command(CAT, ["QueryVmInstance", "vmNics.eip.guestIp=16.16.16.16", "zone.name=west-coast"])
    assert cmd.spec.name == "QueryVmInstance"
    assert cmd.params == {"conditions": [
        {"name": "vmNics.eip.guestIp", "op": "=", "value": "16.16.16.16"},
        {"name": "zone.name", "op": "=", "value": "west-coast"},
    ]}


def test_readme_host_query_splits_parameters_from_conditions():
    cmd = parse_command(CAT, ["QueryHost", "fields=name,uuid,managementIp", "hypervisorType=KVM",
                              "vmInstance.allVolumes.size>=549755813888000", "vmInstance.state=Running",
                              "start=0", "limit=10"])
    assert cmd.params == {
        "fields": ["name", "uuid", "managementIp"], "start": 0, "limit": 10,
        "conditions": [
            {"name": "hypervisorType", "op": "=", "value": "KVM"},
            {"name": "vmInstance.allVolumes.size", "op": ">=", "value": "549755813888000"},
            {"name": "vmInstance.state", "op": "=", "value": "Running"},
        ]}


@pytest.mark.parametrize(("token", "op", "value"), [
    ("cpuNum=2", "=", "2"), ("cpuNum!=2", "!=", "2"), ("cpuNum>2", ">", "2"), ("cpuNum>=2", ">=", "2"),
    ("cpuNum<2", "<", "2"), ("cpuNum<=2", "<=", "2"), ("cpuNum?=1,2", "in", "1,2"),
    ("cpuNum!?=1,2", "not in", "1,2"), ("cpuNum~=1%", "like", "1%"), ("cpuNum!~=1%", "not like", "1%"),
    ("cpuNum=null", "is null", None), ("cpuNum!=null", "is not null", None),
    ("cpuNum is null", "is null", None), ("cpuNum is not null", "is not null", None),
])
def test_every_operator_of_zstacks_cli(token, op, value):
    assert _conds(token) == [{"name": "cpuNum", "op": op, "value": value}]


def test_is_null_typed_as_separate_words_is_one_condition():
    assert _conds("description", "is", "null", "name", "is", "not", "null", "state=Running") == [
        {"name": "description", "op": "is null", "value": None},
        {"name": "name", "op": "is not null", "value": None},
        {"name": "state", "op": "=", "value": "Running"},
    ]


def test_values_keep_their_text():
    assert _conds("memorySize>=08", "name=a=b", "name= spaced ", "description=") == [
        {"name": "memorySize", "op": ">=", "value": "08"},
        {"name": "name", "op": "=", "value": "a=b"},
        {"name": "name", "op": "=", "value": " spaced "},
        {"name": "description", "op": "=", "value": ""},
    ]


def test_nested_paths_through_expansions_to_any_depth():
    assert _conds("vmNics.l3Network.l2Network.zone.name=z", "allVolumes.size>10") == [
        {"name": "vmNics.l3Network.l2Network.zone.name", "op": "=", "value": "z"},
        {"name": "allVolumes.size", "op": ">", "value": "10"},
    ]


def test_tag_conditions():
    assert _conds("__systemTag__=ha::NeverStop", "__userTag__~=web%", "__userTag__!?=a,b",
                  "vmNics.l3Network.__systemTag__=x") == [
        {"name": "__systemTag__", "op": "=", "value": "ha::NeverStop"},
        {"name": "__userTag__", "op": "like", "value": "web%"},
        {"name": "__userTag__", "op": "not in", "value": "a,b"},
        {"name": "vmNics.l3Network.__systemTag__", "op": "=", "value": "x"},
    ]


def test_every_query_parameter_is_a_parameter_not_a_condition():
    cmd = parse_command(CAT, ["QueryVmInstance", "fields=uuid", "start=1", "limit=2", "count=false",
                              "replyWithCount=true", "sortBy=name", "sortDirection=asc", "groupBy=state",
                              "filterName=f", "name=x"])
    assert cmd.params == {"fields": ["uuid"], "start": 1, "limit": 2, "count": False,
                          "replyWithCount": True, "sortBy": "name", "sortDirection": "asc",
                          "groupBy": "state", "filterName": "f",
                          "conditions": [{"name": "name", "op": "=", "value": "x"}]}


def test_a_query_parameter_with_another_operator_is_a_condition():
    assert _conds("limit>5") == [{"name": "limit", "op": ">", "value": "5"}]


@pytest.mark.parametrize(("token", "message"), [
    ("oops", "cannot parse the query condition 'oops'"),
    ("=x", "expected <field><op><value>"),
    ("!=x", "cannot parse the query condition"),
    ("zone..name=x", "cannot parse the query condition"),
    ("zone.=x", "cannot parse the query condition"),
    (".name=x", "cannot parse the query condition"),
    ("na me=x", "cannot parse the query condition"),
    ("1name=x", "cannot parse the query condition"),
    ("is null", "cannot parse the query condition"),
    ("limit=ten", "limit takes an integer"),
    ("start=-", "start takes an integer"),
    ("count=yes", "count takes true or false"),
    ("sortDirection=up", "sortDirection takes one of asc, desc"),
])
def test_malformed_query_tokens_are_usage_errors(token, message):
    with pytest.raises(UsageError, match=message):
        parse_command(CAT, ["QueryVmInstance", token])


def test_history_lines_lose_their_passwords():
    from mn.ops.cli import scrub_secrets

    assert scrub_secrets("LogInByAccount accountName=admin password=password") == "LogInByAccount accountName=admin"
    assert scrub_secrets("UpdateUser uuid=x password='a b' oldPassword=\"c d\" name=n") == "UpdateUser uuid=x name=n"
    assert scrub_secrets("LogInByUser 'password=a b' userName=u") == "LogInByUser userName=u"
    assert scrub_secrets("AddKVMHost sshPassword=x name=h") == "AddKVMHost name=h"
    assert scrub_secrets("X password=\"unbalanced") == "X"
    for kept in ("QueryZone name=passwordless", 'CreateZone name="a  b"', "QueryUser"):
        assert scrub_secrets(kept) == kept


def test_a_left_out_password_is_asked_for_and_hashed():
    asked = []

    def ask(api, confirm):
        asked.append((api, confirm))
        return "pw"

    cat = load_catalog()
    cmd = parse_command(cat, ["LogInByUser", "accountName=a", "userName=u"], ask=ask)
    assert cmd.params["password"] == hashlib.sha512(b"pw").hexdigest()
    parse_command(cat, ["CreateAccount", "name=a"], ask=ask)
    parse_command(cat, ["LogInByAccount", "accountName=a", "password=given"], ask=ask)
    parse_command(cat, ["UpdateAccount", "uuid=x", "description=d"], ask=ask)
    assert asked == [("LogInByUser", False), ("CreateAccount", True)]
