"""`carm doctor`: check a cluster's whole CARM setup; exit 1 when something is wrong.

Errors (exit status 1) are what makes resources fail or go astray: malformed account ids, team
ids or role ARNs in the maps, a role mapped for an account it does not belong to, annotated
namespaces that resolve to no role, invalid or conflicting IAMRoleSelectors, resources whose
recorded account no longer matches, invalid deletion policies or endpoints, a single
`--watch-namespace` with CARM on. Warnings (exit status 0) are what is probably unintended:
mapped accounts or teams no namespace uses, annotations or selectors ignored because their
feature gate is off.

With `--assume`, every role any map or selector names is assumed once with the controller's AWS
credentials (its ExternalId, SourceIdentity and session tags included) and GetCallerIdentity
must report the role's account: what the controller will do before its first reconcile.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from carm.accounts.credentials import AssumeRoleError, SessionSpec
from carm.accounts.placement import REGION_PATTERN, PlacementError, account_drift, placement_of
from carm.accounts.resolver import AccountResolver
from carm.accounts.rolemap import MapKind, RoleEntry, RoleMap
from carm.accounts.rules import DEFAULT_REGION_ANNOTATION, ResolutionError
from carm.accounts.selectors import SELECTOR_KIND
from carm.events import RawObject
from carm.settings import OWNER_ACCOUNT_ANNOTATION, TEAM_ID_ANNOTATION, Settings, SettingsError
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


def _key_id(key: str, kind: MapKind) -> tuple[str | None, str]:
    """(service prefix or None, id) of a role-map key."""
    if kind.valid_id(key):
        return None, key
    service, _, rest = key.partition(".")
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
    for key, role in sorted(role_map.roles.items()):
        service, id_ = _key_id(key, kind)
        subject = f'{where} key "{key}"'
        if kind is MapKind.ACCOUNT and role.account_id != id_:
            report.add(
                ERROR,
                subject,
                f"role {role.arn} belongs to account {role.account_id}, not {id_}: resources "
                f"of account {id_} would fail (carm) or be created in {role.account_id} (ACK)",
            )
        if service is not None and service != "s3":
            continue  # another controller's entry in a shared map
        if service == "s3" and not gates.service_level_carm:
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
) -> dict[str, str]:
    """Check each namespace as its resources would see it; returns the message per namespace
    (so resource checks do not repeat it)."""
    messages: dict[str, str] = {}
    gates = settings.feature_gates
    defaults = placement_defaults(settings)
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
        outcome = resolver.resolve(name)  # as a Bucket without labels would resolve
        if isinstance(outcome, ResolutionError):
            messages[name] = outcome.message
            report.add(ERROR, subject, outcome.message)
        any_bucket = {"kind": "Bucket", "metadata": {"namespace": name, "name": "*"}}
        placement = placement_of(any_bucket, info, defaults)
        if isinstance(placement, PlacementError):
            report.add(ERROR, subject, placement.message)
            messages[f"placement/{name}"] = placement.reason
    return messages


def _check_resources(
    report: Report,
    settings: Settings,
    snapshot: ClusterSnapshot,
    resolver: AccountResolver,
    namespace_messages: dict[str, str],
) -> None:
    defaults = placement_defaults(settings)
    for obj in sorted(snapshot.buckets, key=_key_of):
        namespace, name = _key_of(obj)
        subject = f'Bucket "{namespace}/{name}"'
        outcome = resolver.resolve(namespace, obj)
        if isinstance(outcome, ResolutionError):
            if namespace_messages.get(namespace) != outcome.message:
                report.add(ERROR, subject, outcome.message)
            continue
        drift = account_drift(obj, outcome)
        if drift is not None:
            report.add(ERROR, subject, drift)
        placement = placement_of(obj, resolver.namespace(namespace), defaults)
        if isinstance(placement, PlacementError) and (
            namespace_messages.get(f"placement/{namespace}") != placement.reason
        ):
            report.add(ERROR, subject, placement.message)


def _key_of(obj: RawObject) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


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
