"""`carm doctor`: check a cluster's whole CARM setup; exit 1 when something is wrong.

Errors (exit status 1) are what makes resources fail or go astray: malformed account ids, team
ids or role ARNs in the maps, a role mapped for an account it does not belong to, annotated
namespaces that resolve to no role, invalid or conflicting IAMRoleSelectors, resources (of
every kind served) whose recorded account no longer matches or that resolve to no role,
invalid deletion policies or endpoints, a kind served whose CRD is not installed, a single
`--watch-namespace` with CARM on. Warnings (exit status 0) are what is probably unintended:
mapped accounts or teams no namespace uses, annotations or selectors ignored because their
feature gate is off, role-map keys prefixed with a service carm does not serve (another ACK
controller may share the map; else a typo).

Namespaces are checked as a resource of the first kind served would see them, plus the
deletion-policy annotation of every other service served; what differs for another kind shows
at that kind's resources.

With `--assume`, every role any map or selector names is assumed once with the controller's AWS
credentials (its ExternalId, SourceIdentity and session tags included) and GetCallerIdentity
must report the role's account: what the controller will do before its first reconcile.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from carm.accounts.credentials import AssumeRoleError, SessionSpec
from carm.accounts.placement import (
    REGION_PATTERN,
    PlacementDefaults,
    PlacementError,
    account_drift,
    deletion_policy_of,
    placement_of,
)
from carm.accounts.resolver import AccountResolver
from carm.accounts.rolemap import MapKind, RoleEntry, RoleMap
from carm.accounts.rules import DEFAULT_REGION_ANNOTATION, ResolutionError
from carm.accounts.selectors import SELECTOR_KIND
from carm.events import RawObject
from carm.resources.kind import ResourceDescriptor
from carm.settings import OWNER_ACCOUNT_ANNOTATION, TEAM_ID_ANNOTATION, Settings, SettingsError
from carm.tools.kinds import ANY_NAME, any_resource
from carm.tools.snapshot import ClusterSnapshot, placement_defaults, resolver_for

ERROR, WARNING, OK = "error", "warning", "ok"
DOCTOR_SESSION_NAME = "carm-doctor"


@dataclass(frozen=True, slots=True)
class Finding:
    severity: str
    """"error", "warning" or "ok"."""
    subject: str
    """What it is about, e.g. 'namespace "prod"' or a ConfigMap key."""
    message: str


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)

    def add(self, severity: str, subject: str, message: str) -> None:
        finding = Finding(severity, subject, message)
        if finding not in self.findings:
            self.findings.append(finding)

    def of(self, severity: str) -> list[Finding]:
        return [f for f in self.findings if f.severity == severity]

    @property
    def exit_code(self) -> int:
        return 1 if self.of(ERROR) else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "errors": len(self.of(ERROR)),
            "warnings": len(self.of(WARNING)),
            "findings": [
                {"severity": f.severity, "subject": f.subject, "message": f.message}
                for f in self.findings
            ],
        }

    def to_text(self) -> str:
        errors, warnings = len(self.of(ERROR)), len(self.of(WARNING))
        lines = [f"carm doctor: {errors} error(s), {warnings} warning(s)"]
        for severity in (ERROR, WARNING, OK):
            lines += [f"{severity.upper():<8}{f.subject}: {f.message}" for f in self.of(severity)]
        return "\n".join(lines)


def diagnose(snapshot: ClusterSnapshot, settings: Settings) -> Report:
    """Every check that needs no AWS call."""
    report = Report()
    _check_settings(report, settings)
    _check_kinds(report, snapshot)
    resolver = resolver_for(snapshot, settings)
    _check_map(report, settings, resolver.role_map, MapKind.ACCOUNT, snapshot)
    _check_map(report, settings, resolver.team_map, MapKind.TEAM, snapshot)
    _check_selectors(report, settings, snapshot, resolver)
    namespace_messages = _check_namespaces(report, settings, snapshot, resolver)
    _check_resources(report, settings, snapshot, resolver, namespace_messages)
    return report


def _check_settings(report: Report, settings: Settings) -> None:
    try:
        settings.validate()
    except SettingsError as error:
        report.add(ERROR, "controller flags", str(error))


def _check_kinds(report: Report, snapshot: ClusterSnapshot) -> None:
    for kind in snapshot.missing_kinds:
        crd = f"{kind.plural}.{kind.group}"
        report.add(
            ERROR,
            f"{kind.kind} CRD",
            f"{crd} is not installed: the controller cannot watch {kind.kind} resources and "
            f"never gets ready; apply deploy/crds/{kind.group}_{kind.plural}.yaml",
        )


def _key_id(key: str, kind: MapKind, services: Collection[str]) -> tuple[str | None, str]:
    """(service prefix or None, id) of a role-map key (a valid key: see `MapKind.key_problem`).

    A team id may hold dots, so `sqs.team-a` is either team "team-a" of service sqs or team
    "sqs.team-a"; the resolver reads it as both, so it counts as the service's when the
    service is one carm serves and as a plain team id otherwise."""
    service, _, rest = key.partition(".")
    if service in services and kind.valid_id(rest):
        return service, rest
    if kind.valid_id(key):
        return None, key
    return service, rest


def _check_map(
    report: Report,
    settings: Settings,
    role_map: RoleMap | None,
    kind: MapKind,
    snapshot: ClusterSnapshot,
) -> None:
    where = f"ConfigMap {settings.system_namespace}/{kind.configmap_name}"
    gates = settings.feature_gates
    if role_map is None:
        return
    if kind is MapKind.TEAM and not gates.team_level_carm:
        report.add(WARNING, where, "exists but is ignored: the TeamLevelCARM feature gate is off")
    for key, error in sorted(role_map.errors.items()):
        report.add(ERROR, f'{where} key "{key}"', f"{error.value!r}: {error.problem}")
    used = _annotated_ids(snapshot, kind)
    services = sorted({served.service for served in snapshot.kinds})
    for key, role in sorted(role_map.roles.items()):
        service, id_ = _key_id(key, kind, services)
        subject = f'{where} key "{key}"'
        if kind is MapKind.ACCOUNT and role.account_id != id_:
            report.add(
                ERROR,
                subject,
                f"role {role.arn} belongs to account {role.account_id}, not {id_}: resources "
                f"of account {id_} would fail (carm) or be created in {role.account_id} (ACK)",
            )
        if service is not None and service not in services:
            report.add(
                WARNING,
                subject,
                f"carm never reads it: {service!r} is not the service of a kind carm serves "
                f"({', '.join(services)}); fine if another ACK controller shares the map, "
                "else a typo",
            )
            continue
        if service is not None and not gates.service_level_carm:
            report.add(WARNING, subject, "is ignored: the ServiceLevelCARM feature gate is off")
        if id_ not in used:
            user = "is annotated with" if kind is MapKind.ACCOUNT else "has team"
            report.add(WARNING, subject, f"no namespace {user} {id_}: the entry is unused")


def _annotated_ids(snapshot: ClusterSnapshot, kind: MapKind) -> set[str]:
    annotation = OWNER_ACCOUNT_ANNOTATION if kind is MapKind.ACCOUNT else TEAM_ID_ANNOTATION
    return {
        str(value)
        for namespace in snapshot.namespaces.values()
        if (value := ((namespace.get("metadata") or {}).get("annotations") or {}).get(annotation))
    }


def _check_selectors(
    report: Report, settings: Settings, snapshot: ClusterSnapshot, resolver: AccountResolver
) -> None:
    gate = settings.feature_gates.iam_role_selector
    if snapshot.selectors is None:
        if gate:
            report.add(
                ERROR,
                "IAMRoleSelector CRD",
                "the IAMRoleSelector feature gate is on but iamroleselectors.services.k8s.aws "
                "is not installed (or not readable): the controller cannot watch selectors "
                "and never gets ready",
            )
        return
    if snapshot.selectors and not gate:
        report.add(
            WARNING,
            f"{len(snapshot.selectors)} IAMRoleSelector(s)",
            "are ignored: the IAMRoleSelector feature gate is off",
        )
    for selector in resolver.selectors:
        if selector.problems:
            report.add(ERROR, f'{SELECTOR_KIND} "{selector.name}"', "; ".join(selector.problems))


def _check_namespaces(
    report: Report,
    settings: Settings,
    snapshot: ClusterSnapshot,
    resolver: AccountResolver,
) -> dict[str, set[str]]:
    """Check each namespace as its resources would see it; returns the resolution errors
    reported per namespace (so resource checks do not repeat them)."""
    messages: dict[str, set[str]] = {}
    gates = settings.feature_gates
    defaults = placement_defaults(settings)
    first, *others = snapshot.kinds
    for name in sorted(snapshot.namespaces):
        subject = f'namespace "{name}"'
        info = resolver.namespace(name)
        assert info is not None
        if info.team_id is not None and not gates.team_level_carm:
            report.add(
                WARNING,
                subject,
                f"annotation {TEAM_ID_ANNOTATION}={info.team_id!r} is ignored: the "
                "TeamLevelCARM feature gate is off",
            )
        if info.default_region is not None and not REGION_PATTERN.fullmatch(info.default_region):
            report.add(
                ERROR,
                subject,
                f"annotation {DEFAULT_REGION_ANNOTATION}={info.default_region!r} is not an AWS "
                "region name",
            )
        messages[name] = _check_resolution(report, subject, name, snapshot.kinds, resolver)
        placement = placement_of(any_resource(first, name), info, defaults)
        if isinstance(placement, PlacementError):
            report.add(ERROR, subject, placement.message)
        # Region and endpoint are the same for every kind; the deletion policy is per service.
        for kind in _one_per_service(others, skip=first.service):
            policy = deletion_policy_of(any_resource(kind, name), info, defaults)
            if isinstance(policy, PlacementError):
                report.add(ERROR, subject, policy.message)
    return messages


def _check_resolution(
    report: Report,
    subject: str,
    namespace: str,
    kinds: Collection[ResourceDescriptor],
    resolver: AccountResolver,
) -> set[str]:
    """A namespace where no kind resolves is an error (every resource in it fails); one where
    only some kinds do (service-level keys differ) gets a warning per kind that does not,
    and that kind's resources, if any, an error each. Returns the errors reported."""
    failures: dict[str, ResolutionError] = {}
    for kind in kinds:
        outcome = resolver.resolve(namespace, any_resource(kind, namespace))
        if isinstance(outcome, ResolutionError):
            failures[kind.kind] = outcome
    if len(failures) == len(kinds):
        for outcome in failures.values():
            report.add(ERROR, subject, outcome.message)
        return {outcome.message for outcome in failures.values()}
    for kind_name, outcome in failures.items():
        report.add(WARNING, subject, f"a {kind_name} here would not resolve: {outcome.message}")
    return set()


def _one_per_service(kinds: Collection[ResourceDescriptor], skip: str) -> list[ResourceDescriptor]:
    chosen: dict[str, ResourceDescriptor] = {}
    for kind in kinds:
        if kind.service != skip:
            chosen.setdefault(kind.service, kind)
    return list(chosen.values())


def _check_resources(
    report: Report,
    settings: Settings,
    snapshot: ClusterSnapshot,
    resolver: AccountResolver,
    namespace_messages: dict[str, set[str]],
) -> None:
    defaults = placement_defaults(settings)
    for obj in sorted(snapshot.resources, key=_by_namespace_name_kind):
        namespace, name = _key_of(obj)
        subject = f'{obj["kind"]} "{namespace}/{name}"'
        outcome = resolver.resolve(namespace, obj)
        if isinstance(outcome, ResolutionError):
            if outcome.message not in namespace_messages.get(namespace, ()):
                report.add(ERROR, subject, outcome.message)
            continue
        drift = account_drift(obj, outcome)
        if drift is not None:
            report.add(ERROR, subject, drift)
        placement = placement_of(obj, resolver.namespace(namespace), defaults)
        if isinstance(placement, PlacementError) and not _from_namespace(
            placement, obj, resolver, defaults
        ):
            report.add(ERROR, subject, placement.message)


def _from_namespace(
    problem: PlacementError,
    obj: RawObject,
    resolver: AccountResolver,
    defaults: PlacementDefaults,
) -> bool:
    """Does every resource of the kind in the namespace have this problem (so the namespace's
    finding already says it)?"""
    namespace = _key_of(obj)[0]
    example = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {"namespace": namespace, "name": ANY_NAME},
    }
    found = placement_of(example, resolver.namespace(namespace), defaults)
    return isinstance(found, PlacementError) and found.reason == problem.reason


def _key_of(obj: RawObject) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _by_namespace_name_kind(obj: RawObject) -> tuple[str, str, str]:
    return (*_key_of(obj), str(obj.get("kind")))


# -- --assume ---------------------------------------------------------------------------------


def roles_in_use(snapshot: ClusterSnapshot, settings: Settings) -> dict[RoleEntry, list[str]]:
    """Every usable role the maps and selectors name, with where each is named."""
    resolver = resolver_for(snapshot, settings)
    roles: dict[RoleEntry, list[str]] = defaultdict(list)
    for role_map in (resolver.role_map, resolver.team_map):
        if role_map is None:
            continue
        where = f"ConfigMap {settings.system_namespace}/{role_map.kind.configmap_name}"
        for key, role in sorted(role_map.roles.items()):
            roles[role].append(f'{where} key "{key}"')
    for selector in resolver.selectors:
        if selector.role is not None:
            roles[selector.role].append(f'{SELECTOR_KIND} "{selector.name}"')
    return roles


async def verify_roles(
    report: Report, snapshot: ClusterSnapshot, settings: Settings, assumer: Any
) -> None:
    """Assume every role in use with the controller's credentials and check its account.

    `assumer` is a `carm.accounts.credentials.RoleAssumer` (the real `StsRoleAssumer`)."""
    try:
        own = await assumer.caller_identity(None)
    except Exception as error:  # noqa: BLE001 - reported, the other checks go on
        report.add(ERROR, "controller credentials", f"sts:GetCallerIdentity failed: {error}")
        return
    report.add(OK, "controller credentials", f"the controller acts as account {own}")
    for role, used_by in sorted(roles_in_use(snapshot, settings).items(), key=lambda r: r[0].arn):
        subject = f"role {role.arn} ({'; '.join(used_by)})"
        spec = SessionSpec(
            role.arn,
            DOCTOR_SESSION_NAME,
            role.external_id,
            role.session_duration_seconds or 900,
            role.source_identity,
            role.session_tags,
        )
        try:
            credentials = await assumer.assume_role(spec)
            account = await assumer.caller_identity(credentials)
        except AssumeRoleError as error:
            report.add(ERROR, subject, f"AssumeRole failed: {error.code}: {error.message}")
            continue
        except Exception as error:  # noqa: BLE001 - one role's failure must not hide the others
            report.add(ERROR, subject, f"{type(error).__name__}: {error}")
            continue
        if account != role.account_id:
            report.add(
                ERROR,
                subject,
                f"assumed, but sts:GetCallerIdentity says account {account}, not the role's "
                f"{role.account_id}",
            )
        else:
            report.add(OK, subject, f"assumed; acts in account {account}")
