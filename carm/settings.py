"""Typed settings of the controller, from ACK's flags and environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

ROLE_ACCOUNT_MAP_NAME = "ack-role-account-map"
OWNER_ACCOUNT_ANNOTATION = "services.k8s.aws/owner-account-id"


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

    def validate(self) -> None:
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
