"""`hybridmi submit`: what reaches the KFP API (a recording stand-in for kfp.Client; no cluster here)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from hybridmi.orchestrate import submit
from hybridmi.orchestrate.task import config_from_text

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml"


class RecordingClient:
    """Implements the two kfp.Client calls submit makes; keeps the compiled package it was given."""

    def __init__(self, final_state: str = "SUCCEEDED") -> None:
        self.calls: list[dict] = []
        self.final_state = final_state

    def create_run_from_pipeline_package(self, pipeline_file, **kwargs):
        self.calls.append({"package": yaml.safe_load_all(Path(pipeline_file).read_text()).__next__(), **kwargs})
        return SimpleNamespace(run_id="run-123")

    def wait_for_run_completion(self, run_id, timeout):
        assert run_id == "run-123" and timeout > 0
        return SimpleNamespace(state=self.final_state)


def test_submit__sends_the_compiled_pipeline_with_the_resolved_config_and_waits():
    client = RecordingClient()
    done = submit("http://kfp.example:8888/", SMOKE, ["train.epochs=2"], experiment="exp", enable_caching=False,
                  parameters={"gpu_count": "", "ddim_sample_steps": "5"}, wait=True, client=client)
    assert done.url == "http://kfp.example:8888/#/runs/details/run-123" and done.state == "SUCCEEDED"
    (call,) = client.calls
    assert call["package"]["pipelineInfo"]["name"] == "hybridmi"
    assert (call["experiment_name"], call["enable_caching"], call["run_name"]) == ("exp", False, "hybridmi-smoke")
    cfg = config_from_text(call["arguments"]["config"])
    assert (cfg.train.epochs, cfg.sampling.steps) == (2.0, 5)
    assert call["arguments"]["gpu_count"] == ""


def test_submit_only__reruns_one_stage_from_the_given_uris():
    client = RecordingClient()
    submit("http://kfp", SMOKE, only="probe", inputs={"dataset": "minio://b/d", "model": "minio://b/m"}, client=client)
    (call,) = client.calls
    assert call["package"]["pipelineInfo"]["name"] == "hybridmi-rerun-probe"
    assert (call["arguments"]["dataset_uri"], call["arguments"]["model_uri"]) == ("minio://b/d", "minio://b/m")


def test_submit_only__names_missing_inputs_before_contacting_the_cluster():
    with pytest.raises(ValueError, match="stage fid needs inputs dataset, ddim, latents, model; got model"):
        submit("http://kfp", SMOKE, only="fid", inputs={"model": "s3://b/m"}, client=RecordingClient())
