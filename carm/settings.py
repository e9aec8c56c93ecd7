"""Typed settings of the controller, from ACK's flags and environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from carm.featuregates import FeatureGates

ROLE_ACCOUNT_MAP_NAME = "ack-role-account-map"
ROLE_TEAM_MAP_NAME = "ack-role-team-map"
OWNER_ACCOUNT_ANNOTATION = "services.k8s.aws/owner-account-id"
TEAM_ID_ANNOTATION = "services.k8s.aws/team-id"
DELETION_POLICIES = ("delete", "retain")
ACK_DEFAULT_RESOURCE_TAGS = (
    "services.k8s.aws/controller-version=%CONTROLLER_SERVICE%-%CONTROLLER_VERSION%",
    "services.k8s.aws/namespace=%K8S_NAMESPACE%",
)


def default_system_namespace(environ: dict[str, str] | None = None) -> str:
    """ACK's rule: $ACK_SYSTEM_NAMESPACE, else $K8S_NAMESPACE, else ack-system."""
    env = os.environ if environ is None else environ
    return env.get("ACK_SYSTEM_NAMESPACE") or env.get("K8S_NAMESPACE") or "ack-system"


class SettingsError(ValueError):
    """A combination of settings the controller refuses to start with."""


@dataclass(frozen=True, slots=True)
class Settings:
    kubeconfig: str | None = None
    """Path of a kubeconfig; None means $KUBECONFIG, then the in-cluster service account."""

    watch_namespaces: tuple[str, ...] = ()
    """Namespaces to watch for resources; empty means all namespaces (cluster mode)."""

    enable_carm: bool = True
    """Cross-account resource management: resolve each namespace's owner account."""

    aws_region: str = ""
    """Default AWS region of resources ($AWS_REGION when the flag is not given)."""

    aws_endpoint_url: str | None = None
    """AWS endpoint override (a moto server in the sandbox)."""

    log_level: str = "info"
    """Log level: debug, info, warning or error."""

    resync_seconds: float = 36_000.0
    """How often every resource is reconciled even without changes (ACK: 10 h)."""

    max_concurrent_syncs: int = 16
    """How many reconciles may run at once, across all accounts."""

    system_namespace: str = field(default_factory=default_system_namespace)
    """Where the controller runs and reads ack-role-account-map from."""

    metrics_addr: str = "0.0.0.0:8080"
    """host:port of the Prometheus /metrics endpoint; empty disables it."""

    healthz_addr: str = ""
    """host:port of /healthz and /readyz (the kubelet's probes); empty disables them.
    `carm run` serves them on 0.0.0.0:8081 unless `--healthz-addr` says otherwise; embedded
    controllers (tests, the sandbox) serve none unless asked."""

    enable_leader_election: bool = False
    """Reconcile only while holding the Lease `ack-s3.services.k8s.aws` (ACK: off by default),
    so that several replicas can run with one of them active."""

    leader_election_namespace: str = ""
    """Namespace of the Lease; empty means the system namespace."""

    lease_duration_seconds: float = 15.0
    """How long a standby waits after the last renewal it saw before taking the lease over."""

    renew_deadline_seconds: float = 10.0
    """How long the leader keeps reconciling without a successful renewal; shorter than the
    lease duration, so it has stopped before any standby may take over."""

    retry_period_seconds: float = 2.0
    """How often the leader renews and a standby tries to acquire."""

    graceful_shutdown_timeout_seconds: float = 30.0
    """On SIGTERM, how long in-flight reconciles may take to finish before they are cancelled."""

    @property
    def lease_namespace(self) -> str:
        return self.leader_election_namespace or self.system_namespace

    feature_gates: FeatureGates = field(default_factory=FeatureGates)
    """ACK's `--feature-gates` (TeamLevelCARM, ServiceLevelCARM, IAMRoleSelector, ...)."""

    deletion_policy: str = "delete"
    """ACK's `--deletion-policy`: what deleting a resource does in AWS unless an annotation
    says otherwise ("delete" or "retain")."""

    resource_tags: tuple[str, ...] = ACK_DEFAULT_RESOURCE_TAGS
    """ACK's `--resource-tags`: `key=value` tags set on every AWS resource, with ACK's
    variables (%K8S_NAMESPACE%, ...) expanded per resource; the spec's tags win a conflict."""

    def validate(self) -> None:
        self._validate_operations()
        if self.deletion_policy not in DELETION_POLICIES:
            raise SettingsError(
                f"--deletion-policy must be delete or retain, got {self.deletion_policy!r}"
            )
        for tag in self.resource_tags:
            if not tag.partition("=")[0].strip() or "=" not in tag:
                raise SettingsError(
                    f"--resource-tags entries are key=value, got {tag!r} "
                    "(e.g. team=payments or services.k8s.aws/namespace=%K8S_NAMESPACE%)"
                )
        if self.enable_carm and self.watch_namespaces:
            raise SettingsError(
                "cross-account resource management (--enable-carm, on by default) needs the "
                "controller to watch every namespace, but --watch-namespace is set to "
                f"{','.join(self.watch_namespaces)!r}: leave --watch-namespace empty, or start "
                "with --enable-carm=false to run in namespace mode with one account"
            )
        if self.max_concurrent_syncs < 1:
            raise SettingsError(
                "--reconcile-default-max-concurrent-syncs must be at least 1, "
                f"got {self.max_concurrent_syncs}"
            )
        if self.resync_seconds <= 0:
            raise SettingsError(
                f"--reconcile-default-resync-seconds must be positive, got {self.resync_seconds}"
            )
        if not self.aws_region:
            raise SettingsError("no AWS region: pass --aws-region or set $AWS_REGION")

    def _validate_operations(self) -> None:
        """Leader election timings (client-go's rules) and the shutdown bound."""
        lease, renew, retry = (
            self.lease_duration_seconds,
            self.renew_deadline_seconds,
            self.retry_period_seconds,
        )
        if not lease > renew > 1.2 * retry > 0:
            raise SettingsError(
                "leader election needs --leader-election-lease-duration > "
                "--leader-election-renew-deadline > 1.2 x --leader-election-retry-period > 0, "
                f"got {lease:g}s, {renew:g}s and {retry:g}s"
            )
        if self.graceful_shutdown_timeout_seconds < 0:
            raise SettingsError(
                "--graceful-shutdown-timeout must not be negative, "
                f"got {self.graceful_shutdown_timeout_seconds:g}s"
            )
