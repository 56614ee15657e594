"""S3-only behaviour against real loopback endpoints: multipart, outages, rejected credentials, secrecy."""

from __future__ import annotations

import logging
import os
import threading
import time

import pytest
from store_testkit import FAST_RETRY, TEST_KEY, TEST_SECRET, make_client, read_tree, write_tree

from hybridmi.store import (
    ArtifactNotFound,
    CheckpointSync,
    RetryPolicy,
    S3Store,
    StoreAuthError,
    StoreError,
    StoreUnavailable,
    store_from_env,
)
from hybridmi.store.manifest import VERSIONS

MiB = 1024 * 1024
SLOW_RETRY = RetryPolicy(attempts=4, base_delay_s=5.0)  # would take >= 35 s if anything retried


def test_put_dir__file_larger_than_a_part_goes_multipart_and_round_trips(bucket, raw_client, tmp_path):
    store = S3Store(raw_client, bucket, "p", retry=FAST_RETRY, part_size=5 * MiB)
    big = os.urandom(11 * MiB + 123)
    manifest = store.put_dir(write_tree(tmp_path / "src", {"big.bin": big, "small.txt": b"s"}), "k")
    stat = raw_client.stat_object(bucket, f"p/k/{VERSIONS}/{manifest.version}/big.bin")
    assert stat.etag.endswith("-3")  # S3 multipart ETag: md5-of-part-md5s "-" part count (11 MiB / 5 MiB parts)
    assert stat.metadata["x-amz-meta-sha256"] == manifest.files[0].sha256
    assert read_tree(store.get_dir("k", tmp_path / "out"))["big.bin"] == big


def test_put_dir__endpoint_gone_mid_publish_fails_naming_endpoint_and_object(bucket, proxy, tmp_path):
    store = S3Store(make_client(f"127.0.0.1:{proxy.port}"), bucket, "p", retry=FAST_RETRY)
    store.put_dir(write_tree(tmp_path / "old", {"a.txt": b"old-a", "b.txt": b"old-b"}), "k")
    new = write_tree(tmp_path / "new", {"a.txt": b"new-a", "b.txt": b"new-b"})

    start = time.monotonic()
    with pytest.raises(StoreUnavailable) as err:
        store.put_dir(new, "k", progress=lambda rel, size: proxy.stop())  # outage after the first file
    assert time.monotonic() - start < 5
    message = str(err.value)
    assert f"127.0.0.1:{proxy.port}" in message and f"s3://{bucket}/p/k/{VERSIONS}/" in message
    assert "b.txt" in message and "3 attempts" in message

    proxy.start()  # the endpoint comes back on the same port: the old publish is intact and complete
    assert read_tree(store.get_dir("k", tmp_path / "out")) == {"a.txt": b"old-a", "b.txt": b"old-b"}
    with pytest.raises(StoreUnavailable):
        store.put_dir(new, "fresh", progress=lambda rel, size: proxy.stop())
    proxy.start()
    with pytest.raises(ArtifactNotFound):
        store.get_dir("fresh", tmp_path / "out2")


def test_put_dir__endpoint_back_within_the_retries_publish_succeeds(bucket, proxy, tmp_path):
    store = S3Store(
        make_client(f"127.0.0.1:{proxy.port}"),
        bucket,
        "p",
        retry=RetryPolicy(attempts=8, base_delay_s=0.05, max_delay_s=0.4),
    )
    files = {"a.txt": b"a" * 10, "b.txt": b"b" * 20, "c.txt": b"c" * 30}

    def outage(rel, size):
        if rel == "a.txt":
            proxy.stop()
            threading.Timer(0.3, proxy.start).start()

    store.put_dir(write_tree(tmp_path / "src", files), "k", progress=outage)
    assert read_tree(store.get_dir("k", tmp_path / "out")) == files


def test_checkpoint_sync__upload_during_outage_leaves_latest_on_previous_step(bucket, proxy, tmp_path):
    sync = CheckpointSync(S3Store(make_client(f"127.0.0.1:{proxy.port}"), bucket, "p", retry=FAST_RETRY), "run/ckpt")
    (tmp_path / "c10.pt").write_bytes(b"step10")
    (tmp_path / "c20.pt").write_bytes(b"step20")
    sync.upload(tmp_path / "c10.pt", 10)
    proxy.stop()
    with pytest.raises(StoreUnavailable, match="run/ckpt/"):
        sync.upload(tmp_path / "c20.pt", 20)
    proxy.start()
    assert sync.latest_step() == 10
    assert sync.download_latest(tmp_path / "resume").read_bytes() == b"step10"


@pytest.mark.parametrize("which", ["secret", "access key"])
def test_wrong_credentials__fail_at_once_naming_endpoint_and_bucket(auth_moto, tmp_path, which):
    endpoint, access, secret, bucket = auth_moto
    good = S3Store(make_client(endpoint, access, secret), bucket, "p", retry=FAST_RETRY)
    good.check_access()
    good.put_dir(write_tree(tmp_path / "src", {"a.txt": b"a"}), "k")  # the real key works under enforced auth

    bad_access, bad_secret = (access, "wrong-" + secret) if which == "secret" else ("AKIAWRONGWRONGWRONG1", secret)
    bad = S3Store(make_client(endpoint, bad_access, bad_secret), bucket, "p", retry=SLOW_RETRY)
    start = time.monotonic()
    for op in (
        bad.check_access,
        lambda: bad.exists("k"),
        lambda: bad.get_dir("k", tmp_path / "o"),
        lambda: bad.put_dir(tmp_path / "src", "k2"),
    ):
        with pytest.raises(StoreAuthError) as err:
            op()
        assert endpoint in str(err.value) and repr(bucket) in str(err.value)
        assert bad_secret not in str(err.value) and secret not in str(err.value)
    assert time.monotonic() - start < 5  # no retry loop
    expected = "SignatureDoesNotMatch" if which == "secret" else "InvalidAccessKeyId"
    with pytest.raises(StoreAuthError, match=expected):
        bad.exists("k")


def test_credentials__never_in_repr_logs_messages_or_written_files(bucket, moto_endpoint, tmp_path, caplog):
    env = {
        "HYBRIDMI_S3_ENDPOINT": f"http://{moto_endpoint}",
        "accesskey": TEST_KEY,
        "secretkey": TEST_SECRET,
        "HYBRIDMI_S3_RETRY_ATTEMPTS": "2",
        "HYBRIDMI_S3_RETRY_DELAY_S": "0.01",
    }
    caplog.set_level(logging.DEBUG)
    store = store_from_env(f"s3://{bucket}/runs", env=env)
    messages = [repr(store), repr(store._client), repr(CheckpointSync(store, "c"))]
    store.put_dir(write_tree(tmp_path / "src", {"a.txt": b"a", "b.txt": b"b"}), "k")
    store.get_dir("k", tmp_path / "out")
    for op in (
        lambda: store.get_dir("missing", tmp_path / "x"),
        lambda: store_from_env(f"s3://{bucket}/runs", env={**env, "HYBRIDMI_S3_ENDPOINT": "127.0.0.1:1"}).exists("k"),
        lambda: S3Store(make_client(moto_endpoint), "no-such-bucket-here", retry=FAST_RETRY).exists("k"),
    ):
        with pytest.raises((StoreError, ValueError)) as err:
            op()
        messages.append(str(err.value))
    on_disk = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    in_bucket = b"".join(
        make_client(moto_endpoint).get_object(bucket, o.object_name).read()
        for o in make_client(moto_endpoint).list_objects(bucket, recursive=True)
    )
    assert "127.0.0.1:1" in messages[-2] and "no-such-bucket-here" in messages[-1]
    for secret in (TEST_SECRET, TEST_KEY):
        assert not any(secret in m for m in messages), messages
        assert secret not in caplog.text
        assert secret.encode() not in on_disk + in_bucket
