"""Temporary credentials per role: cached, refreshed ahead of expiry, fetched once per key.

One `CredentialCache` serves every reconcile worker. Its promises, each covered by a test:

- **Single flight.** Any number of concurrent `get` for one `SessionSpec` cause one AssumeRole.
  The first caller (the leader) calls STS in its own task; the others wait for its result on
  an event. If the leader is cancelled, a waiter takes over, so nobody waits forever.
- **Only valid credentials.** `get` never returns credentials that expire within
  `min_validity_seconds`; a caller always has time to use them.
- **Refresh ahead, in the background.** After each AssumeRole a refresher task, owned by
  `run()`'s task group, sleeps until `refresh_fraction` of the lifetime has passed or
  `refresh_lead_seconds` remain (whichever comes first) and fetches new credentials while `get`
  keeps answering with the old ones. A key nobody asked for during a whole refresh period is
  dropped instead of refreshed, so roles no longer used stop costing STS calls.
- **Failures are cached.** A failed AssumeRole (denied, throttled, unreachable) is remembered per
  key with exponential backoff (`backoff_initial_seconds` doubling up to `backoff_max_seconds`).
  Until `retry_at`, `get` raises the cached `AssumeRoleError` without calling STS: a broken
  role costs one call per backoff interval, however many resources use it. A background
  refresh that fails keeps the old credentials in use until they are no longer valid.
- **Invalidation.** `invalidate(role_arn)` (the role map changed) drops the role's credentials
  and its backoff at once; listeners hear about every credential that is replaced or dropped,
  so the client pool can retire the clients built on them.
- **Verified before first use.** Every set of credentials STS hands out is checked with
  GetCallerIdentity (made with those credentials) before anyone gets them: they must act in the
  account of the role's ARN, the account the mapping promised. A mismatch (a proxy or endpoint
  answering for another account, a misconfigured STS) is a failure like any other, cached with
  backoff, but `terminal`: retrying cannot fix it. Verified credentials are cached, so the
  check costs one call per AssumeRole, not per use.

Time comes from an injected `Clock`: expirations are wall time (they come from AWS), refresh
deadlines and backoff are monotonic.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import anyio
import anyio.abc

from carm.accounts.rolemap import RoleArn
from carm.backoff import exponential_delay
from carm.clock import Clock
from carm.observability.metrics import Metrics

log = logging.getLogger("carm.accounts.credentials")

MIN_DURATION_SECONDS = 900
"""STS (and botocore's validation) refuse shorter sessions."""
MAX_DURATION_SECONDS = 43_200

_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)
_SESSION_NAME_INVALID_CHARS = re.compile(r"[^\w+=,.@-]", re.ASCII)


def default_session_name(
    services: Iterable[str],
    environ: Mapping[str, str] | None = None,
    hostname: str | None = None,
) -> str:
    """`carm-<services>-<pod name>`, e.g. `carm-s3-<pod>` for a controller of S3 kinds only
    (`$POD_NAME`, else the host name, which is the pod name in a pod).

    The session name shows in the target account's CloudTrail as
    `assumed-role/<role>/carm-s3-<pod>`: the auditor sees which controller (the AWS services
    of its kinds, as an ACK controller's name does), and which replica, acted. It stays the
    same for the life of the process, so every resource of an account shares one cached
    session. STS allows 2-64 of `[\\w+=,.@-]`; other characters become `-`.
    """
    env = os.environ if environ is None else environ
    who = env.get("POD_NAME") or hostname or socket.gethostname() or "unknown"
    controller = "-".join(["carm", *sorted(set(services)), who])
    return _SESSION_NAME_INVALID_CHARS.sub("-", controller)[:64]


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """What to assume: the cache key (so the same role with other options is another session)."""

    role_arn: str
    session_name: str
    external_id: str | None = None
    duration_seconds: int = 3600
    source_identity: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    """Session tags as sorted (key, value) pairs."""

    def __post_init__(self) -> None:
        RoleArn.parse(self.role_arn)  # raises InvalidRoleArn (a ValueError)
        if not _SESSION_NAME.fullmatch(self.session_name):
            raise ValueError(
                f"session name {self.session_name!r} must be 2-64 characters of [\\w+=,.@-]"
            )
        if not MIN_DURATION_SECONDS <= self.duration_seconds <= MAX_DURATION_SECONDS:
            raise ValueError(
                f"duration_seconds must be {MIN_DURATION_SECONDS}..{MAX_DURATION_SECONDS}, "
                f"got {self.duration_seconds}"
            )

    @property
    def account_id(self) -> str:
        return RoleArn.parse(self.role_arn).account_id


@dataclass(frozen=True, slots=True, repr=False)
class AwsCredentials:
    """A set of AWS credentials. Its repr and str never show the secret or the token."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None
    expiration: float | None
    """Wall time (seconds since the epoch) when they stop working; None: they do not expire."""
    account_id: str
    role_arn: str | None = None
    """The role these are a session of; None for the controller's own credentials."""

    def seconds_left(self, now_wall: float) -> float:
        return math.inf if self.expiration is None else self.expiration - now_wall

    def __repr__(self) -> str:
        key = self.access_key_id
        shown = f"{key[:4]}...{key[-4:]}" if len(key) > 8 else "..."
        expires = "never" if self.expiration is None else _iso(self.expiration)
        return (
            f"AwsCredentials(access_key_id={shown!r}, account_id={self.account_id!r}, "
            f"role_arn={self.role_arn!r}, expiration={expires})"
        )

    __str__ = __repr__


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class AssumeRoleError(Exception):
    """AssumeRole failed; `retry_at` (wall time) is when the cache will try again."""

    def __init__(
        self,
        role_arn: str,
        code: str,
        message: str,
        *,
        status_code: int | None = None,
        retry_at: float | None = None,
        terminal: bool = False,
    ) -> None:
        super().__init__(role_arn, code, message)
        self.role_arn = role_arn
        self.code = code
        self.message = message
        self.status_code = status_code
        self.retry_at = retry_at
        self.terminal = terminal
        """True when retrying cannot help (the credentials act in the wrong account)."""

    def with_retry_at(self, retry_at: float) -> AssumeRoleError:
        copy = AssumeRoleError(
            self.role_arn,
            self.code,
            self.message,
            status_code=self.status_code,
            retry_at=retry_at,
            terminal=self.terminal,
        )
        copy.__cause__ = self.__cause__
        return copy

    @property
    def summary(self) -> str:
        """What failed, without the time of the next attempt: a condition message that stays
        the same from one retry to the next, so retries do not rewrite the resource's status."""
        return f"cannot assume role {self.role_arn}: {self.code}: {self.message}"

    def __str__(self) -> str:
        if self.retry_at is None:
            return self.summary
        return f"{self.summary} (next attempt at {_iso(self.retry_at)})"


class RoleAssumer(Protocol):
    """The STS edge: the real one is `carm.accounts.sts.StsRoleAssumer`."""

    async def assume_role(self, spec: SessionSpec) -> AwsCredentials:
        """Assume `spec.role_arn` with the spec's session options; raise `AssumeRoleError`
        with AWS' error code when STS refuses."""
        ...

    async def caller_identity(self, credentials: AwsCredentials | None) -> str:
        """The account id of `credentials` (None: the controller's own)."""
        ...


CredentialsListener = Callable[[AwsCredentials], None]
"""Called with credentials that were replaced or dropped: use them for no new work."""


@dataclass(frozen=True, slots=True)
class CredentialPolicy:
    refresh_fraction: float = 0.8
    """Refresh once this fraction of the lifetime has passed..."""
    refresh_lead_seconds: float = 300.0
    """...or when this little is left, whichever comes first."""
    min_validity_seconds: float = 60.0
    """Never hand out credentials that expire sooner than this."""
    backoff_initial_seconds: float = 5.0
    """Wait after the first failure of a key; doubles with each further failure..."""
    backoff_max_seconds: float = 300.0
    """...up to this."""

    def refresh_delay(self, lifetime: float) -> float:
        return max(0.0, min(lifetime * self.refresh_fraction, lifetime - self.refresh_lead_seconds))

    def backoff(self, failures: int) -> float:
        return exponential_delay(
            failures, base=self.backoff_initial_seconds, cap=self.backoff_max_seconds
        )


@dataclass(eq=False)
class _Entry:
    spec: SessionSpec
    account_id: str
    credentials: AwsCredentials | None = None
    refresh_at: float = math.inf
    """Monotonic time of the next background refresh."""
    error: AssumeRoleError | None = None
    failures: int = 0
    retry_at: float = -math.inf
    """Monotonic time before which no AssumeRole is tried."""
    inflight: anyio.Event | None = None
    used: bool = False
    """Handed out since the last successful AssumeRole (else the refresher drops the key)."""
    refreshing: bool = False
    refresher: anyio.CancelScope | None = field(default=None, repr=False)
    dropped: bool = False


class CredentialCache:
    def __init__(
        self,
        assumer: RoleAssumer,
        *,
        clock: Clock,
        metrics: Metrics | None = None,
        policy: CredentialPolicy | None = None,
    ) -> None:
        self._assumer = assumer
        self._clock = clock
        self._metrics = metrics if metrics is not None else Metrics()
        self._policy = policy if policy is not None else CredentialPolicy()
        self._entries: dict[SessionSpec, _Entry] = {}
        self._listeners: list[CredentialsListener] = []
        self._task_group: anyio.abc.TaskGroup | None = None
        self._unstarted_refreshers: list[_Entry] = []

    def add_listener(self, listener: CredentialsListener) -> None:
        self._listeners.append(listener)

    async def get(self, spec: SessionSpec) -> AwsCredentials:
        """Valid credentials for `spec`; raises the (cached) `AssumeRoleError` while backing off."""
        waited = False
        while True:
            entry = self._entries.get(spec) or self._add(spec)
            credentials = entry.credentials
            if credentials is not None and self._usable(credentials):
                entry.used = True
                if not waited:
                    self._metrics.credential_cache_hits.labels(entry.account_id).inc()
                return credentials
            if entry.inflight is None and self._clock.monotonic() < entry.retry_at:
                assert entry.error is not None
                raise entry.error
            if not waited:
                self._metrics.credential_cache_misses.labels(entry.account_id).inc()
                waited = True
            if entry.inflight is not None:
                await entry.inflight.wait()
            else:
                await self._fetch(entry)
            # Look again: the fetch succeeded, failed (now backing off), was cancelled (someone
            # must lead the next one), or the key was invalidated meanwhile.

    def cached(self, spec: SessionSpec) -> AwsCredentials | None:
        """The credentials `get` would return now without calling STS, if any."""
        entry = self._entries.get(spec)
        if entry is None or entry.credentials is None or not self._usable(entry.credentials):
            return None
        return entry.credentials

    def invalidate(self, role_arn: str) -> int:
        """Drop every session of `role_arn`, with its backoff; returns how many were dropped."""
        doomed = [entry for spec, entry in self._entries.items() if spec.role_arn == role_arn]
        for entry in doomed:
            self._drop(entry, "invalidated")
        return len(doomed)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Own the background refreshers until cancelled. Run it in the app's task group."""
        async with anyio.create_task_group() as task_group:
            self._task_group = task_group
            try:
                for entry in self._unstarted_refreshers:
                    task_group.start_soon(self._refresh_loop, entry)
                self._unstarted_refreshers.clear()
                task_status.started()
                await anyio.sleep_forever()
            finally:
                self._task_group = None

    # -- fetching --

    def _add(self, spec: SessionSpec) -> _Entry:
        entry = _Entry(spec, spec.account_id)
        self._entries[spec] = entry
        return entry

    def _usable(self, credentials: AwsCredentials) -> bool:
        left = credentials.seconds_left(self._clock.wall())
        return left > self._policy.min_validity_seconds

    async def _fetch(self, entry: _Entry) -> None:
        """One AssumeRole for `entry`, led by the calling task; others wait on `inflight`."""
        spec = entry.spec
        done = entry.inflight = anyio.Event()
        try:
            credentials = await self._verified(spec, await self._assumer.assume_role(spec))
        except AssumeRoleError as error:
            self._failed(entry, error)
        except Exception as error:  # noqa: BLE001 - a bug or an unexpected client error: back off all the same
            failure = AssumeRoleError(spec.role_arn, type(error).__name__, str(error))
            failure.__cause__ = error
            self._failed(entry, failure)
        else:
            self._succeeded(entry, credentials)
        finally:
            entry.inflight = None
            done.set()

    async def _verified(self, spec: SessionSpec, credentials: AwsCredentials) -> AwsCredentials:
        """`credentials` once GetCallerIdentity confirms they act in the role's account."""
        try:
            account_id = await self._assumer.caller_identity(credentials)
        except Exception as error:
            self._notify(credentials)  # never handed out: retire the client built to check them
            raise AssumeRoleError(
                spec.role_arn,
                "GetCallerIdentityFailed",
                f"checking the new credentials with sts:GetCallerIdentity failed: {error}",
            ) from error
        if account_id != spec.account_id:
            self._notify(credentials)
            raise AssumeRoleError(
                spec.role_arn,
                "CredentialsAccountMismatch",
                f"sts:GetCallerIdentity says the assumed credentials act in account "
                f"{account_id}, but the role (and its mapping) is in account "
                f"{spec.account_id}: carm will not use them (check --aws-endpoint-url and any "
                "proxy in front of STS)",
                terminal=True,
            )
        return credentials

    def _succeeded(self, entry: _Entry, credentials: AwsCredentials) -> None:
        if not self._usable(credentials):
            # Handing these out would break the promise; retrying at once could spin.
            expiry = "never" if credentials.expiration is None else _iso(credentials.expiration)
            self._failed(
                entry,
                AssumeRoleError(
                    entry.spec.role_arn,
                    "CredentialsExpireTooSoon",
                    f"STS returned credentials expiring at {expiry}",
                ),
            )
            return
        self._metrics.sts_assume_role.labels(entry.account_id, "success").inc()
        previous = entry.credentials
        lifetime = credentials.seconds_left(self._clock.wall())
        entry.credentials = credentials
        entry.refresh_at = self._clock.monotonic() + self._policy.refresh_delay(lifetime)
        entry.error, entry.failures, entry.retry_at = None, 0, -math.inf
        entry.used = False
        log.info(
            "assumed role %s (account %s) as %s, valid until %s",
            entry.spec.role_arn,
            entry.account_id,
            entry.spec.session_name,
            "never" if credentials.expiration is None else _iso(credentials.expiration),
        )
        if previous is not None and previous != credentials:
            self._notify(previous)
        if entry.dropped:
            # Invalidated while STS answered: the waiters look again; these go nowhere.
            entry.credentials = None
            self._notify(credentials)
            return
        self._track_expiry(entry.account_id)
        self._start_refresher(entry)

    def _failed(self, entry: _Entry, error: AssumeRoleError) -> None:
        self._metrics.sts_assume_role.labels(entry.account_id, "error").inc()
        entry.failures += 1
        delay = self._policy.backoff(entry.failures)
        entry.retry_at = self._clock.monotonic() + delay
        entry.error = error.with_retry_at(self._clock.wall() + delay)
        log.warning("%s; failure %d of this role in a row", entry.error, entry.failures)

    # -- background refresh --

    def _start_refresher(self, entry: _Entry) -> None:
        if entry.refreshing or entry.refresh_at == math.inf:  # running, or nothing to refresh
            return
        entry.refreshing = True
        if self._task_group is not None:
            self._task_group.start_soon(self._refresh_loop, entry)
        else:
            self._unstarted_refreshers.append(entry)  # run() starts it

    async def _refresh_loop(self, entry: _Entry) -> None:
        try:
            with anyio.CancelScope() as scope:
                entry.refresher = scope
                while not entry.dropped and entry.credentials is not None:
                    due = max(entry.refresh_at, entry.retry_at)
                    await self._clock.sleep(due - self._clock.monotonic())
                    if not await self._refresh_once(entry):
                        break
        finally:
            entry.refresher = None
            entry.refreshing = False

    async def _refresh_once(self, entry: _Entry) -> bool:
        """Refresh `entry` now; False when it should no longer be refreshed."""
        if entry.dropped or entry.credentials is None:
            return False
        if entry.inflight is not None:  # a caller is already fetching
            await entry.inflight.wait()
            return True
        if not entry.used:
            self._drop(entry, "unused for a whole refresh period")
            return False
        if not self._usable(entry.credentials):
            # Refreshes kept failing until the old credentials ran out: from now on `get`
            # fetches (within the backoff) and starts a new refresher when it succeeds.
            self._retire_credentials(entry)
            return False
        await self._fetch(entry)
        return True

    # -- dropping --

    def _drop(self, entry: _Entry, why: str) -> None:
        entry.dropped = True
        if self._entries.get(entry.spec) is entry:
            del self._entries[entry.spec]
        if entry.refresher is not None:
            entry.refresher.cancel()
        log.info("dropped credentials of role %s: %s", entry.spec.role_arn, why)
        self._retire_credentials(entry)

    def _retire_credentials(self, entry: _Entry) -> None:
        credentials, entry.credentials = entry.credentials, None
        self._track_expiry(entry.account_id)
        if credentials is not None:
            self._notify(credentials)

    def _notify(self, credentials: AwsCredentials) -> None:
        for listener in self._listeners:
            try:
                listener(credentials)
            except Exception:  # one broken listener must not stop the others or the cache
                log.exception("credentials listener %r failed", listener)

    def _track_expiry(self, account_id: str) -> None:
        """Point the account's expiry gauge at its soonest-expiring live credentials."""
        live = [
            entry.credentials
            for entry in self._entries.values()
            if entry.account_id == account_id and entry.credentials is not None
        ]
        if not live:
            self._metrics.forget_credential_expiry(account_id)
            return
        soonest = min(live, key=lambda credentials: credentials.seconds_left(0.0))
        clock = self._clock
        self._metrics.track_credential_expiry(
            account_id, lambda: soonest.seconds_left(clock.wall())
        )
