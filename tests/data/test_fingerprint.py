"""The source fingerprint that finds a published data set: content, not location, decides it."""

from __future__ import annotations

import shutil

from hybridmi.config import load_config
from hybridmi.data.fingerprint import source_fingerprint


def data_cfg(*overrides: str):
    return load_config(None, list(overrides)).data


def test_fingerprint__same_files_anywhere_give_the_same_fingerprint_and_one_changed_byte_another(class_tree, tmp_path):
    a = class_tree(tmp_path / "a")
    b = shutil.copytree(a, tmp_path / "elsewhere" / "b")
    fp_a = source_fingerprint(data_cfg("data.source=folder", f"data.root={a}"))
    assert fp_a == source_fingerprint(data_cfg("data.source=folder", f"data.root={b}"))
    victim = next(p for p in sorted(b.rglob("*.png")))
    victim.write_bytes(victim.read_bytes()[:-1] + bytes([victim.read_bytes()[-1] ^ 1]))
    assert fp_a != source_fingerprint(data_cfg("data.source=folder", f"data.root={b}"))


def test_fingerprint__an_archive_is_known_by_its_bytes_not_its_name(class_tree, make_tar_gz, tmp_path):
    archive = make_tar_gz(class_tree(tmp_path / "tree"), tmp_path / "one.tar.gz")
    renamed = shutil.copy(archive, tmp_path / "two.tgz")
    assert source_fingerprint(data_cfg("data.source=folder", f"data.root={archive}")) == source_fingerprint(
        data_cfg("data.source=folder", f"data.root={renamed}")
    )


def test_fingerprint__synthetic_data_is_known_by_its_parameters():
    base = source_fingerprint(data_cfg())
    assert base == source_fingerprint(data_cfg("data.cache_dir=/elsewhere"))  # where it is cached does not matter
    assert base != source_fingerprint(data_cfg("data.synthetic_seed=1"))
    assert len(base) == 64 and int(base, 16) >= 0
