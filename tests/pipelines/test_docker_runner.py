"""The container tier: the smoke pipeline under kfp.local's DockerRunner on the project image, outputs in S3.

Needs the image of this checkout, ``project_image()`` (the tag docker/build.sh gives it), and a Docker
engine; skipped only when the engine is unavailable outside CI (``CI`` set: a missing engine or image
is a failure, never a skip).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from components.image import project_image
from hybridmi.runners.local import run_local
from hybridmi.stages import STAGE_NAMES, stage_module
from hybridmi.stages.common import read_sidecar
from hybridmi.store import dataset_key, store_from_env

pytestmark = pytest.mark.docker
SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml"


def docker_client():
    """A connected docker client, or a skip (outside CI) / failure (in CI) saying why not."""
    reason = None
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:  # no socket, daemon down, no permission
        reason = f"Docker engine unavailable: {type(exc).__name__}: {exc}"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: the container tier must run)")
        pytest.skip(reason)
    return client


def test_docker_runner__smoke_pipeline_runs_in_containers_with_outputs_in_s3(tiny, fid_weights, s3_store_uri, tmp_path):
    client = docker_client()
    image = project_image()  # what the Docker runner runs when no image is given
    assert client.images.list(name=image), f"image {image} is missing: build it with docker/build.sh"
    root = tmp_path / "runs"
    root.mkdir()
    weights = shutil.copy(fid_weights, root / "fid-weights.pth")  # only the pipeline root is mounted in the containers
    overrides = [o for o in tiny if not o.startswith("fid.weights=")] + [f"fid.weights={weights}"]
    run = run_local(SMOKE, overrides, runner="docker", pipeline_root=root, store_uri=s3_store_uri)
    for stage in STAGE_NAMES:
        for output in stage_module(stage).OUTPUTS:
            assert read_sidecar(run.artifact(stage, output))["stage"] == stage
    checksum = read_sidecar(run.artifact("prepare", "dataset"))["dataset_checksum"]
    assert store_from_env(s3_store_uri).exists(dataset_key(checksum))
    probe = json.loads((run.artifact("probe", "metrics") / "metrics.json").read_text())
    assert run.metadata["probe"]["metrics"] == pytest.approx(probe)
