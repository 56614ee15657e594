"""Stored samples: uint8 chunk files samples-NNNNN.pt and their index samples.json (sha256s, sampler), written last."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch

from hybridmi.runtime import atomic_write_bytes, write_json

INDEX = "samples.json"
FORMAT = 1
CHUNK_SIZE = 5000  # images per chunk file: 5,000 · 3,072 bytes ≈ 15 MB
IMAGE_SHAPE = (3, 32, 32)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats → uint8 0…255 (rounded, as PNG and the chunk files store them), on the CPU."""
    return (x * 255).round().to(torch.uint8).cpu()


def rebatch(batches: Iterable[torch.Tensor], size: int) -> Iterator[torch.Tensor]:
    """Re-cut a stream of (B, ...) batches into batches of ``size`` (the last may be smaller)."""
    if size < 1:
        raise ValueError(f"batch size {size} must be at least 1")
    held: torch.Tensor | None = None  # rows not yet yielded (fewer than ``size``)
    for batch in batches:
        held = batch if held is None or not len(held) else torch.cat([held, batch])
        while len(held) >= size:
            yield held[:size]
            held = held[size:]
    if held is not None and len(held):
        yield held


def write_samples(
    batches: Iterable[torch.Tensor], directory: str | Path, *, sampler: dict[str, Any], chunk_size: int | None = None
) -> dict[str, Any]:
    """Write uint8 batches (B, 3, 32, 32) as chunk files, then the index (returned) recording ``sampler``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    chunks: list[dict[str, Any]] = []
    for chunk in rebatch(batches, chunk_size or CHUNK_SIZE):
        if chunk.dtype != torch.uint8 or tuple(chunk.shape[1:]) != IMAGE_SHAPE:
            raise ValueError(f"samples must be uint8 (B, 3, 32, 32), got {chunk.dtype} {tuple(chunk.shape)}")
        buffer = io.BytesIO()
        torch.save(chunk.clone(), buffer)  # clone: a view would save its whole storage
        blob = buffer.getvalue()
        name = f"samples-{len(chunks):05d}.pt"
        atomic_write_bytes(directory / name, blob)
        chunks.append({"file": name, "count": len(chunk), "sha256": hashlib.sha256(blob).hexdigest()})
    count = sum(c["count"] for c in chunks)
    index = {"format": FORMAT, "count": count, "image_shape": list(IMAGE_SHAPE), "chunks": chunks, "sampler": sampler}
    write_json(directory / INDEX, index)
    return index


def read_index(directory: str | Path) -> dict[str, Any]:
    """The index of a samples directory; ValueError when it is not one this code wrote (format, counts)."""
    path = Path(directory) / INDEX
    if not path.is_file():
        raise FileNotFoundError(f"{directory} holds no samples index {INDEX} (is it a sample stage output?)")
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT:
        raise ValueError(f"{path}: samples format {index.get('format')!r}, this code reads format {FORMAT}")
    if index["count"] != sum(c["count"] for c in index["chunks"]):
        raise ValueError(f"{path}: count {index['count']} is not the sum of its chunks' counts")
    return index


def sample_chunks(directory: str | Path, *, limit: int | None = None) -> Iterator[torch.Tensor]:
    """The stored samples, uint8 (n_i, 3, 32, 32) chunk by chunk (sha256 and shape checked), at most ``limit``."""
    directory = Path(directory)
    index = read_index(directory)
    left = index["count"] if limit is None else limit
    for entry in index["chunks"]:
        if left <= 0:
            return
        blob = (directory / entry["file"]).read_bytes()
        if hashlib.sha256(blob).hexdigest() != entry["sha256"]:
            raise ValueError(f"{directory / entry['file']}: sha256 differs from the index {INDEX}")
        chunk = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        if chunk.dtype != torch.uint8 or tuple(chunk.shape) != (entry["count"], *IMAGE_SHAPE):
            raise ValueError(
                f"{directory / entry['file']}: {chunk.dtype} {tuple(chunk.shape)}, the index says "
                f"uint8 ({entry['count']}, {', '.join(map(str, IMAGE_SHAPE))})"
            )
        yield chunk[:left]
        left -= len(chunk)


def first_samples(directory: str | Path, num: int) -> torch.Tensor:
    """The first ``num`` stored samples, uint8 (num, 3, 32, 32), reading only the chunks they are in."""
    count = read_index(directory)["count"]
    if num > count:
        raise ValueError(f"{directory} holds {count} samples, {num} were asked for")
    return torch.cat(list(sample_chunks(directory, limit=num)))
