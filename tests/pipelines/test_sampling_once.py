"""Samples are drawn once per run: the sample task feeds fid and figures, and a whole run samples N images, no more."""

from __future__ import annotations

from pathlib import Path

import yaml
from kfp import compiler

import hybridmi.train.ddim
import hybridmi.train.sampling
from hybridmi.eval.samples import read_index
from hybridmi.runners.local import run_local
from hybridmi.stages.common import read_sidecar
from pipelines import hybridmi_pipeline

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml"


def _producers(task: dict) -> set[str]:
    artifacts = task.get("inputs", {}).get("artifacts", {}).values()
    return {a["taskOutputArtifact"]["producerTask"] for a in artifacts if "taskOutputArtifact" in a}


def test_pipeline_dag__sample_alone_draws_from_the_ddim_and_feeds_fid_figures_and_so_the_report(tmp_path):
    compiler.Compiler().compile(hybridmi_pipeline, str(tmp_path / "p.yaml"))
    tasks = next(yaml.safe_load_all((tmp_path / "p.yaml").read_text()))["root"]["dag"]["tasks"]
    for consumer in ("fid", "figures"):
        assert tasks[consumer]["inputs"]["artifacts"]["samples"]["taskOutputArtifact"] == {
            "producerTask": "sample",
            "outputArtifactKey": "samples",
        }
    # Of the tasks that read the ddim, sample alone draws from it: fid scores the samples artifact and never reads
    # the ddim; figures reads its history.json only and refuses to sample (tests/stages/test_generative_stages.py).
    readers = {name for name, task in tasks.items() if "ddim" in _producers(task)}
    assert "sample" in readers and "figures" in readers and "fid" not in readers

    def upstream(name: str) -> set[str]:
        direct = set(tasks[name].get("dependentTasks", []))
        return direct.union(*(upstream(d) for d in direct))

    assert "sample" in upstream("report")  # the report waits for the samples it reports on


def test_inprocess_run__samples_num_samples_once_for_fid_and_figures(tiny, tmp_path, monkeypatch):
    drawn: list[int] = []
    real = hybridmi.train.ddim.sample_latents

    def counted(model, num, **kwargs):
        drawn.append(num)
        return real(model, num, **kwargs)

    monkeypatch.setattr(hybridmi.train.ddim, "sample_latents", counted)
    monkeypatch.setattr(hybridmi.train.sampling, "sample_latents", counted)
    run = run_local(SMOKE, tiny, runner="inprocess", pipeline_root=tmp_path)
    samples = run.artifact("sample", "samples")
    assert sum(drawn) == read_index(samples)["count"] == 4  # TINY's sampling.num_samples, drawn in one pass
    assert (
        read_sidecar(run.artifact("fid", "metrics"))["upstream"]["samples"]["checksum"]
        == read_sidecar(samples)["checksum"]
    )
    assert (run.artifact("figures", "figures") / "samples.png").read_bytes() == (samples / "samples.png").read_bytes()
