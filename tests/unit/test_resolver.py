"""The CARM rules for the owner-account annotation and ack-role-account-map, and the
resolver's change tracking (team maps, service keys and selectors: test_carm_sources.py)."""

from __future__ import annotations

from typing import Any

import pytest

from carm.accounts.resolver import AccountResolver
from carm.accounts.rolemap import RoleEntry, RoleMap
from carm.accounts.rules import (
    ControllerIdentity,
    NamespaceInfo,
    Resolution,
    ResolutionError,
    ResolutionReason,
    ResolverSettings,
    RoleMaps,
)
from carm.accounts.rules import resolve as resolve_rules

OWN = ControllerIdentity("000000000000")
SETTINGS = ResolverSettings(system_namespace="ack-system")
ROLE_B = "arn:aws:iam::111111111111:role/s3FullAccess"
ROLE_OWN = "arn:aws:iam::000000000000:role/s3Local"
ROLE_MAP = RoleMap.from_data(
    {
        "111111111111": ROLE_B,
        "000000000000": ROLE_OWN,
        "222222222222": "arn:aws:iam::999999999999:role/elsewhere",
        "333333333333": "s3FullAccess",
    }
)


def annotated(account: str | None) -> NamespaceInfo:
    return NamespaceInfo(owner_account_id=account)


def namespace(name: str, account: str | None = None, region: str | None = None) -> dict[str, Any]:
    annotations = {}
    if account is not None:
        annotations["services.k8s.aws/owner-account-id"] = account
    if region is not None:
        annotations["services.k8s.aws/default-region"] = region
    return {"metadata": {"name": name, "annotations": annotations}}


def resolve(
    info: NamespaceInfo | None, role_map: RoleMap | None = ROLE_MAP, name: str = "production"
) -> Resolution | ResolutionError:
    return resolve_rules(name, info, RoleMaps(role_map), (), OWN, SETTINGS)


def error_of(result: Resolution | ResolutionError) -> ResolutionError:
    assert isinstance(result, ResolutionError), result
    return result


def test_a_namespace_without_annotation_uses_the_controllers_own_account_and_credentials() -> None:
    result = resolve(annotated(None))
    assert isinstance(result, Resolution)
    assert (result.account_id, result.role_arn, result.partition) == ("000000000000", None, "aws")
    assert "no services.k8s.aws/owner-account-id annotation" in result.source


def test_an_annotated_namespace_assumes_the_mapped_role() -> None:
    result = resolve(annotated("111111111111"))
    assert result == Resolution(
        "111111111111",
        ROLE_B,
        "aws",
        'namespace "production" is annotated with owner account 111111111111: '
        f"assume role {ROLE_B}",
        role=RoleEntry.parse(ROLE_B),
        account_source="namespace annotation services.k8s.aws/owner-account-id",
        role_source='ConfigMap ack-system/ack-role-account-map key "111111111111"',
    )


def test_annotating_the_controllers_own_account_still_assumes_the_mapped_role() -> None:
    result = resolve(annotated("000000000000"))
    assert isinstance(result, Resolution)
    assert result.role_arn == ROLE_OWN


def test_annotating_the_own_account_without_a_mapping_does_not_fall_back() -> None:
    error = error_of(resolve(annotated("000000000000"), RoleMap.from_data({})))
    assert error.reason is ResolutionReason.ROLE_NOT_AVAILABLE


def test_a_malformed_annotation_is_terminal_and_quotes_the_value() -> None:
    error = error_of(resolve(annotated("1111-2222-3333")))
    assert error.terminal
    assert error.reason is ResolutionReason.INVALID_OWNER_ACCOUNT
    assert error.message == (
        'namespace "production" has annotation '
        "services.k8s.aws/owner-account-id='1111-2222-3333', which is not a 12-digit AWS "
        "account id: fix the annotation"
    )


@pytest.mark.parametrize(
    "value", ["", "11111111111", "1111111111111", "11111111111a", "1" * 12 + "\n"]
)
def test_only_exactly_twelve_digits_are_an_account(value: str) -> None:
    assert error_of(resolve(annotated(value))).reason is ResolutionReason.INVALID_OWNER_ACCOUNT


def test_a_missing_configmap_is_recoverable_and_names_it() -> None:
    error = error_of(resolve(annotated("111111111111"), role_map=None))
    assert not error.terminal
    assert error.reason is ResolutionReason.ROLE_MAP_MISSING
    assert error.message.startswith(
        "IAM Role is not available: ConfigMap ack-system/ack-role-account-map not found; "
    )
    assert '"production"' in error.message
    assert "111111111111" in error.message


def test_a_missing_key_says_iam_role_is_not_available_like_ack() -> None:
    error = error_of(resolve(annotated("444444444444")))
    assert not error.terminal
    assert error.reason is ResolutionReason.ROLE_NOT_AVAILABLE
    assert error.message == (
        'IAM Role is not available: namespace "production" is annotated with owner account '
        "444444444444, but ConfigMap ack-system/ack-role-account-map has no role ARN for "
        "account 444444444444"
    )
    assert (error.namespace, error.account_id) == ("production", "444444444444")


def test_an_invalid_role_arn_is_terminal_and_quotes_the_value() -> None:
    error = error_of(resolve(annotated("333333333333")))
    assert error.terminal
    assert error.reason is ResolutionReason.INVALID_ROLE_ARN
    assert "maps it to 's3FullAccess': not a valid IAM role ARN" in error.message


def test_a_role_in_another_account_is_terminal() -> None:
    error = error_of(resolve(annotated("222222222222")))
    assert error.terminal
    assert error.reason is ResolutionReason.ROLE_ACCOUNT_MISMATCH
    assert error.message == (
        'namespace "production" is annotated with owner account 222222222222, but ConfigMap '
        'ack-system/ack-role-account-map key "222222222222" maps it to role '
        "arn:aws:iam::999999999999:role/elsewhere, which belongs to account 999999999999: the "
        "role must be in the annotated account"
    )


def test_an_unknown_namespace_is_an_error_not_the_own_account() -> None:
    error = error_of(resolve(None, name="new-team"))
    assert not error.terminal
    assert error.reason is ResolutionReason.NAMESPACE_UNKNOWN
    assert '"new-team"' in error.message


def test_with_carm_disabled_everything_is_the_own_account() -> None:
    settings = ResolverSettings(carm_enabled=False)
    for info in (annotated("111111111111"), annotated("garbage"), None):
        result = resolve_rules("production", info, RoleMaps(), (), OWN, settings)
        assert isinstance(result, Resolution)
        assert (result.account_id, result.role_arn) == ("000000000000", None)


def test_the_role_partition_is_the_resolution_partition() -> None:
    china = RoleMap.from_data({"111111111111": "arn:aws-cn:iam::111111111111:role/x"})
    result = resolve(annotated("111111111111"), china)
    assert isinstance(result, Resolution)
    assert result.partition == "aws-cn"


# -- AccountResolver: state fed by events, and what each change affects --


def configmap(data: dict[str, str] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": "ack-role-account-map", "namespace": "ack-system"}}
    if data is not None:
        body["data"] = data
    return body


def test_namespace_events_change_the_resolution() -> None:
    resolver = AccountResolver(OWN, SETTINGS)
    resolver.on_role_map(configmap({"111111111111": ROLE_B}))
    assert error_of(resolver.resolve("production")).reason is ResolutionReason.NAMESPACE_UNKNOWN

    assert resolver.on_namespace(namespace("production"), "production").namespaces == {"production"}
    assert resolver.resolve("production") == resolve(annotated(None), resolver.role_map)

    change = resolver.on_namespace(namespace("production", "111111111111"), "production")
    assert change.namespaces == {"production"}
    result = resolver.resolve("production")
    assert isinstance(result, Resolution)
    assert result.role_arn == ROLE_B

    assert resolver.on_namespace(None, "production").namespaces == {"production"}
    assert error_of(resolver.resolve("production")).reason is ResolutionReason.NAMESPACE_UNKNOWN


def test_a_namespace_change_that_keeps_its_annotations_affects_no_resource() -> None:
    resolver = AccountResolver(OWN, SETTINGS)
    resolver.on_namespace(namespace("production", "111111111111"), "production")
    relabelled = namespace("production", "111111111111")
    relabelled["metadata"]["labels"] = {"team": "a"}
    change = resolver.on_namespace(relabelled, "production")
    # No selector looks at labels: no resource of the namespace resolves differently.
    assert change.affects is not None
    assert not change.affects({"metadata": {"namespace": "production", "name": "b"}})
    assert not resolver.on_namespace(None, "never-seen")


def test_a_default_region_change_affects_the_namespace() -> None:
    resolver = AccountResolver(OWN, SETTINGS)
    resolver.on_namespace(namespace("production", "111111111111"), "production")
    changed = resolver.on_namespace(
        namespace("production", "111111111111", region="eu-west-1"), "production"
    )
    assert changed.namespaces == {"production"}
    assert changed.affects is None  # every resource's placement changes
    info = resolver.namespace("production")
    assert info is not None
    assert info.default_region == "eu-west-1"


def make_resolver() -> AccountResolver:
    resolver = AccountResolver(OWN, SETTINGS)
    resolver.on_namespace(namespace("prod-b"), "prod-b")
    resolver.on_namespace(namespace("prod-b", "111111111111"), "prod-b")
    resolver.on_namespace(namespace("prod-c", "222222222222"), "prod-c")
    resolver.on_namespace(namespace("prod-d", "444444444444"), "prod-d")
    resolver.on_namespace(namespace("plain"), "plain")
    return resolver


def test_the_configmap_appearing_affects_every_annotated_namespace() -> None:
    resolver = make_resolver()
    change = resolver.on_role_map(configmap({"111111111111": ROLE_B}))
    assert change.keys == {"111111111111"}
    # prod-c and prod-d go from "ConfigMap not found" to "IAM Role is not available".
    assert change.namespaces == {"prod-b", "prod-c", "prod-d"}
    assert change.retired_role_arns == frozenset()


def test_a_changed_entry_affects_only_its_accounts_namespaces_and_retires_the_old_role() -> None:
    resolver = make_resolver()
    resolver.on_role_map(
        configmap({"111111111111": ROLE_B, "222222222222": "arn:aws:iam::222222222222:role/a"})
    )
    change = resolver.on_role_map(
        configmap({"111111111111": ROLE_B, "222222222222": "arn:aws:iam::222222222222:role/b"})
    )
    assert change.keys == {"222222222222"}
    assert change.namespaces == {"prod-c"}
    assert change.retired_role_arns == {"arn:aws:iam::222222222222:role/a"}
    result = resolver.resolve("prod-c")
    assert isinstance(result, Resolution)
    assert result.role_arn == "arn:aws:iam::222222222222:role/b"


def test_an_unchanged_configmap_affects_nothing() -> None:
    resolver = make_resolver()
    resolver.on_role_map(configmap({"111111111111": ROLE_B}))
    change = resolver.on_role_map(configmap({"111111111111": ROLE_B}))
    assert not change
    assert (change.keys, change.namespaces, change.retired_role_arns) == (
        frozenset(),
        frozenset(),
        frozenset(),
    )


def test_the_configmap_vanishing_retires_every_role() -> None:
    resolver = make_resolver()
    resolver.on_role_map(configmap({"111111111111": ROLE_B}))
    change = resolver.on_role_map(None)
    assert change.keys == {"111111111111"}
    assert change.namespaces == {"prod-b", "prod-c", "prod-d"}
    assert change.retired_role_arns == {ROLE_B}
    assert error_of(resolver.resolve("prod-b")).reason is ResolutionReason.ROLE_MAP_MISSING
    assert isinstance(resolver.resolve("plain"), Resolution)
