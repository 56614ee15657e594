"""Fixtures of the multi-node train step: a bucket on the loopback S3 (moto) with the storage Secret's
keys and the env a task pod gets from it, a prepared tiny data set, the fake Kubernetes API."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fake_kube_api import TASK_POD, Processes
from tiny_config import ONE_THREAD, TRAIN

from hybridmi.cluster import NAMESPACE_VAR, POD_NAME_VAR, POD_UID_VAR, RUN_ID_VAR, STORE_SECRET_KEYS, STORE_SECRET_NAME
from hybridmi.config import load_config

ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "configs" / "smoke.yaml"
# A train stage of a few steps on 2 shared CPU cores.
TINY = [*TRAIN, ONE_THREAD]
NAMESPACE = "kubeflow"


@pytest.fixture(scope="module")
def tiny_cfg():
    return load_config(SMOKE, TINY)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory, tiny_cfg) -> Path:
    from hybridmi.stages import run_stage

    out = tmp_path_factory.mktemp("prepared") / "dataset"
    run_stage("prepare", tiny_cfg, {}, {"dataset": out})
    return out


@pytest.fixture
def secret(moto_endpoint) -> dict[str, str]:
    """The storage Secret's keys (hybridmi/cluster.py STORE_SECRET_KEYS) for a fresh bucket."""
    from minio import Minio

    bucket = f"trainjob-{uuid.uuid4().hex[:10]}"
    Minio(moto_endpoint, access_key="testing", secret_key="testing-secret", secure=False).make_bucket(bucket)
    return {
        "store": f"s3://{bucket}/hybridmi",
        "endpoint": f"http://{moto_endpoint}",
        "accesskey": "testing",
        "secretkey": "testing-secret",
    }


@pytest.fixture
def task_env(secret) -> dict[str, str]:
    """What the task pod sees: the Secret as env, the KFP run id, its namespace, name and uid (downward API)."""
    return {
        **{STORE_SECRET_KEYS[k]: v for k, v in secret.items()},
        RUN_ID_VAR: f"run-{uuid.uuid4().hex[:8]}",
        NAMESPACE_VAR: NAMESPACE,
        POD_NAME_VAR: TASK_POD[0],
        POD_UID_VAR: TASK_POD[1],
        "HYBRIDMI_S3_RETRY_DELAY_S": "0.05",
    }


@pytest.fixture
def task_store(task_env):
    from hybridmi.store import store_from_env

    return store_from_env(task_env["HYBRIDMI_STORE"], task_env)


@pytest.fixture
def processes(secret, tmp_path) -> Processes:
    """Nodes as real processes; the image's install of hybridmi is this checkout (PYTHONPATH)."""
    return Processes(
        secrets={STORE_SECRET_NAME: secret},
        log_dir=tmp_path,
        extra_env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
    )
