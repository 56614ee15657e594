"""Fixtures for pipeline runs: an S3 endpoint on loopback (moto), store env, FID weights, tiny overrides."""

from __future__ import annotations

import uuid

import pytest
import torch
from tiny_config import ONE_THREAD, PIPELINE

# Small enough that the whole pipeline runs in about a minute per runner on 2 shared CPU cores.
TINY = [*PIPELINE, ONE_THREAD, "sampling.num_samples=4", "sampling.batch_size=4", "fid.reference_split=test"]

STORE_KEY, STORE_SECRET = "testing", "testing-secret"


def s3_client(endpoint: str):
    from minio import Minio

    return Minio(endpoint, access_key=STORE_KEY, secret_key=STORE_SECRET, secure=False)


@pytest.fixture(scope="module")
def s3_store_uri(moto_endpoint):
    """A fresh bucket; this process's env (inherited by task subprocesses) points the store at it."""
    bucket = f"hybridmi-{uuid.uuid4().hex[:10]}"
    s3_client(moto_endpoint).make_bucket(bucket)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HYBRIDMI_S3_ENDPOINT", f"http://{moto_endpoint}")
        mp.setenv("AWS_ACCESS_KEY_ID", STORE_KEY)
        mp.setenv("AWS_SECRET_ACCESS_KEY", STORE_SECRET)
        mp.setenv("HYBRIDMI_S3_RETRY_DELAY_S", "0.05")
        yield f"s3://{bucket}/runs"


@pytest.fixture(autouse=True, scope="session")
def _single_threaded_tasks():
    """Task subprocesses inherit one OpenMP thread: tiny tensors gain nothing from more on a busy machine."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        yield


@pytest.fixture(scope="session")
def fid_weights(tmp_path_factory):
    """Randomly initialised FID Inception weights (exercises the code path; FID values are meaningless)."""
    from hybridmi.eval.fid import FIDInceptionV3

    path = tmp_path_factory.mktemp("fid") / "pt_inception-random.pth"
    torch.manual_seed(0)
    torch.save(FIDInceptionV3().net.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tiny(fid_weights) -> list[str]:
    """Overrides on configs/smoke.yaml for a pipeline run measured in seconds per stage."""
    return [*TINY, f"fid.weights={fid_weights}"]
