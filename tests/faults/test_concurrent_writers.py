"""Several processes publishing one key at the same moment: the key is never left broken, and a writer
that reports success is one whose publish is (or was, before a later writer replaced it) the whole artifact."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import SMOKE, TINY, hybridmi_cmd, run, s3_env, sets
from store_testkit import make_client, read_tree, write_tree

from hybridmi.store import S3Store

PUBLISHER = Path(__file__).with_name("publisher.py")
WRITERS, TRIALS = 4, 8


def _files(writer: int) -> dict[str, bytes]:
    """Distinct content per writer (so the survivor is identifiable), several objects to widen the race."""
    return {f"part-{i}.bin": bytes([writer]) * (20_000 + i) for i in range(5)} | {"dataset.json": b'{"w": %d}' % writer}


def _race(mode: str, keys: list[str], sources: list[Path], env: dict[str, str], go: Path) -> list[list[dict]]:
    """Every writer publishes keys[i] at once, for each i in turn; per key, what each writer reported."""
    procs = [subprocess.Popen([sys.executable, str(PUBLISHER), mode, env["HYBRIDMI_STORE"], ",".join(keys), str(src),
                               str(go)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for src in sources]
    reports = []
    try:
        for i in range(len(keys)):
            Path(f"{go}{i}").touch()
            lines = [proc.stdout.readline() for proc in procs]
            assert all(lines), [proc.stderr.read()[-2000:] for proc in procs if proc.poll() is not None]
            reports.append([json.loads(line) for line in lines])
    finally:
        for proc in procs:
            proc.wait(timeout=60)
    return reports


def test_concurrent_put_dir__key_is_whole_and_held_by_a_writer_that_reported_success(moto_endpoint, bucket, env, tmp_path):
    env = s3_env(env, moto_endpoint, store=f"s3://{bucket}/p")
    sources = [write_tree(tmp_path / f"src{w}", _files(w)) for w in range(WRITERS)]
    store = S3Store(make_client(moto_endpoint), bucket, "p")
    keys = [f"race/t{trial}" for trial in range(TRIALS)]
    for trial, (key, reports) in enumerate(zip(keys, _race("put_dir", keys, sources, env, tmp_path / "go"))):
        winners = [r["version"] for r in reports if "version" in r]
        assert winners, reports
        assert all("version" in r or "published concurrently" in r["error"] for r in reports), reports  # losers are told
        got = read_tree(store.get_dir(key, tmp_path / f"out{trial}"))  # whole: every object present and verified
        assert got in [_files(w) for w in range(WRITERS)]
        assert store.manifest(key).version in winners


def test_concurrent_dataset_publish__every_writer_succeeds_and_one_copy_stands(moto_endpoint, bucket, env, tmp_path):
    env = s3_env(env, moto_endpoint, store=f"s3://{bucket}/p")
    same = _files(7)
    sources = [write_tree(tmp_path / f"src{w}", same) for w in range(WRITERS)]
    store = S3Store(make_client(moto_endpoint), bucket, "p")
    checksums = [f"{trial:02d}" + "c" * 62 for trial in range(TRIALS)]
    for trial, (checksum, reports) in enumerate(zip(checksums, _race("dataset", checksums, sources, env, tmp_path / "go"))):
        assert all("reused" in r for r in reports), reports
        assert [r["reused"] for r in reports].count(False) >= 1
        assert read_tree(store.get_dir(f"datasets/{checksum}", tmp_path / f"out{trial}")) == same


def test_concurrent_cli_prepare__output_artifact_is_whole_and_usable(moto_endpoint, bucket, env, tmp_path):
    env = s3_env(env, moto_endpoint)
    uri = f"s3://{bucket}/shared/ds"
    for trial in range(2):
        procs = [subprocess.Popen(hybridmi_cmd("stage", "prepare", "--config", str(SMOKE),
                                               *sets([*TINY, f"data.cache_dir={tmp_path / f'cache{trial}-{w}'}"]),
                                               "--output", f"dataset={uri}"),
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for w in range(3)]
        outcomes = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
        assert any(code == 0 for code, _ in outcomes), outcomes
        for code, err in outcomes:
            assert code == 0 or "concurrently" in err.strip().splitlines()[-1], err[-2000:]
        # The next stage reads it.
        done = run(hybridmi_cmd("stage", "probe", "--config", str(SMOKE), *sets(TINY), "--input", f"dataset={uri}",
                                "--input", f"model={_model(tmp_path, env)}", "--output", f"metrics={tmp_path / f'probe{trial}'}"),
                   env)
        assert done.returncode == 0, done.stderr[-2000:]


_MODEL: dict[str, Path] = {}


def _model(tmp_path: Path, env: dict[str, str]) -> Path:
    """A trained model directory (trained once per test)."""
    if str(tmp_path) not in _MODEL:
        ds, model = tmp_path / "local-ds", tmp_path / "local-model"
        for stage, io in (("prepare", ["--output", f"dataset={ds}"]),
                          ("train", ["--input", f"dataset={ds}", "--output", f"model={model}"])):
            done = run(hybridmi_cmd("stage", stage, "--config", str(SMOKE), *sets([*TINY, f"data.cache_dir={tmp_path / 'c'}"]), *io), env)
            assert done.returncode == 0, done.stderr[-2000:]
        _MODEL[str(tmp_path)] = model
    return _MODEL[str(tmp_path)]
