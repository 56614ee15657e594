"""Several processes publishing one key at the same moment: the key is never left broken, and a writer
that reports success is one whose publish is (or was, before a later writer replaced it) the whole artifact."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from faultkit import SMOKE, TINY, hybridmi_cmd, s3_env, sets
from store_testkit import make_client, read_tree, write_tree

from hybridmi.data.prepared import load_dataset
from hybridmi.store import S3Store

PUBLISHER = Path(__file__).with_name("publisher.py")
WRITERS, TRIALS = 4, 8


def _files(writer: int) -> dict[str, bytes]:
    """Distinct content per writer (so the survivor is identifiable), several objects to widen the race."""
    return {f"part-{i}.bin": bytes([writer]) * (20_000 + i) for i in range(5)} | {"dataset.json": b'{"w": %d}' % writer}


def _race(mode: str, keys: list[str], sources: list[Path], env: dict[str, str], go: Path) -> list[list[dict]]:
    """Every writer publishes keys[i] at once, for each i in turn; per key, what each writer reported."""
    procs = [
        subprocess.Popen(
            [sys.executable, str(PUBLISHER), mode, env["HYBRIDMI_STORE"], ",".join(keys), str(src), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for src in sources
    ]
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


def test_concurrent_put_dir__key_is_whole_and_held_by_a_writer_that_reported_success(
    moto_endpoint, bucket, env, tmp_path
):
    env = s3_env(env, moto_endpoint, store=f"s3://{bucket}/p")
    sources = [write_tree(tmp_path / f"src{w}", _files(w)) for w in range(WRITERS)]
    store = S3Store(make_client(moto_endpoint), bucket, "p")
    keys = [f"race/t{trial}" for trial in range(TRIALS)]
    for trial, (key, reports) in enumerate(zip(keys, _race("put_dir", keys, sources, env, tmp_path / "go"))):
        winners = [r["version"] for r in reports if "version" in r]
        assert winners, reports
        assert all("version" in r or "published concurrently" in r["error"] for r in reports), (
            reports
        )  # losers are told
        got = read_tree(store.get_dir(key, tmp_path / f"out{trial}"))  # whole: every object present and verified
        assert got in [_files(w) for w in range(WRITERS)]
        assert store.manifest(key).version in winners


def test_concurrent_dataset_publish__every_writer_succeeds_and_one_copy_stands(moto_endpoint, bucket, env, tmp_path):
    env = s3_env(env, moto_endpoint, store=f"s3://{bucket}/p")
    same = _files(7)
    sources = [write_tree(tmp_path / f"src{w}", same) for w in range(WRITERS)]
    store = S3Store(make_client(moto_endpoint), bucket, "p")
    checksums = [f"{trial:02d}" + "c" * 62 for trial in range(TRIALS)]
    for trial, (checksum, reports) in enumerate(
        zip(checksums, _race("dataset", checksums, sources, env, tmp_path / "go"))
    ):
        assert all("reused" in r for r in reports), reports
        assert [r["reused"] for r in reports].count(False) >= 1
        assert read_tree(store.get_dir(f"datasets/{checksum}", tmp_path / f"out{trial}")) == same


def test_concurrent_cli_prepare__output_artifact_is_whole_and_usable(moto_endpoint, bucket, env, tmp_path):
    env = s3_env(env, moto_endpoint)
    uri = f"s3://{bucket}/shared/ds"
    procs = [
        subprocess.Popen(
            hybridmi_cmd(
                "stage",
                "prepare",
                "--config",
                str(SMOKE),
                *sets([*TINY, f"data.cache_dir={tmp_path / f'cache{w}'}"]),
                "--output",
                f"dataset={uri}",
            ),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(3)
    ]
    outcomes = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    assert any(code == 0 for code, _ in outcomes), outcomes
    for code, err in outcomes:
        assert code == 0 or "published concurrently" in err.strip().splitlines()[-1], err[-2000:]
    store = S3Store(make_client(moto_endpoint), bucket)
    train, test = load_dataset(store.get_dir("shared/ds", tmp_path / "out"))  # whole, every split checksum verified
    assert len(train.labels) == 128 and len(test.labels) == 16
