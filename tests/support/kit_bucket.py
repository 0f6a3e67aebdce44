"""The bucket transport's kit for the contract suite (see ``tests.support.kits``).

The remote is a fresh bucket per test on one real S3-compatible server per test session: moto's
standalone server (``multinode.media.s3_server``), a separate process on 127.0.0.1 that boto3
talks to over HTTP. Nothing is mocked.

moto accepts any credentials by default. This server checks them: once started, an IAM user with
an allow-all policy and an access key is created, then ``/moto-api/reset-auth`` turns IAM
authentication on for every later request (moto's ``INITIAL_NO_AUTH_ACTION_COUNT``, set to 0
at run time). Every link signs with that user's key, so ``refused`` is a real refusal of the
same bucket: the right access key id with a wrong secret key (``SignatureDoesNotMatch``).
``down`` is an endpoint on a free port where nothing listens.

The server is started on first use and stopped when the session ends (``config.add_cleanup``),
so importing ``bucket_kit`` alone is enough; ``bucket_server`` gives it to a test directly.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from configsync.replication.transports.bucket import BucketTransport, bucket_client
from multinode.cluster import free_port
from multinode.media import S3_REGION, S3Server, s3_server
from tests.support.kits import TransportKit

WRONG_SECRET_KEY = "sk-CANARY-wrong-bucket-secret-key"
_ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


@dataclass(frozen=True)
class BucketServer:
    """The session's moto server with IAM authentication on, and the one key it accepts."""

    server: S3Server
    access_key_id: str
    secret_access_key: str

    @property
    def endpoint_url(self) -> str:
        return self.server.endpoint_url

    def client(self, *, secret_access_key: str | None = None, endpoint_url: str = "") -> Any:
        """A client as the transport makes them (``bucket_client``), signing with the valid
        key unless told otherwise."""
        return bucket_client(
            endpoint_url=endpoint_url or self.endpoint_url,
            access_key_id=self.access_key_id,
            secret_access_key=secret_access_key or self.secret_access_key,
            region=S3_REGION,
            timeout=5,
        )

    def create_bucket(self) -> str:
        import uuid

        name = f"cs-{uuid.uuid4().hex[:12]}"
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        finally:
            client.close()
        return name

    def settings(self, settings: Any, bucket: str) -> None:
        """Point ``CONFIGSYNC_R2_*`` (pytest-django's ``settings``) at ``bucket``."""
        settings.CONFIGSYNC_R2_ENDPOINT_URL = self.endpoint_url
        settings.CONFIGSYNC_R2_BUCKET = bucket
        settings.CONFIGSYNC_R2_ACCESS_KEY_ID = self.access_key_id
        settings.CONFIGSYNC_R2_SECRET_ACCESS_KEY = self.secret_access_key
        settings.CONFIGSYNC_R2_REGION = S3_REGION


def _authenticated(server: S3Server) -> BucketServer:
    import boto3

    iam = boto3.session.Session().client(
        "iam",
        endpoint_url=server.endpoint_url,
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
        region_name=S3_REGION,
    )
    try:
        iam.create_user(UserName="configsync-tests")
        iam.put_user_policy(
            UserName="configsync-tests", PolicyName="all", PolicyDocument=json.dumps(_ALLOW_ALL)
        )
        key = iam.create_access_key(UserName="configsync-tests")["AccessKey"]
    finally:
        iam.close()
    answer = requests.post(f"{server.endpoint_url}/moto-api/reset-auth", data=b"0", timeout=10)
    answer.raise_for_status()
    return BucketServer(server, key["AccessKeyId"], key["SecretAccessKey"])


_STASH = pytest.StashKey[BucketServer]()


def shared_bucket_server(config: pytest.Config) -> BucketServer:
    """The session's server, started on first use, stopped when the session ends."""
    found = config.stash.get(_STASH, None)
    if found is None:
        stack = contextlib.ExitStack()
        config.add_cleanup(stack.close)
        found = _authenticated(stack.enter_context(s3_server()))
        config.stash[_STASH] = found
    return found


@pytest.fixture(scope="session")
def bucket_server(request: pytest.FixtureRequest) -> BucketServer:
    """One moto server for the session, checking credentials."""
    return shared_bucket_server(request.config)


@dataclass
class BucketKit:
    """Links to one fresh bucket of the session's server (see the module's docstring)."""

    server: BucketServer
    bucket: str
    kind: str = "bucket"
    opened: list[BucketTransport] = field(default_factory=list)

    def link(self, *, node: str, **options: Any) -> BucketTransport:
        """A transport to the bucket as ``node`` (``options``: ``BucketTransport``'s, e.g.
        ``now``, ``group``, ``client``)."""
        options.setdefault("client", self.server.client())
        return self._open(node=node, **options)

    def down(self, *, node: str) -> BucketTransport:
        client = self.server.client(endpoint_url=f"http://127.0.0.1:{free_port()}")
        return self._open(node=node, client=client)

    def refused(self, *, node: str) -> BucketTransport:
        return self._open(node=node, client=self.server.client(secret_access_key=WRONG_SECRET_KEY))

    def _open(self, *, node: str, **options: Any) -> BucketTransport:
        transport = BucketTransport(name="r2", node=node, bucket=self.bucket, **options)
        self.opened.append(transport)
        return transport

    def close(self) -> None:
        for transport in self.opened:
            transport.client.close()


@pytest.fixture
def bucket_kit(request: pytest.FixtureRequest) -> Iterator[TransportKit]:
    server = shared_bucket_server(request.config)
    kit = BucketKit(server=server, bucket=server.create_bucket())
    yield kit
    kit.close()
