"""Parsing ConfigMap ack-role-account-map: valid ARNs in, every bad entry kept as an error."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carm.accounts.rolemap import (
    InvalidRoleArn,
    MapKind,
    RoleArn,
    RoleEntry,
    RoleMap,
    RoleMapEntryError,
    RoleMapHit,
    is_role_account_map,
)

GOOD = "arn:aws:iam::111111111111:role/s3FullAccess"


@pytest.mark.parametrize(
    ("arn", "partition", "account", "path", "name"),
    [
        (GOOD, "aws", "111111111111", "/", "s3FullAccess"),
        ("arn:aws-cn:iam::222222222222:role/x", "aws-cn", "222222222222", "/", "x"),
        (
            "arn:aws-us-gov:iam::333333333333:role/a+=,.@_-z",
            "aws-us-gov",
            "333333333333",
            "/",
            "a+=,.@_-z",
        ),
        (
            "arn:aws:iam::111111111111:role/team/ci/deployer",
            "aws",
            "111111111111",
            "/team/ci/",
            "deployer",
        ),
        ("arn:aws:iam::111111111111:role/" + "n" * 64, "aws", "111111111111", "/", "n" * 64),
    ],
)
def test_valid_role_arns_parse_into_their_parts(
    arn: str, partition: str, account: str, path: str, name: str
) -> None:
    assert RoleArn.parse(arn) == RoleArn(arn, partition, account, path, name)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("s3FullAccess", "expected arn:<partition>"),
        ("arn:aws:iam::111111111111", "expected arn:<partition>"),
        ("arn:aws-mars:iam::111111111111:role/x", "unknown partition 'aws-mars'"),
        ("arn:aws:sts::111111111111:role/x", "service is 'sts'"),
        ("arn:aws:iam:us-east-1:111111111111:role/x", "no region, found 'us-east-1'"),
        ("arn:aws:iam::11111111111:role/x", "'11111111111' is not a 12-digit"),
        ("arn:aws:iam::111111111111:user/x", "is not a role"),
        ("arn:aws:iam::111111111111:role/", "the role name may only hold"),
        ("arn:aws:iam::111111111111:role/bad name", "the role name may only hold"),
        ("arn:aws:iam::111111111111:role/" + "n" * 65, "1 to 64"),
        ("arn:aws:iam::111111111111:role/x\n", "the role name may only hold"),
    ],
)
def test_invalid_role_arns_say_what_is_wrong(value: str, why: str) -> None:
    with pytest.raises(InvalidRoleArn, match=re.escape(why)):
        RoleArn.parse(value)


@given(
    partition=st.sampled_from(["aws", "aws-cn", "aws-us-gov"]),
    account=st.from_regex(r"[0-9]{12}", fullmatch=True),
    name=st.from_regex(r"[A-Za-z0-9+=,.@_-]{1,64}", fullmatch=True),
)
def test_every_well_formed_role_arn_parses(partition: str, account: str, name: str) -> None:
    arn = f"arn:{partition}:iam::{account}:role/{name}"
    parsed = RoleArn.parse(arn)
    assert (parsed.partition, parsed.account_id, parsed.name, str(parsed)) == (
        partition,
        account,
        name,
        arn,
    )


def test_bad_entries_are_kept_as_errors_next_to_good_ones() -> None:
    role_map = RoleMap.from_data(
        {
            "111111111111": GOOD,
            "222222222222": "not-an-arn",
            "prod": "arn:aws:iam::333333333333:role/x",
        }
    )
    assert role_map.lookup("111111111111") == RoleMapHit("111111111111", RoleEntry.parse(GOOD))
    hit = role_map.lookup("222222222222")
    assert hit is not None
    bad_value = hit.entry
    assert isinstance(bad_value, RoleMapEntryError)
    assert bad_value.value == "not-an-arn"
    assert "not a valid IAM role ARN" in bad_value.problem
    assert role_map.errors["prod"].problem.startswith("the key is not a 12-digit account id")
    assert role_map.lookup("444444444444") is None
    assert len(role_map) == 3


def test_surrounding_whitespace_of_a_value_is_ignored() -> None:
    role_map = RoleMap.from_data({"111111111111": f"  {GOOD}\n"})
    hit = role_map.lookup("111111111111")
    assert hit is not None and hit.entry == RoleEntry(RoleArn.parse(GOOD))


def test_a_missing_configmap_is_none_and_one_without_data_is_empty() -> None:
    assert RoleMap.from_configmap(None) is None
    empty = RoleMap.from_configmap({"metadata": {"name": "ack-role-account-map"}})
    assert empty is not None
    assert len(empty) == 0
    assert empty.lookup("111111111111") is None


def test_the_map_cannot_be_changed_after_parsing() -> None:
    role_map = RoleMap.from_data({"111111111111": GOOD})
    with pytest.raises(TypeError):
        role_map.roles["222222222222"] = RoleEntry.parse(GOOD)  # type: ignore[index]


def test_changed_accounts_are_the_added_removed_and_changed_keys() -> None:
    before = RoleMap.from_data({"111111111111": GOOD, "222222222222": "x", "333333333333": "y"})
    after = RoleMap.from_data({"111111111111": GOOD, "222222222222": "z", "444444444444": "w"})
    assert after.changed_keys(before) == {"222222222222", "333333333333", "444444444444"}
    assert after.changed_keys(None) == {"111111111111", "222222222222", "444444444444"}
    assert after.changed_keys(after) == frozenset()
    assert before == RoleMap.from_data(
        {"111111111111": GOOD, "222222222222": "x", "333333333333": "y"}
    )


def test_only_the_named_configmap_in_the_system_namespace_is_the_role_map() -> None:
    def configmap(name: str, namespace: str) -> dict[str, object]:
        return {"metadata": {"name": name, "namespace": namespace}}

    assert is_role_account_map(configmap("ack-role-account-map", "ack-system"), "ack-system")
    assert not is_role_account_map(configmap("ack-role-account-map", "default"), "ack-system")
    assert not is_role_account_map(configmap("other", "ack-system"), "ack-system")


# -- richer entries (JSON), service-level keys, the team map --


def entry_of(role_map: RoleMap, key: str) -> RoleEntry | RoleMapEntryError:
    hit = role_map.lookup(key)
    assert hit is not None
    return hit.entry


def test_a_json_value_carries_the_session_options() -> None:
    value = (
        '{"roleARN": "arn:aws:iam::111111111111:role/s3", "externalID": "carm-ext-1", '
        '"sessionDurationSeconds": 1800, "sourceIdentity": "carm-prod", '
        '"sessionTags": {"team": "a", "cost-center": "42"}}'
    )
    entry = entry_of(RoleMap.from_data({"111111111111": value}), "111111111111")
    assert entry == RoleEntry(
        RoleArn.parse("arn:aws:iam::111111111111:role/s3"),
        external_id="carm-ext-1",
        session_duration_seconds=1800,
        source_identity="carm-prod",
        session_tags=(("cost-center", "42"), ("team", "a")),
    )
    assert "an external id" in entry.describe() and "1800 s sessions" in entry.describe()


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("{not json", "not valid JSON"),
        ('["arn:aws:iam::111111111111:role/s3"]', "expected arn:"),
        ('{"externalID": "abc"}', "roleARN is required"),
        ('{"roleARN": "arn:aws:iam::111111111111:user/x"}', "is not a valid IAM role ARN"),
        ('{"roleArn": "arn:aws:iam::111111111111:role/x"}', "unknown field(s) 'roleArn'"),
        (
            '{"roleARN": "arn:aws:iam::111111111111:role/x", "sessionDurationSeconds": 60}',
            "900..43200",
        ),
        (
            '{"roleARN": "arn:aws:iam::111111111111:role/x", "sessionDurationSeconds": "3600"}',
            "whole number",
        ),
        ('{"roleARN": "arn:aws:iam::111111111111:role/x", "externalID": "a"}', "externalID"),
        (
            '{"roleARN": "arn:aws:iam::111111111111:role/x", "sourceIdentity": "a"}',
            "sourceIdentity must be 2 to 64",
        ),
        (
            '{"roleARN": "arn:aws:iam::111111111111:role/x", "sessionTags": {"t": 1}}',
            "needs a string value",
        ),
    ],
)
def test_a_bad_json_value_is_an_error_of_its_key_only(value: str, why: str) -> None:
    role_map = RoleMap.from_data(
        {"111111111111": value, "222222222222": GOOD.replace("1" * 12, "2" * 12)}
    )
    error = entry_of(role_map, "111111111111")
    assert isinstance(error, RoleMapEntryError)
    assert why in error.problem
    assert isinstance(entry_of(role_map, "222222222222"), RoleEntry)


def test_service_keys_are_tried_before_plain_ones_and_other_services_are_valid() -> None:
    role_map = RoleMap.from_data(
        {
            "111111111111": GOOD,
            "s3.111111111111": "arn:aws:iam::111111111111:role/s3-only",
            "dynamodb.111111111111": "arn:aws:iam::111111111111:role/ddb",
        }
    )
    assert role_map.errors == {}
    hit = role_map.lookup("111111111111", service="s3")
    assert hit is not None and hit.key == "s3.111111111111"
    plain = role_map.lookup("111111111111")
    assert plain is not None and plain.key == "111111111111"
    only_plain = RoleMap.from_data({"111111111111": GOOD}).lookup("111111111111", service="s3")
    assert only_plain is not None and only_plain.key == "111111111111"


def test_team_map_keys_are_team_ids() -> None:
    role_map = RoleMap.from_data(
        {
            "team-a": GOOD,
            "s3.team-a": GOOD,
            "-bad": GOOD,
            "Team_B.2": GOOD,
        },
        MapKind.TEAM,
    )
    assert set(role_map.roles) == {"team-a", "s3.team-a", "Team_B.2"}
    assert role_map.errors["-bad"].problem.startswith("the key is not a team id")
    account_keys = RoleMap.from_data({"team-a": GOOD})
    assert "team-a" in account_keys.errors
