"""ACK's feature gates: `--feature-gates Name=bool,...`, the same names and defaults as ACK.

ACK's runtime knows five gates; carm accepts exactly those and refuses any other name, so a typo
(`TeamLevelCarm=true`) stops the start with an error instead of silently leaving a feature off.
The two beta gates are on by default, the three alpha gates (the CARM extensions) off, as in ACK.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class FeatureGateError(ValueError):
    """A `--feature-gates` value carm cannot accept; the message says what and lists the gates."""


@dataclass(frozen=True, slots=True)
class FeatureGates:
    """Which optional features are on. Field names are ACK's gate names in snake_case."""

    resource_adoption: bool = True
    """ResourceAdoption (beta): the `services.k8s.aws/adoption-policy` annotation."""

    read_only_resources: bool = True
    """ReadOnlyResources (beta): the `services.k8s.aws/read-only` annotation."""

    team_level_carm: bool = False
    """TeamLevelCARM (alpha): namespace annotation `services.k8s.aws/team-id` mapped through
    ConfigMap `ack-role-team-map`; a team id beats the owner account id."""

    service_level_carm: bool = False
    """ServiceLevelCARM (alpha): role-map keys `s3.<account-or-team-id>` tried before `<id>`."""

    iam_role_selector: bool = False
    """IAMRoleSelector (alpha): cluster-scoped IAMRoleSelector objects choose the role, overriding
    the role maps."""

    @classmethod
    def parse(cls, text: str) -> FeatureGates:
        """`Name=bool,Name=bool` (ACK's format) over the defaults; raises `FeatureGateError`."""
        overrides: dict[str, bool] = {}
        by_name = gate_names()
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            name, sep, value = (piece.strip() for piece in item.partition("="))
            if not sep:
                raise FeatureGateError(f"feature gate {item!r} has no value: write {name}=true")
            if name not in by_name:
                raise FeatureGateError(
                    f"unknown feature gate {name!r}; known gates: {', '.join(sorted(by_name))}"
                )
            lowered = value.lower()
            if lowered not in _TRUE | _FALSE:
                raise FeatureGateError(
                    f"feature gate {name}={value!r}: the value must be true or false"
                )
            overrides[by_name[name]] = lowered in _TRUE
        return replace(cls(), **overrides)

    def enabled(self) -> list[str]:
        """ACK names of the gates that are on (for logs and `carm explain`)."""
        return [name for name, attr in gate_names().items() if getattr(self, attr)]


def gate_names() -> dict[str, str]:
    """ACK gate name -> field name, e.g. "TeamLevelCARM" -> "team_level_carm"."""
    special = {"team_level_carm": "TeamLevelCARM", "service_level_carm": "ServiceLevelCARM"}
    special |= {"iam_role_selector": "IAMRoleSelector"}
    names: dict[str, str] = {}
    for field in fields(FeatureGates):
        name = special.get(field.name) or "".join(p.title() for p in field.name.split("_"))
        names[name] = field.name
    return names
