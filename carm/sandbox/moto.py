"""A moto server in a subprocess: the sandbox's AWS, with several accounts.

Why a subprocess: `moto_server` in its own process serves ~1.6x the requests per second of
moto's in-process `ThreadedMotoServer` (which shares our GIL), and starts in ~0.3 s. It runs as
`python -m carm.sandbox.moto_server`: moto's own server main, plus the S3 operations the
sandbox needs and moto lacks (GetBucketRequestPayment/PutBucketRequestPayment; see there).

How the controller is account 000000000000 while assumed roles act in their own accounts
(measured against moto 5.2.5):

- moto picks the account of a request from, in order: the server's `MOTO_ACCOUNT_ID`
  environment variable, the `x-moto-account-id` header, the access key (keys that moto issued
  map to their account; AssumeRole keys to the role's account), else 123456789012.
- `MOTO_ACCOUNT_ID=000000000000` on the server does NOT work: it overrides everything, so
  credentials from AssumeRole on `arn:aws:iam::111111111111:role/...` then also act in
  000000000000 (GetCallerIdentity says 000000000000 and their buckets show up in
  000000000000's ListBuckets). The server therefore runs with `MOTO_ACCOUNT_ID` unset.
- What works: an IAM user `carm-controller` is created IN account 000000000000 (IAM calls sent
  with header `x-moto-account-id: 000000000000`), with an access key and an allow-all policy.
  The controller runs with that key as its own credentials (`controller_env()`): moto maps the
  key to 000000000000, so GetCallerIdentity answers 000000000000 and its own buckets live
  there; the keys it gets from AssumeRole map to the role's account, as in AWS.
- The key must survive `reset()` (which wipes all state, the user too), because a running
  controller keeps its credentials. moto draws key ids and secrets from its own random
  generator, which `POST /moto-api/seed` seeds: `reset()` seeds the generator with a fixed
  value before re-creating the user, so the user gets the same key again (checked; a
  different key raises). Nothing else may call moto during a `reset()`.

IAM is not enforced unless `set_iam_enforcement(True)`; then the controller user may do
anything except what `deny_assume_role` forbids, and sessions of roles act with the policies of
roles created by `create_role` (sessions of roles that do not exist in moto get HTTP 500).
moto checks no trust policies.

The lifecycle is synchronous (blocking for well under a second), so pytest session fixtures
can use it without an event loop; `async with MotoServer()` runs it in a worker thread.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import closing
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import aioboto3
import anyio.to_thread
import botocore.session

from carm.accounts.credentials import AwsCredentials

SANDBOX_CONTROLLER_ACCOUNT_ID = "000000000000"
CONTROLLER_USER = "carm-controller"
INSPECTOR_ROLE = "carm-sandbox-inspector"
"""The role `list_bucket_names` assumes in an account to look at it."""

_SEED = 424242
_START_TIMEOUT = 20.0
_ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


class MotoServerError(RuntimeError):
    pass


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


# moto's server with the sandbox's extensions, run by this interpreter from the directory that
# holds this `carm` package: `-m` looks in the working directory first, where a directory named
# `carm` would otherwise shadow it.
_EXTENDED_SERVER = [sys.executable, "-m", "carm.sandbox.moto_server"]
_CARM_ROOT = Path(__file__).resolve().parents[2]


class MotoServer:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        region: str = "us-east-1",
        controller_account_id: str = SANDBOX_CONTROLLER_ACCOUNT_ID,
        executable: str | None = None,
    ) -> None:
        self.host = host
        self.region = region
        self.controller_account_id = controller_account_id
        self._wanted_port = port
        self._port = 0
        self._executable = executable
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._controller: AwsCredentials | None = None
        self._aws_session: aioboto3.Session | None = None
        self._botocore = botocore.session.get_session()
        # urllib must not send 127.0.0.1 traffic through a proxy from the environment.
        self._http = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def url(self) -> str:
        if self._process is None:
            raise MotoServerError("the moto server is not running")
        return f"http://{self.host}:{self._port}"

    @property
    def controller_credentials(self) -> AwsCredentials:
        """The controller's own credentials: a user in the controller account."""
        if self._controller is None:
            raise MotoServerError("the moto server is not running")
        return self._controller

    def controller_env(self) -> dict[str, str]:
        """Environment for a controller process: its credentials, region and this endpoint."""
        credentials = self.controller_credentials
        return {
            "AWS_ACCESS_KEY_ID": credentials.access_key_id,
            "AWS_SECRET_ACCESS_KEY": credentials.secret_access_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.url,
        }

    # -- lifecycle --

    def start(self) -> None:
        """Start the server (on a free port unless one was given) and wait until it answers."""
        if self._process is not None:
            return
        attempts = 1 if self._wanted_port else 3  # a free port can be taken before moto binds
        for attempt in range(attempts):
            try:
                self._spawn(self._wanted_port or _free_port(self.host))
                self._wait_until_up()
                break
            except MotoServerError:
                self.stop()
                if attempt == attempts - 1:
                    raise
        self.reset()

    def stop(self) -> None:
        """Terminate the server; kill it if it does not exit within 5 s."""
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        self._controller = None

    def reset(self) -> None:
        """Wipe all state and IAM enforcement; re-create the controller user with the same key."""
        self._post("/moto-api/reset-auth", b"inf")
        self._post("/moto-api/reset")
        self._post(f"/moto-api/seed?a={_SEED}")
        keys = self._create_controller_user()
        if self._controller is not None and keys != self._controller:
            raise MotoServerError(
                "the controller user got a different access key after reset (did something else "
                "call moto meanwhile?): a running controller would lose its identity"
            )
        self._controller = keys

    def __enter__(self) -> MotoServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> MotoServer:
        await anyio.to_thread.run_sync(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Shielded: leaving by cancellation (Ctrl-C, SIGTERM) must still stop the child, or the
        # moto server outlives its owner.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.stop)

    # -- shaping the sandbox --

    def set_iam_enforcement(self, enabled: bool) -> None:
        """Turn moto's IAM policy checks on or off (`POST /moto-api/reset-auth`)."""
        self._post("/moto-api/reset-auth", b"0" if enabled else b"inf")

    def deny_assume_role(self, role_arn: str) -> None:
        """Forbid the controller user to assume `role_arn` (takes effect with IAM enforcement)."""
        deny = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Deny", "Action": "sts:AssumeRole", "Resource": role_arn}],
        }
        with closing(self._iam(self.controller_account_id)) as iam:
            iam.put_user_policy(
                UserName=CONTROLLER_USER,
                PolicyName="deny-" + re.sub(r"[^\w+=,.@-]", "-", role_arn)[-100:],
                PolicyDocument=json.dumps(deny),
            )

    def create_role(self, account_id: str, role_name: str, actions: str = "s3:*") -> str:
        """Create a role in `account_id` allowed `actions`; returns its ARN."""
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{self.controller_account_id}:root"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        }
        iam = self._iam(account_id)
        role = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))
        iam.put_role_policy(
            RoleName=role_name, PolicyName="carm", PolicyDocument=json.dumps(policy)
        )
        return str(role["Role"]["Arn"])

    # -- looking --

    async def list_bucket_names(self, account_id: str) -> list[str]:
        """The buckets `account_id` owns, seen as that account (through a role assumed there)."""
        session = self._aws_session = self._aws_session or aioboto3.Session()
        own = self.controller_credentials
        where = {"region_name": self.region, "endpoint_url": self.url}
        async with session.client(
            "sts",
            aws_access_key_id=own.access_key_id,
            aws_secret_access_key=own.secret_access_key,
            **where,
        ) as sts:
            issued = (
                await sts.assume_role(
                    RoleArn=f"arn:aws:iam::{account_id}:role/{INSPECTOR_ROLE}",
                    RoleSessionName="carm-sandbox-inspector",
                )
            )["Credentials"]
        async with session.client(
            "s3",
            aws_access_key_id=issued["AccessKeyId"],
            aws_secret_access_key=issued["SecretAccessKey"],
            aws_session_token=issued["SessionToken"],
            **where,
        ) as s3:
            listing = await s3.list_buckets()
        return sorted(str(bucket["Name"]) for bucket in listing.get("Buckets", []))

    # -- internals --

    def _spawn(self, port: int) -> None:
        env = dict(os.environ)
        env.pop("MOTO_ACCOUNT_ID", None)  # would put every request in one account (see above)
        # Owned by this object until stop(): moto logs every request, keep it off our stderr.
        self._log = tempfile.TemporaryFile(prefix="moto-server-")  # noqa: SIM115
        self._port = port
        # `executable` (a `moto_server`-like program) runs as given, without the extensions.
        command = [self._executable] if self._executable else _EXTENDED_SERVER
        self._process = subprocess.Popen(
            [*command, "-H", self.host, "-p", str(port)],
            env=env,
            cwd=None if self._executable else _CARM_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise MotoServerError(
                    f"moto_server exited with {self._process.returncode}: {self._log_tail()}"
                )
            try:
                with self._http.open(f"{self.url}/moto-api/config", timeout=1):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.02)
        raise MotoServerError(f"moto_server did not answer within {_START_TIMEOUT} s")

    def _log_tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read()[-2000:].decode(errors="replace")

    def _post(self, path: str, body: bytes = b"") -> None:
        request = urllib.request.Request(
            self.url + path, data=body, method="POST", headers={"Content-Type": "text/plain"}
        )
        with self._http.open(request, timeout=10) as response:
            response.read()

    def _iam(self, account_id: str) -> Any:
        """A (synchronous) IAM client whose calls act in `account_id` (moto's account header)."""
        iam = self._botocore.create_client(
            "iam",
            region_name=self.region,
            endpoint_url=self.url,
            aws_access_key_id="sandbox",
            aws_secret_access_key="sandbox",
        )

        def act_in_account(request: Any, **_: Any) -> None:
            request.headers["x-moto-account-id"] = account_id

        iam.meta.events.register("before-sign.iam.*", act_in_account)
        return iam

    def _create_controller_user(self) -> AwsCredentials:
        with closing(self._iam(self.controller_account_id)) as iam:
            iam.create_user(UserName=CONTROLLER_USER)
            key = iam.create_access_key(UserName=CONTROLLER_USER)["AccessKey"]
            iam.put_user_policy(
                UserName=CONTROLLER_USER, PolicyName="all", PolicyDocument=json.dumps(_ALLOW_ALL)
            )
        return AwsCredentials(
            access_key_id=key["AccessKeyId"],
            secret_access_key=key["SecretAccessKey"],
            session_token=None,
            expiration=None,
            account_id=self.controller_account_id,
        )
