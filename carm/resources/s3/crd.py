"""The CustomResourceDefinition of S3 Buckets, with ACK's group, kind, field names and shapes.

This dict is the single source of `deploy/crds/s3.services.k8s.aws_buckets.yaml` (a test keeps
the file in step), of the CRD the sandbox installs, and of the spec-to-AWS mapping: the
converters in `carm.resources.s3.shapes` walk `SPEC_SCHEMA` to name fields in AWS responses
the way the spec names them, so a field exists here or nowhere.

Field names follow ACK's s3-controller exactly (`blockPublicACLs`, `kmsMasterKeyID`, `uRI`,
`type_`, `queueARN`, ...), so an ACK Bucket manifest applies unchanged. Like ACK's CRD, the
schema has few enums: values are checked by the controller against the AWS API model instead,
and a wrong one becomes a Terminal condition that names the field, the value and the allowed
values.

`status.managedConfigurations` is carm's own addition (ACK reads every sub-configuration on
every reconcile, so it needs no memory): the spec fields carm applied last time, so that a
field removed from the spec is removed in AWS without reading every sub-configuration.
"""

from __future__ import annotations

from typing import Any

GROUP = "s3.services.k8s.aws"
VERSION = "v1alpha1"
KIND = "Bucket"
PLURAL = "buckets"

Schema = dict[str, Any]


def _obj(description: str = "", /, **properties: Schema) -> Schema:
    schema: Schema = {"type": "object"}
    if description:
        schema["description"] = description
    schema["properties"] = properties
    return schema


def _list(items: Schema, description: str = "") -> Schema:
    schema: Schema = {"type": "array"}
    if description:
        schema["description"] = description
    schema["items"] = items
    return schema


def _str() -> Schema:
    return {"type": "string"}


def _int() -> Schema:
    return {"type": "integer", "format": "int64"}


def _bool() -> Schema:
    return {"type": "boolean"}


def _time() -> Schema:
    return {"type": "string", "format": "date-time"}


def _strings() -> Schema:
    return _list(_str())


def _tag() -> Schema:
    return _obj(key=_str(), value=_str())


def _status_only() -> Schema:
    return _obj(status=_str())


# -- shared sub-shapes --


def _key_filter() -> Schema:
    """Object-key prefix/suffix rules of notification configurations."""
    return _obj(key=_obj(filterRules=_list(_obj(name=_str(), value=_str()))))


def _notification(arn_field: str) -> Schema:
    return _obj(
        events=_strings(),
        filter=_key_filter(),
        id=_str(),
        **{arn_field: _str()},
    )


def _and_prefix_tags(**extra: Schema) -> Schema:
    return _obj(prefix=_str(), tags=_list(_tag()), **extra)


def _grantee() -> Schema:
    return _obj(displayName=_str(), emailAddress=_str(), id=_str(), type_=_str(), uRI=_str())


# -- the sub-configurations carm manages --

_ENCRYPTION = _obj(
    "Default server-side encryption of new objects (PutBucketEncryption).",
    rules=_list(
        _obj(
            applyServerSideEncryptionByDefault=_obj(
                kmsMasterKeyID=_str(),
                kmsMasterKeyRef=_obj(
                    "A reference to an ACK KMS Key; carm does not resolve references, set "
                    "kmsMasterKeyID instead.",
                    **{"from": _obj(name=_str(), namespace=_str())},
                ),
                sseAlgorithm=_str(),
            ),
            bucketKeyEnabled=_bool(),
        )
    ),
)

_LIFECYCLE = _obj(
    "Lifecycle rules (PutBucketLifecycleConfiguration).",
    rules=_list(
        _obj(
            abortIncompleteMultipartUpload=_obj(daysAfterInitiation=_int()),
            expiration=_obj(date=_time(), days=_int(), expiredObjectDeleteMarker=_bool()),
            filter=_obj(
                **{
                    "and": _and_prefix_tags(objectSizeGreaterThan=_int(), objectSizeLessThan=_int())
                },
                objectSizeGreaterThan=_int(),
                objectSizeLessThan=_int(),
                prefix=_str(),
                tag=_tag(),
            ),
            id=_str(),
            noncurrentVersionExpiration=_obj(newerNoncurrentVersions=_int(), noncurrentDays=_int()),
            noncurrentVersionTransitions=_list(
                _obj(newerNoncurrentVersions=_int(), noncurrentDays=_int(), storageClass=_str())
            ),
            prefix=_str(),
            status=_str(),
            transitions=_list(_obj(date=_time(), days=_int(), storageClass=_str())),
        )
    ),
)

_CORS = _obj(
    "Cross-origin resource sharing rules (PutBucketCors).",
    corsRules=_list(
        _obj(
            allowedHeaders=_strings(),
            allowedMethods=_strings(),
            allowedOrigins=_strings(),
            exposeHeaders=_strings(),
            id=_str(),
            maxAgeSeconds=_int(),
        )
    ),
)

_LOGGING = _obj(
    "Server access logging (PutBucketLogging); an empty object turns logging off.",
    loggingEnabled=_obj(
        targetBucket=_str(),
        targetGrants=_list(_obj(grantee=_grantee(), permission=_str())),
        targetPrefix=_str(),
    ),
)

_WEBSITE = _obj(
    "Static website hosting (PutBucketWebsite).",
    errorDocument=_obj(key=_str()),
    indexDocument=_obj(suffix=_str()),
    redirectAllRequestsTo=_obj(hostName=_str(), protocol=_str()),
    routingRules=_list(
        _obj(
            condition=_obj(httpErrorCodeReturnedEquals=_str(), keyPrefixEquals=_str()),
            redirect=_obj(
                hostName=_str(),
                httpRedirectCode=_str(),
                protocol=_str(),
                replaceKeyPrefixWith=_str(),
                replaceKeyWith=_str(),
            ),
        )
    ),
)

_NOTIFICATION = _obj(
    "Event notifications (PutBucketNotificationConfiguration); empty turns them off.",
    lambdaFunctionConfigurations=_list(_notification("lambdaFunctionARN")),
    queueConfigurations=_list(_notification("queueARN")),
    topicConfigurations=_list(_notification("topicARN")),
)

_REPLICATION = _obj(
    "Replication rules (PutBucketReplication); needs versioning Enabled.",
    role=_str(),
    rules=_list(
        _obj(
            deleteMarkerReplication=_status_only(),
            destination=_obj(
                accessControlTranslation=_obj(owner=_str()),
                account=_str(),
                bucket=_str(),
                encryptionConfiguration=_obj(replicaKMSKeyID=_str()),
                metrics=_obj(eventThreshold=_obj(minutes=_int()), status=_str()),
                replicationTime=_obj(status=_str(), time=_obj(minutes=_int())),
                storageClass=_str(),
            ),
            existingObjectReplication=_status_only(),
            filter=_obj(**{"and": _and_prefix_tags()}, prefix=_str(), tag=_tag()),
            id=_str(),
            prefix=_str(),
            priority=_int(),
            sourceSelectionCriteria=_obj(
                replicaModifications=_status_only(), sseKMSEncryptedObjects=_status_only()
            ),
            status=_str(),
        )
    ),
)

# -- accepted for ACK compatibility, not managed (an Advisory condition says so) --

_ANALYTICS = _list(
    _obj(
        filter=_obj(**{"and": _and_prefix_tags()}, prefix=_str(), tag=_tag()),
        id=_str(),
        storageClassAnalysis=_obj(
            dataExport=_obj(
                destination=_obj(
                    s3BucketDestination=_obj(
                        bucket=_str(), bucketAccountID=_str(), format=_str(), prefix=_str()
                    )
                ),
                outputSchemaVersion=_str(),
            )
        ),
    )
)

_INTELLIGENT_TIERING = _list(
    _obj(
        filter=_obj(**{"and": _and_prefix_tags()}, prefix=_str(), tag=_tag()),
        id=_str(),
        status=_str(),
        tierings=_list(_obj(accessTier=_str(), days=_int())),
    )
)

_INVENTORY = _list(
    _obj(
        destination=_obj(
            s3BucketDestination=_obj(
                accountID=_str(),
                bucket=_str(),
                encryption=_obj(sseKMS=_obj(keyID=_str())),
                format=_str(),
                prefix=_str(),
            )
        ),
        filter=_obj(prefix=_str()),
        id=_str(),
        includedObjectVersions=_str(),
        isEnabled=_bool(),
        optionalFields=_strings(),
        schedule=_obj(frequency=_str()),
    )
)

_METRICS = _list(
    _obj(
        filter=_obj(
            accessPointARN=_str(),
            **{"and": _and_prefix_tags(accessPointARN=_str())},
            prefix=_str(),
            tag=_tag(),
        ),
        id=_str(),
    )
)

SPEC_SCHEMA: Schema = {
    "type": "object",
    "description": "The desired state of an S3 bucket, in ACK's field names.",
    "required": ["name"],
    "properties": {
        "accelerate": _obj("Transfer acceleration (Enabled or Suspended).", status=_str()),
        "acl": {"type": "string", "description": "A canned ACL, e.g. private or public-read."},
        "analytics": _ANALYTICS,
        "cors": _CORS,
        "createBucketConfiguration": _obj(
            "Where the bucket is created; fixed once the bucket exists.",
            locationConstraint=_str(),
        ),
        "encryption": _ENCRYPTION,
        "grantFullControl": _str(),
        "grantRead": _str(),
        "grantReadACP": _str(),
        "grantWrite": _str(),
        "grantWriteACP": _str(),
        "intelligentTiering": _INTELLIGENT_TIERING,
        "inventory": _INVENTORY,
        "lifecycle": _LIFECYCLE,
        "logging": _LOGGING,
        "metrics": _METRICS,
        "name": {
            "type": "string",
            "description": "The name of the bucket in AWS; it cannot change once set.",
            "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": "Value is immutable once set"}
            ],
        },
        "notification": _NOTIFICATION,
        "objectLockEnabledForBucket": _bool(),
        "objectOwnership": {
            "type": "string",
            "description": "Object ownership at creation (BucketOwnerEnforced, "
            "BucketOwnerPreferred or ObjectWriter); managed as ownershipControls afterwards.",
        },
        "ownershipControls": _obj(
            "Object ownership rules (PutBucketOwnershipControls).",
            rules=_list(_obj(objectOwnership=_str())),
        ),
        "policy": {
            "type": "string",
            "description": "The bucket policy, a JSON document (compared as a policy, not as "
            "text).",
        },
        "publicAccessBlock": _obj(
            "Block Public Access settings of the bucket (PutPublicAccessBlock).",
            blockPublicACLs=_bool(),
            blockPublicPolicy=_bool(),
            ignorePublicACLs=_bool(),
            restrictPublicBuckets=_bool(),
        ),
        "replication": _REPLICATION,
        "requestPayment": _obj("Who pays for requests (BucketOwner or Requester).", payer=_str()),
        "tagging": _obj(
            "Tags of the bucket, merged with the controller's --resource-tags (these win).",
            tagSet=_list(_tag()),
        ),
        "versioning": _obj("Versioning (Enabled or Suspended).", status=_str()),
        "website": _WEBSITE,
    },
}

_CONDITION: Schema = {
    "type": "object",
    "required": ["status", "type"],
    "properties": {
        "type": _str(),
        "status": _str(),
        "reason": _str(),
        "message": _str(),
        "lastTransitionTime": _time(),
    },
}

STATUS_SCHEMA: Schema = {
    "type": "object",
    "properties": {
        "ackResourceMetadata": {
            "type": "object",
            "required": ["ownerAccountID", "region"],
            "properties": {
                "arn": _str(),
                "ownerAccountID": _str(),
                "region": _str(),
                "partition": _str(),
            },
        },
        "conditions": _list(_CONDITION),
        "location": _str(),
        "managedConfigurations": _list(
            _str(),
            "The spec fields carm applied last (carm's addition to ACK's status): a field "
            "that leaves the spec is removed in AWS.",
        ),
    },
}

BUCKET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "names": {
            "kind": KIND,
            "listKind": f"{KIND}List",
            "plural": PLURAL,
            "singular": "bucket",
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "BUCKET", "type": "string", "jsonPath": ".spec.name"},
                    {
                        "name": "ACCOUNT",
                        "type": "string",
                        "jsonPath": ".status.ackResourceMetadata.ownerAccountID",
                    },
                    {
                        "name": "REGION",
                        "type": "string",
                        "jsonPath": ".status.ackResourceMetadata.region",
                    },
                    {
                        "name": "SYNCED",
                        "type": "string",
                        "jsonPath": '.status.conditions[?(@.type=="ACK.ResourceSynced")].status',
                    },
                    {"name": "AGE", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "description": "An S3 bucket managed in the account of its namespace.",
                        "properties": {
                            "apiVersion": _str(),
                            "kind": _str(),
                            "metadata": {"type": "object"},
                            "spec": SPEC_SCHEMA,
                            "status": STATUS_SCHEMA,
                        },
                    }
                },
            }
        ],
    },
}
