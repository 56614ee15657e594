"""What would fail hours into a run is refused before its first task, in one line, with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybridmi.errors import HybridmiError, MissingInput, UsageError
from hybridmi.runners.local import run_local
from hybridmi.runtime import sha256_file

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml"


def _refused(tmp_path, error, match, **kwargs):
    with pytest.raises(error, match=match):
        run_local(SMOKE, pipeline_root=tmp_path / "runs", **kwargs)
    assert not (tmp_path / "runs").exists() or not any(p.name != ".errors" for p in (tmp_path / "runs").iterdir())


def test_resume_from_without_a_store__is_refused(tmp_path):
    _refused(tmp_path, UsageError, "--resume-from needs the store", parameters={"resume_from": "run-1"})


def test_damaged_fid_weights__are_refused_before_training(tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"weights")
    (tmp_path / "w.pth.json").write_text(json.dumps({"sha256": sha256_file(weights)}))
    weights.write_bytes(b"weightz")  # one byte changed after conversion
    _refused(tmp_path, UsageError, "do not match", overrides=[f"fid.weights={weights}"])
    _refused(tmp_path, MissingInput, "not found", overrides=[f"fid.weights={tmp_path / 'none.pth'}"])


def test_unreachable_store__is_refused_before_the_first_task(tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRIDMI_S3_ENDPOINT", "http://127.0.0.1:9")  # a closed port
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("HYBRIDMI_S3_RETRY_ATTEMPTS", "1")
    _refused(tmp_path, HybridmiError, "127.0.0.1:9", store_uri="s3://bucket/prefix")
