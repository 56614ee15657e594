"""Object storage going wrong under real `hybridmi stage` processes: an outage mid-training, a final publish
that cannot happen, a stale mirror, wrong credentials, a corrupted object, an artifact read by its full URI."""

from __future__ import annotations

import io
import json
from pathlib import Path

from faultkit import checkpoint_step, last_line, run, s3_env, spawn, stage, wait_for
from store_testkit import TEST_SECRET, make_client

from hybridmi.stages.common import read_sidecar
from hybridmi.store import S3Store
from hybridmi.store.manifest import VERSIONS


def mirror_pointer(store: S3Store) -> dict | None:
    """The LATEST pointer of the one checkpoint mirror under checkpoints/, read directly (not through the proxy)."""
    names = [n for n in store._list_names("checkpoints/") if n.endswith("/LATEST")]
    return store.get_document(names[0]) if names else None


def mirror_step(store: S3Store) -> int:
    pointer = mirror_pointer(store)
    return int(pointer["step"]) if pointer else 0


def test_store_outage_mid_training__training_finishes_warns_once_and_the_mirror_catches_up(
    moto_endpoint, bucket, proxy, env, tiny_dataset, tmp_path
):
    env = s3_env(env, f"127.0.0.1:{proxy.port}", store=f"s3://{bucket}/p", attempts=2, delay_s=0.2)
    direct = S3Store(make_client(moto_endpoint), bucket, "p")
    model, log = tmp_path / "model", tmp_path / "train.log"
    proc = spawn(
        stage("train", overrides=["train.epochs=12"], inputs={"dataset": tiny_dataset}, outputs={"model": model}),
        env,
        log,
    )  # 48 steps, a checkpoint every 2
    cut_at = wait_for(lambda: mirror_step(direct), what="the first mirrored checkpoint", proc=proc)
    proxy.stop()  # the endpoint is gone: connections refused, open ones cut
    wait_for(
        lambda: checkpoint_step(model / "checkpoints") >= cut_at + 6,
        what="three checkpoints during the outage",
        proc=proc,
    )
    wait_for(lambda: "training continues" in log.read_text(), what="the mirror to report the outage", proc=proc)
    proxy.start()
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert json.loads((model / "metrics.json").read_text())["steps"] == 48
    assert mirror_pointer(direct)["step"] == 48  # the mirror caught up once the store was back
    outage = [line for line in text.splitlines() if "WARNING" in line and "checkpoint mirror" in line]
    assert len(outage) == 1 and "training continues" in outage[0], outage
    assert "reachable again" in text and "resumed from" not in text


def test_final_publish_impossible__stage_fails_naming_the_kept_output_and_publishes_nothing(
    moto_endpoint, bucket, proxy, env, tiny_dataset, tmp_path
):
    env = s3_env(env, f"127.0.0.1:{proxy.port}")
    log = tmp_path / "train.log"
    proc = spawn(
        stage(
            "train",
            overrides=["train.epochs=6"],
            inputs={"dataset": tiny_dataset},
            outputs={"model": f"s3://{bucket}/models/m"},
        ),
        env,
        log,
    )
    wait_for(
        lambda: list(Path(env["TMPDIR"]).glob("hybridmi-stage-*/out/model/checkpoints/last.pt")),
        what="training to start",
        proc=proc,
    )
    proxy.stop()
    assert proc.wait(timeout=300) == 1
    line = last_line(log.read_text())
    assert line.startswith("hybridmi: error: object storage unreachable") and "the model output is kept in " in line
    kept = Path(line.split("the model output is kept in ")[1])
    assert read_sidecar(kept)["stage"] == "train" and (kept / "model.pt").is_file()  # nothing lost
    proxy.start()
    assert not S3Store(make_client(moto_endpoint), bucket).exists("models/m")  # and nothing half-published


def test_stale_mirror__rerun_keeps_the_newer_local_checkpoint_and_mirrors_it(
    moto_endpoint, bucket, proxy, env, tiny_dataset, tmp_path
):
    with_store = s3_env(env, f"127.0.0.1:{proxy.port}", store=f"s3://{bucket}/p")
    direct = S3Store(make_client(moto_endpoint), bucket, "p")
    model = tmp_path / "model"
    train = stage("train", overrides=["train.epochs=6"], inputs={"dataset": tiny_dataset}, outputs={"model": model})
    first = spawn(train, with_store, tmp_path / "first.log")  # 24 steps
    wait_for(lambda: mirror_step(direct), what="the first mirrored checkpoint", proc=first)
    first.kill()  # kill -9 early in the run
    first.wait(timeout=60)
    mirrored = mirror_step(direct)
    assert run(train, env).returncode == 0  # the store out of reach meanwhile: local training reaches step 24
    assert mirror_step(direct) == mirrored < 24
    rerun = run(train, with_store)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"local checkpoint step 24 is newer than the mirrored step {mirrored}: kept" in rerun.stderr
    assert "at step 24 of 24" in rerun.stderr  # resumed at the end: no step trained twice
    assert mirror_step(direct) == 24
    assert {"loss", "loss_recon"} <= set(json.loads((model / "metrics.json").read_text()))


def test_wrong_secret__fails_before_any_training_in_one_line(auth_moto, env, tiny_dataset, tmp_path):
    endpoint, access, secret, bucket = auth_moto
    env = {
        **env,
        "HYBRIDMI_S3_ENDPOINT": f"http://{endpoint}",
        "AWS_ACCESS_KEY_ID": access,
        "AWS_SECRET_ACCESS_KEY": "wrong-" + secret,
        "HYBRIDMI_S3_RETRY_ATTEMPTS": "4",
        "HYBRIDMI_S3_RETRY_DELAY_S": "5",
    }
    for outputs, extra in (
        ({"model": f"s3://{bucket}/models/m"}, {}),
        ({"model": tmp_path / "model"}, {"HYBRIDMI_STORE": f"s3://{bucket}/p"}),
    ):
        done = run(stage("train", inputs={"dataset": tiny_dataset}, outputs=outputs), {**env, **extra})
        assert done.returncode == 1
        line = last_line(done.stderr)
        assert line.startswith("hybridmi: error:") and f"rejected the credentials for bucket {bucket!r}" in line
        assert "SignatureDoesNotMatch" in line and secret not in done.stderr
        assert "hybrid:" not in done.stderr and "resumed" not in done.stderr  # the trainer never started
    assert not (tmp_path / "model").exists()


def test_corrupted_object__named_in_one_line_and_nothing_left_behind(moto_endpoint, bucket, env, tmp_path):
    env = s3_env(env, moto_endpoint)
    uri = f"s3://{bucket}/ds"
    assert (
        run(stage("prepare", overrides=[f"data.cache_dir={tmp_path / 'c'}"], outputs={"dataset": uri}), env).returncode
        == 0
    )
    client = make_client(moto_endpoint)
    victim = next(
        o.object_name
        for o in client.list_objects(bucket, prefix=f"ds/{VERSIONS}/", recursive=True)
        if o.object_name.endswith("/train.pt")
    )
    data = client.get_object(bucket, victim).read()
    client.put_object(bucket, victim, io.BytesIO(data[:-1] + bytes([data[-1] ^ 1])), len(data))
    done = run(stage("train", inputs={"dataset": uri}, outputs={"model": tmp_path / "model"}), env)
    assert done.returncode == 1
    assert last_line(done.stderr).startswith("hybridmi: error: checksum mismatch for s3://") and victim in done.stderr
    assert not (tmp_path / "model").exists() and not list(Path(env["TMPDIR"]).glob("hybridmi-stage-*"))
    assert TEST_SECRET not in done.stderr


def test_dataset_published_under_a_store_prefix__is_read_by_its_full_uri(moto_endpoint, bucket, env, tmp_path):
    env = s3_env(env, moto_endpoint)
    prepared = run(
        stage("prepare", overrides=[f"data.cache_dir={tmp_path / 'c'}"], outputs={"dataset": tmp_path / "ds"}),
        {**env, "HYBRIDMI_STORE": f"s3://{bucket}/team/store"},
    )
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    checksum = read_sidecar(tmp_path / "ds")["dataset_checksum"]
    done = run(
        stage(
            "train",
            overrides=["train.epochs=0.5"],
            inputs={"dataset": f"s3://{bucket}/team/store/datasets/{checksum}"},
            outputs={"model": tmp_path / "model"},
        ),
        env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_sidecar(tmp_path / "model")["stage"] == "train"
