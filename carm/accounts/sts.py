"""The real `RoleAssumer`: STS over the shared client pool.

STS clients come from the `AwsClientPool`, so they share its one aioboto3 Session and their
calls are counted like every other AWS call. AssumeRole is called with the controller's own
credentials (`base_credentials` None: the default chain: environment, web identity, instance
role), never with another role's session: no role chaining.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from carm.accounts.clients import AwsClientPool
from carm.accounts.credentials import AssumeRoleError, AwsCredentials, SessionSpec


class StsRoleAssumer:
    def __init__(
        self,
        pool: AwsClientPool,
        *,
        region: str,
        endpoint_url: str | None = None,
        base_credentials: AwsCredentials | None = None,
    ) -> None:
        self._pool = pool
        self._region = region
        self._endpoint_url = endpoint_url
        self._base_credentials = base_credentials

    async def assume_role(self, spec: SessionSpec) -> AwsCredentials:
        role_arn = spec.role_arn
        request: dict[str, Any] = {
            "RoleArn": role_arn,
            "RoleSessionName": spec.session_name,
            "DurationSeconds": spec.duration_seconds,
        }
        if spec.external_id is not None:
            request["ExternalId"] = spec.external_id
        if spec.source_identity is not None:
            request["SourceIdentity"] = spec.source_identity
        if spec.tags:
            request["Tags"] = [{"Key": key, "Value": value} for key, value in spec.tags]
        try:
            sts = await self._sts(self._base_credentials)
            response = await sts.assume_role(**request)
        except ClientError as error:
            details = error.response.get("Error", {})
            raise AssumeRoleError(
                role_arn,
                details.get("Code") or "Unknown",
                details.get("Message") or str(error),
                status_code=error.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
            ) from error
        except BotoCoreError as error:  # no answer: endpoint unreachable, no own credentials...
            raise AssumeRoleError(role_arn, type(error).__name__, str(error)) from error
        return _credentials_of(response, role_arn)

    async def caller_identity(self, credentials: AwsCredentials | None = None) -> str:
        sts = await self._sts(credentials)
        response = await sts.get_caller_identity()
        return str(response["Account"])

    async def _sts(self, credentials: AwsCredentials | None) -> Any:
        return await self._pool.client("sts", credentials, self._region, self._endpoint_url)


def _credentials_of(response: dict[str, Any], role_arn: str) -> AwsCredentials:
    issued = response["Credentials"]
    expiration: datetime = issued["Expiration"]
    # arn:aws:sts::111111111111:assumed-role/<role>/<session>: the account the session acts in.
    account_id = str(response["AssumedRoleUser"]["Arn"]).split(":")[4]
    return AwsCredentials(
        access_key_id=issued["AccessKeyId"],
        secret_access_key=issued["SecretAccessKey"],
        session_token=issued["SessionToken"],
        expiration=expiration.timestamp(),
        account_id=account_id,
        role_arn=role_arn,
    )
