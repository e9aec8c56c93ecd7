"""The interface every resource kind implements, and its descriptor.

A kind (the S3 Bucket, an SQS Queue next) is one module that knows its AWS API and nothing
about Kubernetes, annotations, finalizers or conditions. `carm.resources.engine.KindManager`
turns any kind into the reconcile loop's `ResourceManager`: it reads the annotations
(adoption, read-only), checks that the identifiers did not change, decides between create,
adopt, update and observe, and remembers which sub-configurations it manages.

The vocabulary, as in ACK's runtime:

- identity: the fields that name the AWS resource (a bucket's `name`), from the spec or from
  the `services.k8s.aws/adoption-fields` annotation; its ARN is what status records and what
  makes the identity immutable;
- sub-configurations ("fields"): the parts of the resource that are read, put and removed
  separately (a bucket's versioning, policy, tags, ...); `Desired.fields` are the ones the
  spec manages, and only those are read on a reconcile;
- `locate` is the one cheap call that says whether the resource exists (HeadBucket);
  `read` fetches the named sub-configurations; together they are the whole read.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from carm.accounts.selectors import GroupVersionKind
from carm.events import RawObject
from carm.reconcile.interfaces import AwsTarget

if TYPE_CHECKING:
    from carm.settings import Settings


@dataclass(frozen=True, slots=True)
class ResourceDescriptor:
    """Where a kind lives in the Kubernetes API (as in its CRD)."""

    group: str
    version: str
    kind: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def type(self) -> GroupVersionKind:
        """The kind as IAMRoleSelectors and the account resolver see it."""
        return GroupVersionKind(self.group, self.version, self.kind)

    @property
    def service(self) -> str:
        """ACK's service alias (`s3`): it prefixes service-level role-map keys and the
        namespace's `<service>.services.k8s.aws/deletion-policy`."""
        return self.type.service

    @property
    def finalizer(self) -> str:
        """ACK's finalizer name, e.g. finalizers.s3.services.k8s.aws/Bucket."""
        return f"finalizers.{self.group}/{self.kind}"

    @property
    def controller_name(self) -> str:
        """The name of the kind's controller, as controller-runtime names it (the kind in lower
        case, e.g. "bucket"): the `controller` label of the reconcile metrics and the `name` of
        its work queue's."""
        return self.kind.lower()


@dataclass(frozen=True, slots=True)
class Identity:
    """The fields that name one AWS resource, e.g. {"name": "my-bucket"}."""

    fields: Mapping[str, str]

    def __getitem__(self, name: str) -> str:
        return self.fields[name]


@dataclass(frozen=True, slots=True)
class Desired:
    """A validated spec: what the kind will ask of AWS."""

    fields: Mapping[str, Any]
    """Sub-configuration name -> desired value, for every sub-configuration the spec manages
    (in the kind's own representation); the keys are what a reconcile reads."""

    create: Mapping[str, Any] = field(default_factory=dict)
    """What only the create call takes (location, create-time options)."""

    unmanaged: tuple[str, ...] = ()
    """Spec fields accepted (for compatibility) but not managed: reported as Advisory."""


@dataclass(frozen=True, slots=True)
class Located:
    """The resource exists; `facts` are what locating it told (a bucket's region)."""

    facts: Mapping[str, Any] = field(default_factory=dict)


class AwsResource(Protocol):
    """One kind's AWS side. Every method raises `ReconcileError`s, never botocore errors."""

    @property
    def descriptor(self) -> ResourceDescriptor: ...

    def identify(self, obj: RawObject, adoption_fields: Mapping[str, Any]) -> Identity:
        """The identity from the spec, or from the adoption fields when the spec has none."""
        ...

    def arn(self, identity: Identity, aws: AwsTarget) -> str: ...

    def desired(self, obj: RawObject, identity: Identity, aws: AwsTarget) -> Desired:
        """Validate the spec (Terminal on a value AWS cannot take), before any AWS call."""
        ...

    async def locate(self, identity: Identity, desired: Desired, aws: AwsTarget) -> Located | None:
        """One call: None if the resource does not exist; Terminal if it exists but differs in
        something that cannot change (a bucket in another region than the spec says)."""
        ...

    async def owned(self, identity: Identity, aws: AwsTarget) -> bool:
        """Does `aws.account_id` own the resource? Asked before adopting or deleting a
        resource carm has not recorded as its own."""
        ...

    async def create(self, identity: Identity, desired: Desired, aws: AwsTarget) -> Located | None:
        """Create it (an existing resource of the same account is not an error; one owned by
        another account is Terminal). Return what creating it established, or None when the
        resource already existed, so the engine locates it: a fresh create then costs one
        call, not two."""
        ...

    async def read(
        self, identity: Identity, fields: Collection[str] | None, aws: AwsTarget
    ) -> dict[str, Any]:
        """The current value of each named sub-configuration (None: not set in AWS);
        `fields=None` reads every sub-configuration the kind knows (adoption)."""
        ...

    def differences(self, desired: Desired, observed: Mapping[str, Any]) -> list[str]:
        """The sub-configurations whose observed value does not satisfy the desired one."""
        ...

    async def apply(
        self,
        identity: Identity,
        desired: Desired,
        changed: Collection[str],
        removed: Collection[str],
        aws: AwsTarget,
    ) -> None:
        """Put `changed` and remove `removed` sub-configurations, in dependency order."""
        ...

    def spec_of(
        self, identity: Identity, located: Located, observed: Mapping[str, Any], aws: AwsTarget
    ) -> dict[str, Any]:
        """A spec that describes the resource as observed (what `adopt` writes)."""
        ...

    def status_of(
        self, identity: Identity, located: Located | None, aws: AwsTarget
    ) -> dict[str, Any]:
        """Status fields besides ackResourceMetadata and conditions (e.g. `location`)."""
        ...

    async def delete(self, identity: Identity, aws: AwsTarget) -> None:
        """Delete it; a resource already gone is not an error."""
        ...


@dataclass(frozen=True, slots=True)
class ResourceKind:
    """A kind's registration: everything the controller needs to manage it.

    Each kind's module exports one (the Bucket's is `carm.resources.s3.bucket.BUCKET_KIND`) and
    `carm.resources.catalog.RESOURCE_KINDS` lists them; the wiring (`carm.controllers`) gives
    each its own watch, cache, work queue, reconcile workers and metrics, and
    `carm.resources.crds` renders its CRD to deploy/crds.
    """

    descriptor: ResourceDescriptor
    crd: dict[str, Any]
    """The CustomResourceDefinition, as applied (group, names and version must match the
    descriptor; the catalog checks)."""
    build: Callable[[Settings], AwsResource]
    """The kind's AWS side for the controller's settings (e.g. `--resource-tags`)."""
