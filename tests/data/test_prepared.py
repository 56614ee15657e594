"""Prepared splits round-trip through files and refuse content that does not match its checksum."""

from __future__ import annotations

import hashlib

import pytest
import torch

from hybridmi.data.prepared import content_checksum, load_split, make_split, save_split


def _split(n: int = 6, classes: int = 3):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.arange(n, dtype=torch.int64) % classes
    return make_split(images, labels, [f"c{i}" for i in range(classes)])


def test_content_checksum__is_sha256_of_image_then_label_bytes():
    split = _split()
    expected = hashlib.sha256(split.images.numpy().tobytes() + split.labels.numpy().tobytes()).hexdigest()
    assert split.checksum == content_checksum(split.images, split.labels) == expected


def test_save_then_load__round_trips_exactly(tmp_path):
    split = _split()
    loaded = load_split(save_split(split, tmp_path / "s.pt"))
    assert torch.equal(loaded.images, split.images) and torch.equal(loaded.labels, split.labels)
    assert loaded.classes == split.classes and loaded.checksum == split.checksum


def test_load_split__tampered_pixels_fail_with_the_file_name(tmp_path):
    path = save_split(_split(), tmp_path / "s.pt")
    payload = torch.load(path, weights_only=True)
    payload["images"][0, 0, 0, 0] ^= 1  # one bit; the stored checksum is kept
    torch.save(payload, path)
    with pytest.raises(ValueError, match=rf"checksum mismatch in {path}"):
        load_split(path)


def test_load_split__truncated_file_fails_with_the_file_name(tmp_path):
    path = save_split(_split(), tmp_path / "s.pt")
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ValueError, match=rf"prepared split {path} cannot be read"):
        load_split(path)


@pytest.mark.parametrize(
    "images, labels, message",
    [
        (torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.int64), "images must be uint8"),
        (torch.zeros(2, 3, 28, 28, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64), r"\(2, 3, 28, 28\)"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64), "N = 2"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.tensor([0, 5]), r"labels span \[0, 5\] but there are 3"),
    ],
)
def test_make_split__bad_layout_is_a_value_error(images, labels, message):
    with pytest.raises(ValueError, match=message):
        make_split(images, labels, ["a", "b", "c"])
