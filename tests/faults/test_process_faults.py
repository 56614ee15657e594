"""Processes that die or diverge: SIGTERM and kill -9 of `hybridmi stage` (scratch directories), a pod killed
mid-training resuming on another machine from the mirror, a retried pod whose training had finished, and a
diverging run whose mirror must keep only finite checkpoints."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import torch
from faultkit import checkpoint_step, run, s3_env, spawn, stage, wait_for
from store_testkit import make_client

from hybridmi.store import CheckpointSync, S3Store
from hybridmi.task.mirror import first_nonfinite


def scratch_dirs(env: dict[str, str]) -> list[Path]:
    return sorted(Path(env["TMPDIR"]).glob("hybridmi-stage-*"))


def test_sigterm_and_kill9__the_scratch_holding_the_only_checkpoint_is_kept_until_a_rerun_publishes(
    moto_endpoint, bucket, env, tiny_dataset, tmp_path
):
    """With an s3:// output and no HYBRIDMI_STORE the scratch directory holds the only copy of the checkpoints:
    neither SIGTERM, kill -9 nor another stage's sweep removes it, and the rerun resumes from it."""
    env = s3_env(env, moto_endpoint)
    train = stage(
        "train", overrides=["train.epochs=12"], inputs={"dataset": tiny_dataset}, outputs={"model": f"s3://{bucket}/m"}
    )
    checkpoints = lambda: list(Path(env["TMPDIR"]).glob("hybridmi-stage-*/out/model/checkpoints/last.pt"))
    terminated = spawn(train, env, tmp_path / "term.log")
    wait_for(checkpoints, what="the first checkpoint", proc=terminated)
    terminated.send_signal(signal.SIGTERM)  # what Kubernetes sends first
    assert terminated.wait(timeout=60) == 143
    stopped = int(re.search(r"after step (\d+)", (tmp_path / "term.log").read_text()).group(1))
    (kept,) = scratch_dirs(env)
    assert checkpoint_step(kept / "out" / "model" / "checkpoints") == stopped
    killed = spawn(train, env, tmp_path / "kill.log")
    wait_for(lambda: "continuing from the work kept" in (tmp_path / "kill.log").read_text(), what="the takeover")
    wait_for(lambda: checkpoint_step(kept / "out/model/checkpoints") > stopped, what="a newer step", proc=killed)
    killed.kill()  # SIGKILL: nothing runs on the way out
    killed.wait(timeout=60)
    reached = checkpoint_step(kept / "out" / "model" / "checkpoints")
    finished = run(
        stage("prepare", overrides=[f"data.cache_dir={tmp_path / 'c'}"], outputs={"dataset": f"s3://{bucket}/ds"}), env
    )
    assert finished.returncode == 0 and scratch_dirs(env) == [kept]  # its sweep left the kept work alone
    done = run(train, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(rf"resumed from \S+ at step {reached} of 48", done.stderr), done.stderr[-3000:]
    assert scratch_dirs(env) == []  # published: nothing left to keep


def test_kill9_mid_training__another_pod_resumes_from_the_mirror_bit_identically(
    moto_endpoint, bucket, env, tiny_dataset, tmp_path
):
    env = s3_env(env, moto_endpoint, store=f"s3://{bucket}/p")
    train = lambda model: stage(
        "train", overrides=["train.epochs=4"], inputs={"dataset": tiny_dataset}, outputs={"model": model}
    )
    reference = run(train(tmp_path / "reference"), {**env, "HYBRIDMI_STORE": f"s3://{bucket}/elsewhere"})
    assert reference.returncode == 0
    direct = S3Store(make_client(moto_endpoint), bucket, "p")
    pod1 = spawn(train(tmp_path / "pod1"), env, tmp_path / "pod1.log")
    pointer = lambda: [n for n in direct._list_names("checkpoints/") if n.endswith("/LATEST")]
    wait_for(lambda: pointer() and direct.get_document(pointer()[0])["step"] >= 4, what="step 4 mirrored", proc=pod1)
    pod1.kill()
    pod1.wait(timeout=60)
    pod2 = run(train(tmp_path / "pod2"), env)  # a fresh directory: another node
    assert pod2.returncode == 0, pod2.stderr[-3000:]
    resumed = re.search(r"resumed from \S+ at step (\d+) of 16", pod2.stderr)
    assert resumed and int(resumed.group(1)) >= 4, pod2.stderr[-3000:]
    ref, got = (
        torch.load(tmp_path / pod / "model.pt", weights_only=True)["state_dict"] for pod in ("reference", "pod2")
    )
    assert ref.keys() == got.keys() and all(torch.equal(v, got[k]) for k, v in ref.items())


def test_retried_pod_after_training_finished__keeps_its_loss_metrics(
    moto_endpoint, bucket, env, tiny_dataset, tmp_path
):
    env = s3_env(env, moto_endpoint, store=f"s3://{bucket}/p")
    train = lambda model: stage("train", inputs={"dataset": tiny_dataset}, outputs={"model": model})
    assert run(train(tmp_path / "pod1"), env).returncode == 0
    retried = run(train(tmp_path / "pod2"), env)  # e.g. the pod died while its output was being uploaded
    assert retried.returncode == 0, retried.stderr[-3000:]
    first, again = (json.loads((tmp_path / pod / "metrics.json").read_text()) for pod in ("pod1", "pod2"))
    assert {k: v for k, v in again.items() if k != "train_seconds"} == {
        k: v for k, v in first.items() if k != "train_seconds"
    }
    assert "loss" in again


def test_divergence__the_mirror_never_holds_a_non_finite_checkpoint(moto_endpoint, bucket, env, tiny_dataset, tmp_path):
    env = s3_env(env, moto_endpoint, store=f"s3://{bucket}/p")
    done = run(
        stage(
            "train",
            overrides=["optim.lr=1e6", "train.checkpoint_every=1", "train.epochs=2"],
            inputs={"dataset": tiny_dataset},
            outputs={"model": tmp_path / "model"},
        ),
        env,
    )
    error = done.stderr.split("hybridmi: error: ")[-1].splitlines()[0] if "hybridmi: error: " in done.stderr else ""
    assert done.returncode == 1 and ("non-finite" in error or "not finite" in error), done.stderr[-4000:]
    assert first_nonfinite(tmp_path / "model" / "checkpoints" / "last.pt") is None  # the last good one on disk
    direct = S3Store(make_client(moto_endpoint), bucket, "p")
    pointers = [n for n in direct._list_names("checkpoints/") if n.endswith("/LATEST")]
    assert pointers, "the first (finite) checkpoint was mirrored"
    sync = CheckpointSync(direct, pointers[0].rsplit("/", 1)[0])
    assert first_nonfinite(sync.download_latest(tmp_path / "mirrored")) is None
