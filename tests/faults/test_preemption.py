"""SIGTERM the way Kubernetes sends it (preemption, node drain): a trainer finishes the step in flight, writes
its checkpoint, exits 143 with one line, and the rerun continues from that step."""

from __future__ import annotations

import re
import signal

from faultkit import checkpoint_step, last_line, run, spawn, stage, wait_for

STEPS = re.compile(r"(\d+)/(\d+) \[")


def steps_shown(log) -> int:
    """The last step the progress bar printed (0 before the first)."""
    found = STEPS.findall(log.read_text(errors="replace"))
    return int(found[-1][0]) if found else 0


def test_sigterm_mid_training__checkpoints_the_step_in_flight_and_the_rerun_resumes_there(env, tiny_dataset, tmp_path):
    out = tmp_path / "model"
    # No periodic checkpoint within the run: whatever is on disk after SIGTERM was written because of it.
    train = stage(
        "train",
        overrides=["train.epochs=25", "train.checkpoint_every=100000"],
        inputs={"dataset": tiny_dataset},
        outputs={"model": out},
    )
    log = tmp_path / "train.log"
    proc = spawn(train, env, log)
    shown = wait_for(lambda: (s := steps_shown(log)) >= 5 and s, what="5 training steps", proc=proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143, log.read_text()[-3000:]
    stopped = re.search(r"hybrid stopped by SIGTERM after step (\d+): checkpoint \S+", last_line(log.read_text()))
    assert stopped, log.read_text()[-3000:]
    step = int(stopped.group(1))
    assert step >= shown and checkpoint_step(out / "checkpoints") == step
    assert not (out / "model.pt").exists()  # a stopped run publishes no model

    rerun = run(train, env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert re.search(rf"resumed from \S+ at step {step} of 100", rerun.stderr), rerun.stderr[-3000:]
    assert (out / "model.pt").exists()


def test_sigterm_outside_training__unwinds_at_once(env, tiny_dataset, tmp_path):
    """A stage that is not training has nothing to save: SIGTERM ends it at once (143), as before."""
    log = tmp_path / "probe.log"
    train = run(stage("train", inputs={"dataset": tiny_dataset}, outputs={"model": tmp_path / "m"}), env)
    assert train.returncode == 0, train.stderr[-2000:]
    probe = stage(
        "probe",
        overrides=["eval.probe_epochs=5000"],
        inputs={"dataset": tiny_dataset, "model": tmp_path / "m"},
        outputs={"metrics": tmp_path / "p"},
    )
    proc = spawn(probe, env, log)
    wait_for(lambda: "probe" in log.read_text(errors="replace"), what="the probe to start", proc=proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143


def test_sigterm_of_a_two_rank_task__every_rank_stops_after_the_same_step_and_rank_0_checkpoints_it(
    env, tiny_dataset, tmp_path
):
    out = tmp_path / "model"
    train = stage(
        "train",
        overrides=["train.epochs=25", "train.checkpoint_every=100000", "train.ranks=2", "runtime.device=cpu"],
        inputs={"dataset": tiny_dataset},
        outputs={"model": out},
    )
    log = tmp_path / "train.log"
    proc = spawn(train, env, log)
    shown = wait_for(lambda: (s := steps_shown(log)) >= 3 and s, what="3 training steps", timeout_s=240, proc=proc)
    proc.send_signal(signal.SIGTERM)  # the task process: it stops torchrun, which stops the ranks
    assert proc.wait(timeout=90) == 143, log.read_text()[-3000:]
    stops = set(re.findall(r"\[rank (\d)\].*hybrid stopped by SIGTERM after step (\d+)", log.read_text()))
    assert {rank for rank, _ in stops} == {"0", "1"} and len({step for _, step in stops}) == 1, stops
    (step,) = {int(step) for _, step in stops}
    assert step >= shown and checkpoint_step(out / "checkpoints") == step
