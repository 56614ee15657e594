"""Checkpoints as trustworthy data: a damaged byte is refused in one line, an interrupted save leaves the
previous checkpoint valid, and its temporary files are swept before the next run."""

import os

import pytest
import torch

from hybridmi.config import config_from_dict
from hybridmi.train.checkpoint import CHECKSUMS, DamagedCheckpoint, latest_checkpoint, load_checkpoint, save_checkpoint
from hybridmi.train.hybrid import train_hybrid


def _save(directory, step, value=1.0):
    return save_checkpoint(directory, kind="t", step=step, config={}, weights=torch.full((256,), value))


def test_flipped_byte__is_refused_naming_the_file(tmp_path):
    path = _save(tmp_path, 3)
    data = bytearray(path.read_bytes())
    at = data.rfind(torch.full((256,), 1.0).numpy().tobytes()[:16])  # inside the tensor's storage
    data[at + 5] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedCheckpoint, match=f"checkpoint {path} is damaged"):
        load_checkpoint(path, kind="t")


def test_missing_digest__is_refused(tmp_path):
    path = _save(tmp_path, 3)
    (tmp_path / CHECKSUMS).unlink()
    with pytest.raises(DamagedCheckpoint, match=CHECKSUMS):
        load_checkpoint(path, kind="t")


def test_save_interrupted_before_its_rename__leaves_the_previous_checkpoint_valid(tmp_path, monkeypatch):
    _save(tmp_path, 1, value=1.0)

    replace = os.replace

    def crash(src, dst):  # the digest is recorded, then the process dies before the new file is renamed
        if str(dst).endswith("last.pt"):
            raise KeyboardInterrupt
        replace(src, dst)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, 2, value=2.0)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "last.pt", kind="t")["step"] == 1
    assert _save(tmp_path, 2, value=2.0) and load_checkpoint(tmp_path / "last.pt", kind="t")["step"] == 2


def test_leftover_temporary_files__are_swept_when_training_starts(tiny_cfg, tiny_data, tmp_path):
    leftover = tmp_path / ".last.pt.k3j2.tmp"
    leftover.write_bytes(b"half a checkpoint")
    cfg = config_from_dict(tiny_cfg.model_dump(mode="json"), ["train.epochs=0.25"])
    train_hybrid(cfg, tiny_data[0], out_dir=tmp_path)
    assert not leftover.exists()
    assert load_checkpoint(latest_checkpoint(tmp_path), kind="hybrid")["step"] > 0
