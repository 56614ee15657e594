"""Stored samples: uint8 rounding, re-batching, chunk files written as the stream goes and read back verified."""

import json

import pytest
import torch

from hybridmi.eval.samples import INDEX, first_samples, read_index, rebatch, sample_chunks, to_uint8, write_samples

SAMPLER = {"seed": 0, "steps": 2, "eta": 0.0, "spacing": "uniform", "batch_size": 3, "ddim_step": 1}


def _images(n: int, *, start: int = 0) -> torch.Tensor:
    """n distinct uint8 images (n, 3, 32, 32): image i is filled with (start + i) mod 256."""
    return ((torch.arange(start, start + n) % 256).to(torch.uint8)[:, None, None, None]).expand(n, 3, 32, 32).clone()


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield _images(min(size, n - start), start=start)


def test_to_uint8__rounds_to_the_nearest_level_on_the_cpu():
    x = torch.tensor([0.0, 0.5 / 255, 0.49 / 255, 1.0, 254.6 / 255])
    assert to_uint8(x).tolist() == [0, 0, 0, 255, 255] and to_uint8(x).dtype == torch.uint8


def test_rebatch__recuts_across_batch_boundaries_keeping_order():
    batches = [torch.arange(0, 3), torch.arange(3, 5), torch.arange(5, 12)]
    out = list(rebatch(batches, 4))
    assert [len(b) for b in out] == [4, 4, 4] and torch.equal(torch.cat(out), torch.arange(12))
    assert [len(b) for b in rebatch([torch.arange(5)], 2)] == [2, 2, 1]
    with pytest.raises(ValueError, match="batch size 0"):
        list(rebatch([torch.arange(3)], 0))


def test_write_samples__chunks_read_back_in_order_with_an_index(tmp_path):
    index = write_samples(_batches(11, 3), tmp_path, sampler=SAMPLER, chunk_size=4)
    assert index == read_index(tmp_path) == json.loads((tmp_path / INDEX).read_text())
    assert index["count"] == 11 and index["sampler"] == SAMPLER
    assert [(c["file"], c["count"]) for c in index["chunks"]] == [
        ("samples-00000.pt", 4),
        ("samples-00001.pt", 4),
        ("samples-00002.pt", 3),
    ]
    assert torch.equal(torch.cat(list(sample_chunks(tmp_path))), _images(11))
    assert torch.equal(first_samples(tmp_path, 5), _images(5))
    assert [len(c) for c in sample_chunks(tmp_path, limit=5)] == [4, 1]  # reads the chunks it needs, no more


def test_write_samples__writes_each_chunk_before_the_stream_runs_far_past_it(tmp_path):
    """Streaming: when batch k is drawn, every chunk completed by earlier batches is already on disk."""
    chunk, size = 4, 3

    def watched():
        for k, batch in enumerate(_batches(20, size)):
            drawn = k * size
            assert len(list(tmp_path.glob("samples-*.pt"))) == drawn // chunk
            yield batch

    write_samples(watched(), tmp_path, sampler=SAMPLER, chunk_size=chunk)
    assert len(list(tmp_path.glob("samples-*.pt"))) == 5


def test_write_samples__refuses_images_that_are_not_uint8_3x32x32(tmp_path):
    with pytest.raises(ValueError, match="samples must be uint8"):
        write_samples([torch.zeros(2, 3, 32, 32)], tmp_path, sampler=SAMPLER)
    with pytest.raises(ValueError, match="samples must be uint8"):
        write_samples([torch.zeros(2, 1, 32, 32, dtype=torch.uint8)], tmp_path, sampler=SAMPLER)


def test_read__refuses_a_missing_index_a_changed_chunk_and_too_many_asked(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no samples index {INDEX}"):
        read_index(tmp_path)
    write_samples(_batches(6, 3), tmp_path, sampler=SAMPLER, chunk_size=4)
    with pytest.raises(ValueError, match="holds 6 samples, 7 were asked for"):
        first_samples(tmp_path, 7)
    torch.save(_images(4, start=1), tmp_path / "samples-00001.pt")
    with pytest.raises(ValueError, match="samples-00001.pt: sha256 differs"):
        list(sample_chunks(tmp_path))
    index = json.loads((tmp_path / INDEX).read_text())
    (tmp_path / INDEX).write_text(json.dumps({**index, "format": 99}))
    with pytest.raises(ValueError, match="samples format 99"):
        read_index(tmp_path)
