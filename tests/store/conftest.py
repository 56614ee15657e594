"""Real S3 endpoints on loopback: moto's threaded server (shared state), a killable TCP proxy in front of
it (to take the endpoint away mid-publish and bring it back on the same port), and a ``moto_server``
subprocess with IAM authentication enforced (to see real InvalidAccessKeyId/SignatureDoesNotMatch)."""
from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
import uuid

import pytest
from minio import Minio

from hybridmi.store import LocalStore, S3Store
from store_testkit import FAST_RETRY, TcpProxy, free_port, make_client, wait_for_port


@pytest.fixture
def bucket(moto_endpoint) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    make_client(moto_endpoint).make_bucket(name)
    return name


@pytest.fixture
def raw_client(moto_endpoint) -> Minio:
    return make_client(moto_endpoint)


@pytest.fixture
def proxy(moto_endpoint):
    proxy = TcpProxy(int(moto_endpoint.rsplit(":", 1)[1]))
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture(params=["local", "s3", "s3-unconditional"])
def store(request, tmp_path, moto_endpoint):
    """The same semantics tests run against both backends, and against S3 as if the endpoint ignored
    conditional writes (the read-back fallback)."""
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    name = f"test-{uuid.uuid4().hex[:12]}"
    client = make_client(moto_endpoint)
    client.make_bucket(name)
    return S3Store(client, name, "artifacts", retry=FAST_RETRY, part_size=5 * 1024 * 1024,
                   conditional_writes=None if request.param == "s3" else False)


@pytest.fixture(scope="module")
def auth_moto(tmp_path_factory):
    """A moto_server subprocess that enforces IAM auth: (endpoint, access key, secret key, bucket)."""
    import boto3  # moto's own dependency; used only to provision IAM users in the test server

    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MOTO_PORT": str(port)})
    try:
        wait_for_port(port)
        url = f"http://127.0.0.1:{port}"
        kw = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        iam, s3 = boto3.client("iam", **kw), boto3.client("s3", **kw)
        iam.create_user(UserName="pipeline")
        iam.put_user_policy(UserName="pipeline", PolicyName="s3", PolicyDocument=(
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'))
        key = iam.create_access_key(UserName="pipeline")["AccessKey"]
        s3.create_bucket(Bucket="authbucket")
        urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset-auth", data=b"0", method="POST",
                                                      headers={"Content-Type": "text/plain"})).read()
        yield f"127.0.0.1:{port}", key["AccessKeyId"], key["SecretAccessKey"], "authbucket"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
