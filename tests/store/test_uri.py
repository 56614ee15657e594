"""Store addresses and the environment factory: every missing/bad setting is one line naming the variable."""

from __future__ import annotations

import pytest
from store_testkit import TEST_KEY, TEST_SECRET, write_tree

from hybridmi.store import LocalStore, S3Store, StoreConfigError, open_store, parse_s3_uri, store_from_env
from hybridmi.store.uri import endpoint_from_env


def s3_env(endpoint: str, **extra: str) -> dict[str, str]:
    return {
        "HYBRIDMI_S3_ENDPOINT": endpoint,
        "AWS_ACCESS_KEY_ID": TEST_KEY,
        "AWS_SECRET_ACCESS_KEY": TEST_SECRET,
        **extra,
    }


def test_parse_s3_uri__splits_bucket_and_prefix():
    assert parse_s3_uri("s3://mlpipeline/hybridmi/runs/") == ("mlpipeline", "hybridmi/runs")
    assert parse_s3_uri("s3://mlpipeline") == ("mlpipeline", "")
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        parse_s3_uri("s3:///nobucket")


def test_open_store__local_paths_and_file_uris_give_a_local_store(tmp_path):
    for uri in (str(tmp_path / "a"), (tmp_path / "a").as_uri(), tmp_path / "a"):
        store = open_store(uri)
        assert isinstance(store, LocalStore) and store.root == tmp_path / "a"


@pytest.mark.parametrize(
    "uri, match",
    [
        ("", "empty"),
        ("gs://b/p", "unsupported scheme"),
        ("file://otherhost/x", "must be local"),
        ("s3://bucket/p", "minio client"),
    ],
)
def test_open_store__unusable_uris_raise_value_error(uri, match):
    with pytest.raises(ValueError, match=match):
        open_store(uri)


def test_store_from_env__local_uri_needs_no_variables(tmp_path):
    store = store_from_env(tmp_path / "s", env={})
    store.put_dir(write_tree(tmp_path / "src", {"a": b"1"}), "k")
    assert store.exists("k")


@pytest.mark.parametrize(
    "env, variable",
    [
        ({}, "HYBRIDMI_S3_ENDPOINT"),
        ({"HYBRIDMI_S3_ENDPOINT": "h:9000"}, "AWS_ACCESS_KEY_ID"),
        ({"HYBRIDMI_S3_ENDPOINT": "h:9000", "accesskey": "a"}, "AWS_SECRET_ACCESS_KEY"),
        (
            {"HYBRIDMI_S3_ENDPOINT": "h:9000", "accesskey": "a", "secretkey": "s", "HYBRIDMI_S3_SECURE": "maybe"},
            "HYBRIDMI_S3_SECURE",
        ),
        ({"HYBRIDMI_S3_ENDPOINT": "ftp://h:9000", "accesskey": "a", "secretkey": "s"}, "HYBRIDMI_S3_ENDPOINT"),
        (
            {"HYBRIDMI_S3_ENDPOINT": "h:9000", "accesskey": "a", "secretkey": "s", "HYBRIDMI_S3_RETRY_ATTEMPTS": "x"},
            "HYBRIDMI_S3_RETRY_ATTEMPTS",
        ),
    ],
)
def test_store_from_env__missing_or_bad_setting_names_the_variable(env, variable):
    with pytest.raises(StoreConfigError, match=variable) as err:
        store_from_env("s3://bucket/p", env=env)
    assert "\n" not in str(err.value) and "s" + "ecretvalue" not in str(err.value)


def test_endpoint_from_env__scheme_sets_tls_and_contradictions_are_errors():
    assert endpoint_from_env({"HYBRIDMI_S3_ENDPOINT": "http://seaweedfs.kubeflow:9000"}) == (
        "seaweedfs.kubeflow:9000",
        False,
    )
    assert endpoint_from_env({"HYBRIDMI_S3_ENDPOINT": "https://s3.example.com"}) == ("s3.example.com", True)
    assert endpoint_from_env({"HYBRIDMI_S3_ENDPOINT": "minio:9000"}) == ("minio:9000", True)
    assert endpoint_from_env({"HYBRIDMI_S3_ENDPOINT": "minio:9000", "HYBRIDMI_S3_SECURE": "false"}) == (
        "minio:9000",
        False,
    )
    with pytest.raises(StoreConfigError, match="contradicts"):
        endpoint_from_env({"HYBRIDMI_S3_ENDPOINT": "http://minio:9000", "HYBRIDMI_S3_SECURE": "true"})


@pytest.mark.parametrize(
    "names",
    [
        ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
        ("MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"),
        ("accesskey", "secretkey"),
    ],
)
def test_store_from_env__each_credential_convention_reaches_the_server(bucket, moto_endpoint, tmp_path, names):
    env = {
        "HYBRIDMI_S3_ENDPOINT": f"http://{moto_endpoint}",
        names[0]: TEST_KEY,
        names[1]: TEST_SECRET,
        "HYBRIDMI_S3_REGION": "us-east-1",
        "HYBRIDMI_S3_RETRY_ATTEMPTS": "2",
        "HYBRIDMI_S3_RETRY_DELAY_S": "0.01",
    }
    store = store_from_env(f"s3://{bucket}/runs/r1", env=env)
    assert isinstance(store, S3Store) and store.uri == f"s3://{bucket}/runs/r1"
    assert store.retry.attempts == 2 and store.retry.base_delay_s == 0.01
    store.put_dir(write_tree(tmp_path / "src", {"a": b"1"}), "k")
    assert store.list() == ["k"]
