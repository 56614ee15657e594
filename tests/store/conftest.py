"""Real S3 endpoints on loopback: moto's threaded server (shared state), a killable TCP proxy in front of
it (to take the endpoint away mid-publish and bring it back on the same port), and a ``moto_server``
subprocess with IAM authentication enforced (to see real InvalidAccessKeyId/SignatureDoesNotMatch)."""

from __future__ import annotations

import uuid

import pytest
from minio import Minio
from store_testkit import FAST_RETRY, TcpProxy, auth_moto, make_client  # noqa: F401 (auth_moto: a fixture)

from hybridmi.store import LocalStore, S3Store


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
    return S3Store(
        client,
        name,
        "artifacts",
        retry=FAST_RETRY,
        part_size=5 * 1024 * 1024,
        conditional_writes=None if request.param == "s3" else False,
    )
