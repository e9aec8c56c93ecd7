"""`carm explain NAMESPACE [KIND/NAME]`: how a namespace (or one resource) resolves, and why.

For each of account, role, team, IAMRoleSelector, partition, region, endpoint and deletion
policy: the value and where it came from (an annotation, a ConfigMap key, a selector, a flag);
then what is wrong when it cannot resolve, and notes (ignored annotations, gates that are off).
The answer comes from the controller's own rules fed with one read of the cluster, and takes
the controller's flags (`--feature-gates`, `--aws-region`, ...), so pass the same ones.

A namespace is explained as a resource of the first kind served, without labels, would see
it. Kinds may differ (service-level role-map keys and the namespace's deletion policy are per
service, selectors may choose by type): a note names every other kind that resolves otherwise.

Exit status: 0 when it resolves, 1 when it does not (the problems say why).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from carm.accounts.placement import (
    Placement,
    PlacementDefaults,
    PlacementError,
    account_drift,
    placement_of,
)
from carm.accounts.resolver import AccountResolver
from carm.accounts.rules import Outcome, Resolution, ResolutionError
from carm.accounts.selectors import SELECTOR_KIND
from carm.events import RawObject
from carm.resources.kind import ResourceDescriptor
from carm.settings import OWNER_ACCOUNT_ANNOTATION, TEAM_ID_ANNOTATION, Settings
from carm.tools.kinds import any_resource
from carm.tools.snapshot import ClusterSnapshot, placement_defaults, resolver_for

FACTS: tuple[str, ...] = (
    "account",
    "role",
    "team",
    "selector",
    "partition",
    "region",
    "endpoint",
    "deletion policy",
)


@dataclass(frozen=True, slots=True)
class Fact:
    value: str | None
    """None: nothing applies (shown as '-')."""
    source: str


@dataclass
class Explanation:
    namespace: str
    resource: str | None
    """KIND/NAME, e.g. "Bucket/my-bucket"; None when explaining the namespace as a whole."""
    facts: dict[str, Fact] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def resolved(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "resource": self.resource,
            "resolved": self.resolved,
            **{
                name.replace(" ", "_"): {"value": fact.value, "source": fact.source}
                for name, fact in self.facts.items()
            },
            "problems": self.problems,
            "notes": self.notes,
        }

    def to_text(self) -> str:
        subject = f'namespace "{self.namespace}"'
        if self.resource is not None:
            subject += f", {self.resource}"
        lines = [f"{subject}: {'resolves' if self.resolved else 'does NOT resolve'}"]
        for name in FACTS:
            fact = self.facts.get(name)
            if fact is not None:
                lines.append(f"  {name:<16} {fact.value or '-':<44} {fact.source}")
        lines += [f"problem: {problem}" for problem in self.problems]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def explain(
    snapshot: ClusterSnapshot,
    settings: Settings,
    namespace: str,
    resource: RawObject | None = None,
    resource_name: str | None = None,
) -> Explanation:
    """Explain `namespace`, or `resource` in it (with its apiVersion and kind);
    `resource_name` (KIND/NAME) names one that was not found."""
    label = None
    if resource is not None:
        label = f"{resource['kind']}/{resource['metadata']['name']}"
    elif resource_name is not None:
        label = resource_name
    result = Explanation(namespace, label)
    if namespace not in snapshot.namespaces:
        result.problems.append(f'namespace "{namespace}" not found')
        return result
    if resource_name is not None and resource is None:
        result.problems.append(f'{resource_name} not found in namespace "{namespace}"')
        return result
    resolver = resolver_for(snapshot, settings)
    subject = resource or any_resource(snapshot.kinds[0], namespace)
    outcome = resolver.resolve(namespace, subject)
    info = resolver.namespace(namespace)
    _identity_facts(result, outcome)
    _team_and_selector(result, snapshot, settings, outcome, info.team_id if info else None)
    placement = placement_of(subject, info, placement_defaults(settings))
    if isinstance(placement, PlacementError):
        result.problems.append(placement.message)
    else:
        result.facts["region"] = Fact(placement.region, placement.region_source)
        result.facts["endpoint"] = Fact(placement.endpoint_url, placement.endpoint_source)
        result.facts["deletion policy"] = Fact(
            placement.deletion_policy, placement.deletion_policy_source
        )
        result.notes += placement.advisories
    if resource is not None and isinstance(outcome, Resolution):
        drift = account_drift(resource, outcome)
        if drift is not None:
            result.problems.append(drift)
    if resource is None:
        _other_kinds(result, snapshot, resolver, placement_defaults(settings))
    if resource is None and any(s.resource_labels for s in resolver.selectors):
        result.notes.append(
            "some IAMRoleSelectors select by resource labels: explain one resource "
            "(KIND/NAME) to see which applies to it"
        )
    return result


def _other_kinds(
    result: Explanation,
    snapshot: ClusterSnapshot,
    resolver: AccountResolver,
    defaults: PlacementDefaults,
) -> None:
    """Note the kinds served that resolve otherwise than the first one in the namespace."""
    first, *others = snapshot.kinds

    def verdict(kind: ResourceDescriptor) -> tuple[Outcome, Placement | str]:
        subject = any_resource(kind, result.namespace)
        placement = placement_of(subject, resolver.namespace(result.namespace), defaults)
        # A problem's message names the kind; whether it is the same problem is its reason.
        where = placement.reason if isinstance(placement, PlacementError) else placement
        return resolver.resolve(result.namespace, subject), where

    differing = [kind.kind for kind in others if verdict(kind) != verdict(first)]
    if differing:
        result.notes.append(
            f"this is how a {first.kind} resolves here; {', '.join(differing)} resolve(s) "
            "otherwise (per-service role-map keys, deletion policy or selectors): explain "
            "one (KIND/NAME) to see how"
        )


def _identity_facts(result: Explanation, outcome: Any) -> None:
    if isinstance(outcome, ResolutionError):
        kind = "needs a change" if outcome.terminal else "may pass; the controller retries"
        result.problems.append(f"{outcome.message} ({outcome.reason.value}: {kind})")
        return
    assert isinstance(outcome, Resolution)
    account = outcome.account_id or None
    account_source = outcome.account_source
    if account is None:
        account_source += "; its account id is what sts:GetCallerIdentity says for carm"
    result.facts["account"] = Fact(account or "the controller's own", account_source)
    if outcome.role is None:
        result.facts["role"] = Fact(None, "none: the controller's own credentials")
    else:
        result.facts["role"] = Fact(outcome.role.describe(), outcome.role_source)
    partition_source = "the role's ARN" if outcome.role is not None else "--aws-region"
    result.facts["partition"] = Fact(outcome.partition, partition_source)


def _team_and_selector(
    result: Explanation,
    snapshot: ClusterSnapshot,
    settings: Settings,
    outcome: Any,
    team: str | None,
) -> None:
    gates = settings.feature_gates
    if team is None:
        result.facts["team"] = Fact(None, f"no {TEAM_ID_ANNOTATION} annotation")
    elif not gates.team_level_carm:
        result.facts["team"] = Fact(None, "TeamLevelCARM is off")
        result.notes.append(
            f"annotation {TEAM_ID_ANNOTATION}={team!r} is ignored: the TeamLevelCARM feature "
            "gate is off (--feature-gates TeamLevelCARM=true)"
        )
    elif not settings.enable_carm:
        result.facts["team"] = Fact(None, "CARM is disabled (--enable-carm=false)")
    elif isinstance(outcome, Resolution) and outcome.selector is not None:
        result.facts["team"] = Fact(team, f"{TEAM_ID_ANNOTATION}, overridden by a selector")
    else:
        result.facts["team"] = Fact(team, f"namespace annotation {TEAM_ID_ANNOTATION}")
        result.notes.append(
            f"a team id beats {OWNER_ACCOUNT_ANNOTATION}: the account is the team role's"
        )
    if not gates.iam_role_selector:
        result.facts["selector"] = Fact(None, "the IAMRoleSelector feature gate is off")
        if snapshot.selectors:
            result.notes.append(
                f"{len(snapshot.selectors)} IAMRoleSelector(s) exist but are ignored: the "
                "IAMRoleSelector feature gate is off"
            )
    elif snapshot.selectors is None:
        result.facts["selector"] = Fact(
            None, "the IAMRoleSelector CRD is not installed (or not readable)"
        )
        result.problems.append(
            f"--feature-gates IAMRoleSelector=true, but the {SELECTOR_KIND} CRD "
            "(iamroleselectors.services.k8s.aws) is not installed: the controller cannot "
            "start its watch; apply deploy/crds/services.k8s.aws_iamroleselectors.yaml"
        )
    elif isinstance(outcome, Resolution) and outcome.selector is not None:
        result.facts["selector"] = Fact(outcome.selector, "the only IAMRoleSelector that matches")
    elif isinstance(outcome, ResolutionError) and outcome.selectors:
        result.facts["selector"] = Fact(", ".join(outcome.selectors), "see the problem below")
    else:
        result.facts["selector"] = Fact(None, "no IAMRoleSelector matches")
